"""Training curves and the confusion matrix as PNGs (matplotlib, imported only when drawing)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from cnnzoo._optional import require

__all__ = ["plot_confusion", "plot_curves"]


def _figure(**kwargs: Any) -> Any:
    # A bare Figure on the Agg canvas: no pyplot (no backend selection, no global figure registry
    # to close); both PNGs took 0.07-0.18 s less than through pyplot, measured side by side.
    figure = require("matplotlib.figure", "training curves and confusion matrices")
    agg = require("matplotlib.backends.backend_agg", "training curves and confusion matrices")
    fig = figure.Figure(**kwargs)
    agg.FigureCanvasAgg(fig)
    return fig


def plot_curves(path: Path, rows: Sequence[dict[str, float]]) -> None:
    """Loss and accuracy per epoch, train and test."""
    epochs = [r["epoch"] for r in rows]
    fig = _figure(figsize=(10, 4), dpi=100)
    loss_ax, acc_ax = fig.subplots(1, 2)
    for split, style in (("train", "-o"), ("test", "-s")):
        loss_ax.plot(epochs, [r[f"{split}_loss"] for r in rows], style, label=split, ms=3)
        acc_ax.plot(epochs, [100 * r[f"{split}_accuracy"] for r in rows], style, label=split, ms=3)
    loss_ax.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    acc_ax.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy")
    for ax in (loss_ax, acc_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    # Fixed margins (the labels are these, whatever the run): tight_layout measures every text
    # by drawing the figure once more, a tenth of a second of a demo run.
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.12, top=0.92, wspace=0.25)
    fig.savefig(path)


def plot_confusion(path: Path, confusion: Tensor, classes: Sequence[str]) -> None:
    """The confusion matrix, rows normalised to recall, with counts written in the cells."""
    counts = confusion.double()
    recall = counts / counts.sum(dim=1, keepdim=True).clamp_min(1)
    n = len(classes)
    size = min(12, 2 + 0.5 * n)
    fig = _figure(figsize=(size, size), dpi=100)
    ax = fig.subplots()
    image = ax.imshow(recall.numpy(), cmap="Blues", vmin=0, vmax=1)
    ax.set(xlabel="predicted", ylabel="true", title="Confusion matrix (test)")
    if n <= 30:
        ax.set_xticks(range(n), labels=list(classes), rotation=90 if n > 10 else 0)
        ax.set_yticks(range(n), labels=list(classes))
        for i in range(n):
            for j in range(n):
                value = int(confusion[i, j])
                if value:
                    color = "white" if recall[i, j] > 0.5 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", color=color, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.046, label="fraction of true class")
    fig.tight_layout()
    fig.savefig(path)
