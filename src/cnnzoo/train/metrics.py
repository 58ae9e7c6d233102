"""Classification metrics from a confusion matrix, and the per-epoch CSV log."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "METRIC_COLUMNS",
    "confusion_matrix",
    "per_class_accuracy",
    "write_confusion_csv",
    "write_metrics",
]

METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
    "raw_test_loss",
    "raw_test_accuracy",
    "images_per_second",
    "seconds",
)


def confusion_matrix(targets: Tensor, predictions: Tensor, num_classes: int) -> Tensor:
    """(num_classes, num_classes) int64 counts: row = true class, column = predicted class."""
    index = targets.to(torch.int64) * num_classes + predictions.to(torch.int64)
    counts = torch.bincount(index, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def per_class_accuracy(confusion: Tensor) -> list[float]:
    """Recall of each class (NaN for a class with no test images)."""
    totals = confusion.sum(dim=1)
    return [
        float(confusion[i, i]) / float(totals[i]) if totals[i] else float("nan")
        for i in range(confusion.shape[0])
    ]


def write_metrics(path: Path, history: Sequence[Mapping[str, Any]]) -> None:
    """``metrics.csv``: one row per finished epoch, rewritten whole (atomically) from the run's
    history, so that it never holds a row twice or a row ``last.pt`` does not. ``test_*`` are
    the evaluated model's (the EMA when there is one), ``raw_test_*`` the raw weights'."""
    from cnnzoo.train.checkpoint import atomic_write_text

    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=METRIC_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in history:
        values = {**row}
        values.setdefault("raw_test_loss", row["test_loss"])  # format-1 checkpoints
        values.setdefault("raw_test_accuracy", row["test_accuracy"])
        writer.writerow({k: _fmt(values[k]) for k in METRIC_COLUMNS})
    atomic_write_text(buffer.getvalue(), path)


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def write_confusion_csv(path: Path, confusion: Tensor, classes: Sequence[str]) -> None:
    from cnnzoo.train.checkpoint import atomic_write_text

    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["true \\ predicted", *classes])
    for name, row in zip(classes, confusion.tolist(), strict=True):
        writer.writerow([name, *row])
    atomic_write_text(buffer.getvalue(), path)
