"""The HTML pages in a real browser: Debian's headless Chromium driven by Playwright.

Playwright (pip) drives the system browser through ``executable_path``: nothing is downloaded
(never ``playwright install``). Chosen over Selenium because it needs no separate driver
binary matching the browser and waits for the page by itself. Without /usr/bin/chromium the
tests skip, unless $CI is set: CI installs it (.ci/run), so there a missing browser fails.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cnnzoo import summary
from cnnzoo.draw import build_graph, draw, model_page
from cnnzoo.report import write_report

CHROMIUM = os.environ.get("CNNZOO_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "build" / "test-artifacts"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = pytest.mark.xdist_group("browser")  # one browser process per test run


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = not (Path(CHROMIUM).is_file() or shutil.which(CHROMIUM))
    if missing:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set but no Chromium at {CHROMIUM}: .ci/run must install it")
        pytest.skip(f"no Chromium at {CHROMIUM} (apt-get install chromium); CI runs these")
    if os.environ.get("CI"):
        import playwright.sync_api as playwright_api  # in CI a missing package fails
    else:
        playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    with playwright_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield launched
        launched.close()


def _open(browser: Any, path: Path) -> tuple[Any, list[str]]:
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    # Any request leaving the file is a bug: the pages must work offline.
    page.route("http*://**", lambda route: (errors.append(route.request.url), route.abort()))
    page.goto(path.as_uri())
    return page, errors


@pytest.mark.parametrize("name", ["googlenet", "resnet50"])
def test_model_page_renders_with_diagram_and_collapsible_blocks(
    browser: Any, tmp_path: Path, name: str
) -> None:
    table = summary(name)
    path = tmp_path / f"{name}.html"
    path.write_text(model_page(table), encoding="utf-8")
    page, errors = _open(browser, path)
    assert page.title().startswith(name)
    graph = build_graph(table)
    assert page.locator("svg.cnnzoo-diagram g.node").count() == len(graph.nodes)
    assert page.locator("svg.cnnzoo-diagram path.edge").count() == len(graph.edges)
    box = page.locator("svg.cnnzoo-diagram").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    assert "Parameters" in page.locator("#metadata").inner_text()
    # Collapse the first stage: its rows disappear; expand: they come back.
    stage = "inception3a" if name == "googlenet" else "layer1"
    index = next(i for i, r in enumerate(table.all_rows) if r.name == stage)
    inside = page.locator(f'tr[data-path~="row{index}"]')
    assert inside.count() > 3 and inside.first.is_visible()
    page.locator(f"#row{index} button.toggle").click()
    assert all(not inside.nth(k).is_visible() for k in range(inside.count()))
    assert page.locator(f"#row{index}").is_visible()
    page.locator(f"#row{index} button.toggle").click()
    assert inside.first.is_visible() and inside.last.is_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}-page.png"), full_page=False)
    assert errors == []
    page.close()


def test_jupyter_reprs_render_in_a_notebook_like_page(browser: Any, tmp_path: Path) -> None:
    """What Jupyter does with the three reprs (issue 11): the table's and the model page's
    ``_repr_html_`` and the diagram's ``_repr_svg_`` placed in output cells of one page. Each
    must render, keep its collapsible rows working on its own, and load nothing."""
    table = summary("resnet18")
    page = draw(table, format="html")
    diagram = draw(table, depth=2)
    cells = [table._repr_html_(), page._repr_html_(), diagram._repr_svg_()]  # type: ignore[union-attr]
    notebook = "".join(f'<div class="output" id="cell{i}">{c}</div>' for i, c in enumerate(cells))
    path = tmp_path / "notebook.html"
    path.write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>{notebook}</body></html>',
        encoding="utf-8",
    )
    view, errors = _open(browser, path)
    for cell in ("#cell0", "#cell1"):
        assert view.locator(f"{cell} tbody tr").count() == len(table.rows)
        assert view.locator(f"{cell} caption").inner_text().startswith("resnet18 at input")
    graph = build_graph(table, 2)
    assert view.locator("#cell2 svg g.node").count() == len(graph.nodes)
    assert view.locator("#cell1 svg.cnnzoo-diagram g.node").count() == len(build_graph(table).nodes)
    box = view.locator("#cell2 svg").bounding_box()
    assert box is not None and box["width"] > 100 and box["height"] > 100
    # Collapsing layer1 in the first table hides its rows there, not in the page's table.
    index = next(i for i, r in enumerate(table.all_rows) if r.name == "layer1")
    first = view.locator(f'#cell0 tr[data-path~="row{index}"]')
    second = view.locator(f'#cell1 tr[data-path~="row{index}"]')
    view.locator(f'#cell0 tr[data-row="row{index}"] button.toggle').click()
    assert not first.first.is_visible() and second.first.is_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    view.screenshot(path=str(ARTIFACTS / "notebook.png"), full_page=False)
    assert errors == []
    view.close()


def test_run_report_renders_offline(browser: Any, tmp_path: Path) -> None:
    from cnnzoo.train.plots import plot_curves

    history = [
        {
            "epoch": 1,
            "train_loss": 1.0,
            "test_loss": 0.9,
            "test_accuracy": 0.5,
            "lr": 0.1,
            "seconds": 1.0,
            "train_accuracy": 0.4,
            "images_per_second": 100.0,
        },
    ]
    plot_curves(tmp_path / "curves.png", history)
    final = {
        "model": "lenet5",
        "data": None,
        "test_accuracy": 0.5,
        "test_loss": 0.9,
        "best_epoch": 1,
        "best_test_accuracy": 0.5,
        "wall_seconds": 1.0,
        "per_class_accuracy": {"0": 0.25, "1": 0.75},
    }
    path = write_report(tmp_path, final, {"model": "lenet5"}, history)
    page, errors = _open(browser, path)
    curves = page.locator("#curves img")
    assert curves.count() == 1
    assert page.evaluate("document.querySelector('#curves img').naturalWidth") > 0
    assert page.locator("#per-class tr").count() == 3
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
    assert errors == []
    page.close()
