"""What a finished run leaves for people: the confusion matrix (CSV and PNG), the curves, the
report page, and ``final.json``, written last: its presence says the run finished."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

from torch import Tensor

from cnnzoo._optional import MissingExtraError
from cnnzoo.train.checkpoint import atomic_write_text
from cnnzoo.train.metrics import per_class_accuracy, write_confusion_csv

if TYPE_CHECKING:
    from cnnzoo.train.run import Run

__all__ = ["ARTIFACTS", "final_summary", "write_artifacts"]

ARTIFACTS = ("confusion.csv", "confusion.png", "curves.png", "report.html", "final.json")


def final_summary(
    run: Run, loss: float, accuracy: float, confusion: Tensor, wall_seconds: float
) -> dict[str, Any]:
    """``final.json``: the reported model's test numbers (the EMA's when there is one, as
    ``evaluated`` says), the raw weights' accuracy, timing and the best epoch."""
    history = run.history
    images = sum(r["images_per_second"] * r["seconds"] for r in history)
    train_seconds = sum(r["seconds"] for r in history)
    last = history[-1] if history else {}
    return {
        "model": run.config.model,
        "data": run.config.data,
        "evaluated": "ema" if run.ema is not None else "raw",
        "test_accuracy": accuracy,
        "test_loss": loss,
        "raw_test_accuracy": last.get("raw_test_accuracy", accuracy),
        "epochs": len(history),
        "steps": run.step,
        "wall_seconds": round(wall_seconds, 3),
        "images_per_second": images / train_seconds if train_seconds else math.nan,
        "best_epoch": run.best_epoch,
        "best_test_accuracy": run.best_accuracy,
        "per_class_accuracy": dict(
            zip(run.test_data.classes, per_class_accuracy(confusion), strict=True)
        ),
    }


def write_artifacts(run: Run, final: dict[str, Any], confusion: Tensor) -> None:
    from cnnzoo.train.plots import plot_confusion, plot_curves
    from cnnzoo.train.report import write_report

    out, classes = run.out_dir, run.test_data.classes
    write_confusion_csv(out / "confusion.csv", confusion, classes)
    try:
        plot_confusion(out / "confusion.png", confusion, classes)
        plot_curves(out / "curves.png", run.history)
    except MissingExtraError as missing:  # the run's numbers are complete without pictures
        if not run.quiet:
            print(f"curves.png and confusion.png not drawn: {missing}", file=sys.stderr)
    config = run.config.to_dict()
    write_report(out, final, config, run.history, input_size=run.inference["input_size"])
    atomic_write_text(json.dumps(final, indent=2) + "\n", out / "final.json")
