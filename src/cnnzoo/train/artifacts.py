"""What a finished run leaves for people: the confusion matrix (CSV and PNG), the curves, the
report page, and ``final.json``, written last: its presence says the run finished."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import Tensor

from cnnzoo.train.checkpoint import atomic_write_text
from cnnzoo.train.metrics import write_confusion_csv

__all__ = ["ARTIFACTS", "write_artifacts"]

ARTIFACTS = ("confusion.csv", "confusion.png", "curves.png", "report.html", "final.json")


def write_artifacts(
    out: Path,
    final: dict[str, Any],
    confusion: Tensor,
    classes: Sequence[str],
    config: dict[str, Any],
    history: Sequence[dict[str, Any]],
    *,
    input_size: Sequence[int] | None = None,
) -> None:
    from cnnzoo.train.plots import plot_confusion, plot_curves
    from cnnzoo.train.report import write_report

    write_confusion_csv(out / "confusion.csv", confusion, classes)
    plot_confusion(out / "confusion.png", confusion, classes)
    plot_curves(out / "curves.png", history)
    write_report(out, final, config, history, input_size=input_size)
    atomic_write_text(json.dumps(final, indent=2) + "\n", out / "final.json")
