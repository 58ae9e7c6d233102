"""Classification metrics from a confusion matrix, and the per-epoch CSV log."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor

__all__ = [
    "METRIC_COLUMNS",
    "append_metrics",
    "confusion_matrix",
    "per_class_accuracy",
    "write_confusion_csv",
]

METRIC_COLUMNS = (
    "epoch",
    "step",
    "lr",
    "train_loss",
    "train_accuracy",
    "test_loss",
    "test_accuracy",
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


def append_metrics(path: Path, row: dict[str, float | int]) -> None:
    """Append one epoch's row to ``metrics.csv``, writing the header on first use."""
    new = not path.exists()
    with path.open("a", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=METRIC_COLUMNS)
        if new:
            writer.writeheader()
        writer.writerow({k: _fmt(row[k]) for k in METRIC_COLUMNS})


def _fmt(value: float | int) -> str:
    return str(value) if isinstance(value, int) else f"{value:.6g}"


def write_confusion_csv(path: Path, confusion: Tensor, classes: Sequence[str]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *classes])
        for name, row in zip(classes, confusion.tolist(), strict=True):
            writer.writerow([name, *row])
