"""A heat map laid over its image, with the classes and probabilities, as one PNG."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from torch import Tensor

from cnnzoo._optional import require

__all__ = ["save_overlay", "write_atomically"]


def write_atomically(data: bytes, path: Path) -> None:
    """Write through a temporary file in the same folder and a rename: never half a file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_overlay(
    image: Tensor, heat: Tensor, path: str | Path, *, title: str = "", min_pixels: int = 320
) -> Path:
    """Write ``image`` ((C, H, W), values in [0, 1]) with ``heat`` ((H, W)) over it in a colour
    map, scaled to its own maximum, and ``title`` above; the file appears whole or not at all."""
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "heat maps").FigureCanvasAgg
    Figure = require("matplotlib.figure", "heat maps").Figure

    c, h, w = image.shape
    zoom = max(1.0, min_pixels / max(h, w))
    shown = image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()
    scaled = heat.detach().float().clamp_min(0).cpu()
    scaled = scaled / scaled.max().clamp_min(1e-12)
    width, height = w * zoom / 100, h * zoom / 100
    figure = Figure(figsize=(width + 0.9, height + 0.6), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0.02, 0.02, width / (width + 0.9), height / (height + 0.6)))
    axes.imshow(shown[..., 0] if c == 1 else shown, cmap="gray", vmin=0, vmax=1)
    layer = axes.imshow(scaled.numpy(), cmap="jet", alpha=0.45, vmin=0, vmax=1)
    axes.axis("off")
    colorbar = figure.add_axes((width / (width + 0.9) + 0.04, 0.1, 0.03, 0.7))
    figure.colorbar(layer, cax=colorbar, label="relative importance")
    if title:
        figure.suptitle(title, fontsize=8, y=0.985)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    path = Path(path)
    write_atomically(buffer.getvalue(), path)
    return path
