"""The inline (Jupyter) HTML of a training run and of a model comparison, in a real browser.

Uses the headless Chromium of test_pages.py: the fragments are wrapped in a bare page, as a
notebook's output cell would hold them, and must render offline with no console errors.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_pages import ARTIFACTS, _open
from test_pages import browser as browser  # the module-scoped fixture, shared

from cnnzoo import compare
from cnnzoo.train import load_run, make_config
from cnnzoo.train.metrics import METRIC_COLUMNS, write_metrics

pytestmark = pytest.mark.xdist_group("browser")


def _page(tmp_path: Path, fragment: str) -> Path:
    path = tmp_path / "cell.html"
    path.write_text(
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>cell</title></head>'
        f"<body>{fragment}</body></html>",
        encoding="utf-8",
    )
    return path


@pytest.fixture
def run_folder(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "config.json").write_text(
        json.dumps(make_config("lenet5", epochs=3).to_dict()), encoding="utf-8"
    )
    rows = []
    for epoch in (1, 2, 3):
        row: dict[str, float | int] = {k: 1.0 / epoch for k in METRIC_COLUMNS}
        row.update(epoch=epoch, step=10 * epoch, test_accuracy=0.6 + 0.1 * epoch)
        rows.append(row)
    write_metrics(folder / "metrics.csv", rows)
    yield folder


def test_run_repr_shows_curves_and_epochs(browser: Any, tmp_path: Path, run_folder: Path) -> None:
    page, errors = _open(browser, _page(tmp_path, load_run(run_folder)._repr_html_()))
    image = page.locator(".cnnzoo-run img")
    assert image.count() == 1
    width = page.evaluate("document.querySelector('.cnnzoo-run img').naturalWidth")
    assert width > 100  # the PNG decoded
    assert image.bounding_box()["height"] > 100
    assert page.locator("table.cnnzoo-epochs tr").count() == 1 + 3
    assert "90.00%" in page.locator("table.cnnzoo-epochs").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "run-repr.png"), full_page=True)
    assert errors == []
    page.close()


def test_comparison_repr_is_a_table(browser: Any, tmp_path: Path) -> None:
    table = compare(["lenet5", "resnet20"], batch_size=2, latency=False)
    page, errors = _open(browser, _page(tmp_path, table._repr_html_()))
    rows = page.locator("table.cnnzoo-compare tbody tr")
    assert rows.count() == 2
    assert rows.nth(1).locator("td").first.inner_text() == "resnet20"
    assert errors == []
    page.close()
