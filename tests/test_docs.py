from __future__ import annotations

from pathlib import Path

import pytest

from cnnzoo.docs import BEGIN, END, model_table_markdown, render_readme
from cnnzoo.registry import list_models

README = Path(__file__).parents[1] / "README.md"


def test_readme_model_table_is_current() -> None:
    text = README.read_text(encoding="utf-8")
    assert render_readme(text) == text, "README's model table is stale: run `make docs`"


def test_table_has_one_row_per_model() -> None:
    rows = model_table_markdown().splitlines()[2:]
    assert [row.split("`")[1] for row in rows] == list_models()
    resnet18 = next(r for r in rows if r.startswith("| `resnet18` |"))
    assert "| 11,689,512 |" in resnet18 and "| 1.81G |" in resnet18


def test_render_replaces_only_between_markers() -> None:
    text = f"intro\n{BEGIN}\nold table\n{END}\noutro\n"
    fresh = render_readme(text)
    assert fresh.startswith(f"intro\n{BEGIN}\n| model |") and fresh.endswith(f"{END}\noutro\n")
    assert "old table" not in fresh
    assert render_readme(fresh) == fresh


def test_missing_markers_is_an_error() -> None:
    with pytest.raises(ValueError, match="no model-table markers"):
        render_readme("no markers here")
