"""Every registered model's table: totals against its published numbers and against torchinfo.

Parametrised over ``list_models()``, so a new model is checked the moment it is registered.
"""

from __future__ import annotations

from typing import Any

import pytest
import torchinfo

from cnnzoo import list_models, model_info, summary
from cnnzoo.inspect import LayerTable
from cnnzoo.inspect.collect import build_meta

ALL = list_models()
TORCHVISION = [n for n in ALL if model_info(n).torchvision]
# resnet1202 runs 600 blocks: seconds to trace, and the same blocks as resnet20.
SLOW = {"resnet1202"}

# torchvision 0.28's documented GFLOPS (its weights metadata `_ops`), three decimals, as listed
# in tests/data/published_numbers.md. Independent of the registry, so a wrong metadata entry is
# caught too.
TORCHVISION_GMACS = {
    "alexnet": 0.714,
    "vgg11": 7.609,
    "vgg11_bn": 7.609,
    "vgg13": 11.308,
    "vgg13_bn": 11.308,
    "vgg16": 15.470,
    "vgg16_bn": 15.470,
    "vgg19": 19.632,
    "vgg19_bn": 19.632,
    "googlenet": 1.498,
    "inception_v3": 5.713,
    "resnet18": 1.814,
    "resnet34": 3.664,
    "resnet50": 4.089,
    "resnet101": 7.801,
    "resnet152": 11.514,
    "resnext50_32x4d": 4.230,
    "resnext101_32x8d": 16.414,  # torchvision docs
    "wide_resnet50_2": 11.398,  # torchvision docs give 11.4
    "wide_resnet101_2": 22.753,  # torchvision docs
    "densenet121": 2.834,
    "densenet161": 7.728,
    "densenet169": 3.36,
    "densenet201": 4.291,
    "squeezenet1_0": 0.819,
    "squeezenet1_1": 0.349,
    "mobilenet_v2": 0.301,
}


def _params(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


_TABLES: dict[str, LayerTable] = {}


def _table(name: str) -> LayerTable:
    """One trace per model for this module's tests (each test still checks something else)."""
    if name not in _TABLES:
        _TABLES[name] = summary(name)
    return _TABLES[name]


@pytest.mark.parametrize("name", _params(ALL))
def test_totals_equal_the_registered_numbers_exactly(name: str) -> None:
    """One fact, one counter (issue 11): the registry's params and MACs are the numbers the
    table computes, to the unit; published figures are checked separately, to their rounding
    (below and tests/models)."""
    info = model_info(name)
    table = _table(name)
    assert table.total_params == info.params, info.source
    assert table.trainable_params == info.params  # every registered model trains everything
    assert table.total_macs == info.macs, info.source
    assert not table.macs_partial, table.uncounted


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_gflops_to_three_decimals(name: str) -> None:
    assert round(_table(name).total_macs / 1e9, 3) == TORCHVISION_GMACS[name]


def test_every_torchvision_model_has_a_published_figure_here() -> None:
    assert set(TORCHVISION) <= set(TORCHVISION_GMACS)


@pytest.mark.parametrize("name", _params(ALL))
def test_rows_reconcile_with_the_totals(name: str) -> None:
    """Depth-1 rows plus modules that did not run account for every parameter; the model row
    carries all MACs; leaf rows' MACs sum to the total too."""
    table = _table(name)
    first_calls = [r for r in table.rows if r.depth == 1 and r.call_index == 0]
    module_params = sum(r.params for r in first_calls if r.kind == "module")
    assert module_params + sum(n.params for n in table.not_run) == table.total_params
    assert table.rows[0].macs == table.total_macs
    assert sum(r.macs for r in table.rows if r.is_leaf) == table.total_macs


@pytest.mark.parametrize("name", _params(ALL))
def test_text_table_fits_80_columns_and_shows_everything_at_120(name: str) -> None:
    """Issue 11: nothing wraps on an 80-column terminal (columns dropped or shortened, the
    footnotes wrapped); at 120 (DenseNet: its full width) every default column and full name."""
    table = _table(name)
    narrow = table.to_text(width=80).splitlines()
    assert max(len(line) for line in narrow) <= 80, max(narrow, key=len)
    header = narrow[2].split()
    assert header[0] == "layer" and {"output", "params", "MACs", "RF"} <= set(header)
    body = narrow[4 : narrow.index("", 3)]
    assert len(body) == len(table.rows)  # one line per row: nothing wrapped
    # Everything fits 120 columns except DenseNet's: torchvision's module names (a state_dict
    # contract, e.g. features.denseblock4.denselayer16.conv1) need a few more; there the full
    # table shows at its own width.
    unbounded = table.to_text(width=1000).splitlines()
    full = max(len(line) for line in unbounded[: unbounded.index("", 3)])  # rows, not footnotes
    assert full <= 120 or name.startswith("densenet"), full
    width = max(120, full)
    wide_text = table.to_text(width=width)
    wide = wide_text.splitlines()
    assert max(len(line) for line in wide) <= width, max(wide, key=len)
    assert wide[2].split() == ["layer", "type", "output", "window", "params", "MACs", "RF"]
    assert all(row.name in wide_text for row in table.rows)
    assert "~" not in "\n".join(line.split()[0] for line in wide[4:] if line.strip())


def _torchinfo_leaves(name: str) -> tuple[Any, list[tuple[str, list[int]]]]:
    model = build_meta(name).eval()
    c, h, w = model_info(name).input_size
    stats = torchinfo.summary(
        model, input_size=(1, c, h, w), device="meta", depth=100, verbose=0, mode="eval"
    )
    leaves = [
        (layer.class_name, list(layer.output_size))
        for layer in stats.summary_list
        if layer.is_leaf_layer and layer.executed
    ]
    return stats, leaves


def _nchw(shape: list[int] | None) -> list[int]:
    """Our [H, W, C] back to torchinfo's [N, C, H, W] (batch 1)."""
    assert shape is not None
    return [1, shape[2], shape[0], shape[1]] if len(shape) == 3 else [1, *shape]


@pytest.mark.parametrize("name", _params(ALL))
def test_agrees_with_torchinfo(name: str) -> None:
    """Same totals, and the same leaf modules in the same order with the same output shapes."""
    stats, theirs = _torchinfo_leaves(name)
    table = _table(name)
    assert stats.total_params == table.total_params
    assert stats.trainable_params == table.trainable_params
    ours = [(r.type, _nchw(r.output_hwc)) for r in table.rows if r.kind == "module" and r.is_leaf]
    assert ours == theirs


def test_cnnzoo_list_prints_the_tables_exact_counts(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: `cnnzoo list` printed AlexNet at 714.00M, a rounded documentation figure."""
    from cnnzoo.cli import main

    assert main(["list", "alexnet"]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()
    table = _table("alexnet")
    assert row[:4] == ["alexnet", "alexnet", f"{table.total_params:,}", f"{table.total_macs:,}"]
    assert row[3] == "714,188,480"
