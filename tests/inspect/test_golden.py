"""Golden layer tables (text and Markdown) for six classic networks, with rows checked by hand.

The golden files change only on purpose: regenerate them with

    CNNZOO_UPDATE_GOLDEN=1 .venv/bin/pytest tests/inspect/test_golden.py

and review the diff like code.
"""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import pytest

from cnnzoo import list_models, summary
from cnnzoo.inspect import LayerTable

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("CNNZOO_UPDATE_GOLDEN") == "1"
MODELS = ["lenet5", "alexnet", "vgg16", "resnet18", "googlenet", "inception_v3"]


def _table(name: str) -> LayerTable:
    if name not in list_models():
        # A golden model that vanished from the registry is a regression, not a skip.
        pytest.fail(f"{name} has a golden table but is not registered")
    return summary(name)


@pytest.mark.parametrize("suffix", ["txt", "md"])
@pytest.mark.parametrize("name", MODELS)
def test_golden_table(name: str, suffix: str) -> None:
    table = _table(name)
    text = table.to_text() if suffix == "txt" else table.to_markdown()
    path = GOLDEN / f"{name}.{suffix}"
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return
    if not path.exists():
        pytest.fail(f"no golden file {path.name}: run with CNNZOO_UPDATE_GOLDEN=1 and review it")
    expected = path.read_text(encoding="utf-8")
    if text != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(keepends=True),
                text.splitlines(keepends=True),
                fromfile=f"golden/{path.name}",
                tofile="now",
                n=1,
            )
        )
        pytest.fail(f"{path.name} changed (CNNZOO_UPDATE_GOLDEN=1 if on purpose):\n{diff}")


def _text_row(table: LayerTable, name: str) -> list[str]:
    """The cells of a row as printed in the text table (split on runs of spaces)."""
    for line in table.to_text().splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no line for {name}")


def test_lenet5_rows_by_hand() -> None:
    """LeCun et al. 1998, sec. II-B: C3 has 1,516 trainable parameters on 10x10x16 maps."""
    table = _table("lenet5")
    assert _text_row(table, "c3") == [
        "c3",
        "ConnectionTableConv2d",
        "10x10x16",
        "5x5",
        "s1",
        "p0",
        "1,516",
        "150,000",
        "14x14",
    ]
    assert table.row("c1").params == 156 and table.row("s2").params == 12
    assert table.row("c5").params == 48_120 and table.row("f6").params == 10_164
    assert table.row("c5").receptive_field == [32, 32]  # C5 sees the whole 32x32 input


def test_resnet18_rows_by_hand() -> None:
    table = _table("resnet18")
    assert _text_row(table, "fc")[:5] == ["fc", "Linear", "1000", "-", "513,000"]  # 512*1000+1000
    assert table.row("layer4").output_hwc == [7, 7, 512]
    assert _text_row(table, "bn1")[:5] == ["bn1", "BatchNorm2d", "112x112x64", "-", "128"]
    assert table.row("conv1").macs == 112 * 112 * 64 * 3 * 49  # 118,013,952
    assert table.row("layer4").receptive_field == [435, 435]


def test_alexnet_and_vgg16_rows_by_hand() -> None:
    alexnet = _table("alexnet")
    assert _text_row(alexnet, "features.0")[:7] == [
        "features.0",
        "Conv2d",
        "55x55x64",  # (224 - 11 + 2*2) / 4 + 1 = 55.25, floored
        "11x11",
        "s4",
        "p2",
        "23,296",  # 64 * 3 * 11 * 11 + 64
    ]
    vgg16 = _table("vgg16")
    assert vgg16.row("features.30").output_hwc == [7, 7, 512]
    assert vgg16.row("features.30").receptive_field == [212, 212]
    assert vgg16.row("classifier.0").params == 25_088 * 4_096 + 4_096


def test_googlenet_and_inception_v3_rows_by_hand() -> None:
    googlenet = _table("googlenet")
    inception3a = googlenet.row("inception3a")
    assert inception3a.output_hwc == [28, 28, 256]  # 64 + 128 + 32 + 32 (Szegedy et al. Table 1)
    # 1x1 64; 1x1 96 -> 3x3 128; 1x1 16 -> 3x3 32; pool -> 1x1 32; each conv + BN(2 x channels)
    by_hand = (
        (192 * 64 + 128)
        + (192 * 96 + 192)
        + (96 * 128 * 9 + 256)
        + (192 * 16 + 32)
        + (16 * 32 * 9 + 64)
        + (192 * 32 + 64)
    )
    assert inception3a.params == by_hand == 155_872
    assert googlenet.row("maxpool1").ceil_mode is True
    inception_v3 = _table("inception_v3")
    assert inception_v3.row("Mixed_5b").output_hwc == [35, 35, 256]
    assert inception_v3.row("Conv2d_1a_3x3.conv").params == 32 * 3 * 9
    assert inception_v3.row("Mixed_7c").output_hwc == [8, 8, 2048]
