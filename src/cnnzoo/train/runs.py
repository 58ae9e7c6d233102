"""A training run read back from its folder, for notebooks: ``load_run(dir)`` shows its metrics
table and curves inline (``_repr_html_``), finished or still running."""

from __future__ import annotations

import base64
import csv
import html
import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["TrainingRun", "load_run"]

_SHOWN = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "lr", "seconds")


@dataclass(frozen=True)
class TrainingRun:
    """What a run folder holds: its config, one row per finished epoch, and its final results
    (None while it is still training)."""

    path: Path
    config: dict[str, Any]
    history: tuple[dict[str, float], ...]
    final: dict[str, Any] | None

    @property
    def model(self) -> str:
        return str(self.config.get("model") or (self.final or {}).get("model") or "?")

    @property
    def finished(self) -> bool:
        return self.final is not None

    def curves_png(self) -> bytes:
        """The loss and accuracy curves as PNG bytes, drawn from the epochs written so far."""
        from cnnzoo.train.plots import plot_curves

        if not self.history:
            raise ValueError(f"{self.path} has no finished epoch yet: no curves to draw")
        with tempfile.TemporaryDirectory() as folder:
            file = Path(folder) / "curves.png"
            plot_curves(file, list(self.history))
            return file.read_bytes()

    def to_html(self) -> str:
        """An HTML fragment: a summary line, the curves (inline PNG) and the epoch table."""
        title = f"{self.model} on {self.config.get('data') or 'digits'}"
        if self.final is not None:
            status = f"finished: test accuracy {_percent(self.final.get('test_accuracy'))}"
        else:
            status = f"running or stopped: {len(self.history)} epoch(s) written"
        parts = [
            '<div class="cnnzoo-run">',
            f"<p><b>{html.escape(title)}</b> ({html.escape(str(self.path))}): "
            f"{html.escape(status)}</p>",
        ]
        if self.history:
            data = base64.b64encode(self.curves_png()).decode("ascii")
            parts.append(f'<img alt="training curves" src="data:image/png;base64,{data}">')
            head = "".join(f"<th>{html.escape(k)}</th>" for k in _SHOWN)
            rows = "".join(
                "<tr>"
                + "".join(f'<td style="text-align:right">{_cell(k, r)}</td>' for k in _SHOWN)
                + "</tr>"
                for r in self.history
            )
            parts.append(f'<table class="cnnzoo-epochs"><tr>{head}</tr>{rows}</table>')
        parts.append("</div>")
        return "\n".join(parts)

    def _repr_html_(self) -> str:
        return self.to_html()

    def __repr__(self) -> str:
        result = ""
        if self.final is not None:
            result = f", test accuracy {_percent(self.final.get('test_accuracy'))}"
        epochs = len(self.history)
        return f"TrainingRun({str(self.path)!r}, model={self.model}, epochs={epochs}{result})"


def _percent(value: Any) -> str:
    return f"{value:.2%}" if isinstance(value, (int, float)) else "?"


def _cell(key: str, row: dict[str, float]) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if key == "epoch":
        return str(int(value))
    if key.endswith("accuracy"):
        return f"{value:.2%}"
    return f"{value:.4g}"


def _read_json(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} should hold a JSON object, found {type(data).__name__}")
    return data


def _read_metrics(path: Path) -> tuple[dict[str, float], ...]:
    if not path.is_file():
        return ()
    rows = []
    with path.open(newline="", encoding="utf-8") as f:
        for line, record in enumerate(csv.DictReader(f), start=2):
            try:
                rows.append({k: float(v) for k, v in record.items() if k and v not in (None, "")})
            except ValueError:
                raise ValueError(f"{path}, line {line}: expected numbers, got {record}") from None
    return tuple(rows)


def load_run(path: str | Path) -> TrainingRun:
    """The run that ``cnnzoo train`` (or :func:`cnnzoo.train.fit`) writes to ``path``: its
    ``config.json``, ``metrics.csv`` and, once finished, ``final.json``. In a notebook the
    returned object shows itself as the curves and the epoch table.

    >>> from cnnzoo.train import load_run
    >>> load_run("runs/demo-lenet5")  # doctest: +SKIP
    TrainingRun('runs/demo-lenet5', model=lenet5, epochs=30, test accuracy 97.46%)
    """
    folder = Path(path)
    if not folder.is_dir():
        raise FileNotFoundError(f"no run folder at {folder}")
    config = _read_json(folder / "config.json")
    metrics = folder / "metrics.csv"
    if config is None and not metrics.is_file():
        raise ValueError(f"{folder} is not a cnnzoo run: it has no config.json and no metrics.csv")
    return TrainingRun(
        folder, config or {}, _read_metrics(metrics), _read_json(folder / "final.json")
    )
