"""load_run: a run folder read back, with its curves and epochs inline for notebooks."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from cnnzoo.train import load_run, make_config
from cnnzoo.train.metrics import METRIC_COLUMNS, write_metrics


def write_run(folder: Path, epochs: int, *, finished: bool) -> None:
    """A run folder as the trainer writes it (its own writers and config), without training."""
    config = make_config("lenet5_modern", epochs=epochs).to_dict()
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    history = []
    for epoch in range(1, epochs + 1):
        row: dict[str, float | int] = {k: 1.0 / epoch for k in METRIC_COLUMNS}
        row.update(epoch=epoch, step=10 * epoch, test_accuracy=0.5 + 0.1 * epoch)
        history.append(row)
    write_metrics(folder / "metrics.csv", history)
    if finished:
        final = {"model": "lenet5_modern", "test_accuracy": 0.7, "epochs": epochs}
        (folder / "final.json").write_text(json.dumps(final), encoding="utf-8")


@pytest.fixture
def finished(tmp_path: Path) -> Path:
    write_run(tmp_path, 2, finished=True)
    return tmp_path


def test_a_finished_run_reads_back(finished: Path) -> None:
    run = load_run(finished)
    assert run.finished and run.model == "lenet5_modern"
    assert [int(r["epoch"]) for r in run.history] == [1, 2]
    assert run.final is not None and run.final["epochs"] == 2
    assert f"test accuracy {run.final['test_accuracy']:.2%}" in repr(run)
    page = run._repr_html_()
    assert page.count("<tr>") == 1 + 2  # header and one row per epoch
    data = re.search(r'src="data:image/png;base64,([^"]+)"', page)
    assert data is not None and base64.b64decode(data.group(1)).startswith(b"\x89PNG")
    assert "70.00%" in page and "60.00%" in page  # final and epoch 1's test accuracy


def test_a_run_in_progress_shows_the_epochs_so_far(tmp_path: Path) -> None:
    write_run(tmp_path, 1, finished=False)
    run = load_run(tmp_path)
    assert not run.finished and len(run.history) == 1
    assert "60.00%" in run.to_html() and "1 epoch(s) written" in run.to_html()
    (tmp_path / "config.json").unlink()  # metrics alone still make a run
    assert load_run(tmp_path).model == "?"


def test_not_a_run_fails_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no run folder at"):
        load_run(tmp_path / "missing")
    with pytest.raises(ValueError, match=r"is not a cnnzoo run: it has no config\.json"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ValueError, match="should hold a JSON object, found list"):
        load_run(tmp_path)
    (tmp_path / "config.json").write_text("{}", encoding="utf-8")
    (tmp_path / "metrics.csv").write_text("epoch,train_loss\n1,abc\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics\.csv, line 2: expected numbers"):
        load_run(tmp_path)
