"""SqueezeNet 1.0 / 1.1: the torchvision contract and the paper's Table 1.

The functional reference follows the paper (sec. 3.2-3.3, Table 1) and the authors' v1.1 notes
with plain ``torch.nn.functional`` calls: conv1 (stride 2, no padding), Fire modules (squeeze 1x1,
then expand 1x1 and 3x3 concatenated, ReLU after each conv), 3x3/2 max pools rounded up as Caffe
does (written here as floor pooling after padding the far edge with -inf), dropout (off in eval),
conv10, ReLU, global average pool.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from _reference import (
    Tracked,
    assert_close,
    check_reset_classifier_keeps_dtype,
    check_torchvision_file_loads_strict,
    loss_drops,
    scramble_,
    summary_macs,
)
from torch import Tensor, nn

from cnnzoo import create_model, model_info
from cnnzoo.models.squeezenet import Fire, SqueezeNet

NAMES = ["squeezenet1_0", "squeezenet1_1"]
# Layer sequence after conv1: "M" a max pool, "F" a Fire module (paper Table 1 / authors' v1.1).
LAYOUT = {"squeezenet1_0": (7, "MFFFMFFFFMF"), "squeezenet1_1": (3, "MFFMFFMFFFF")}
# Iandola et al. 2016, Table 1: (s1x1, e1x1, e3x3) of fire2..fire9 and the "# parameter before
# pruning" of each layer (conv1 96@7x7, fire2..fire9, conv10), total 1,248,424.
# fmt: off
FIRE_TABLE = [(16, 64, 64), (16, 64, 64), (32, 128, 128), (32, 128, 128),
              (48, 192, 192), (48, 192, 192), (64, 256, 256), (64, 256, 256)]
# fmt: on
TABLE1_PARAMS = [14_208, 11_920, 12_432, 45_344, 49_440, 104_880, 111_024, 188_992, 197_184]
TABLE1_CONV10 = 513_000
# torchvision 0.28 weights metadata: num_params, min_size, `_ops` GFLOPS (= MACs).
TORCHVISION_NUMBERS = {
    "squeezenet1_0": (1_248_424, 21, 0.819),
    "squeezenet1_1": (1_235_496, 17, 0.349),
}


def _ceil_max_pool(x: Tensor) -> Tensor:
    # Caffe's rounding up: one more window if the last one would start inside the map.
    extra = (x.shape[-1] - 3) % 2
    return F.max_pool2d(F.pad(x, (0, extra, 0, extra), value=float("-inf")), 3, stride=2)


def _reference_forward(state: dict[str, Tensor], x: Tensor, name: str) -> Tensor:
    sd = Tracked(state)
    _, layout = LAYOUT[name]
    x = F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], stride=2))
    for index, kind in enumerate(layout, start=2):
        if kind == "M":
            x = _ceil_max_pool(x)
            continue
        p = f"features.{index}"
        s = F.relu(F.conv2d(x, sd[f"{p}.squeeze.weight"], sd[f"{p}.squeeze.bias"]))
        e1 = F.relu(F.conv2d(s, sd[f"{p}.expand1x1.weight"], sd[f"{p}.expand1x1.bias"]))
        e3 = F.conv2d(s, sd[f"{p}.expand3x3.weight"], sd[f"{p}.expand3x3.bias"], padding=1)
        x = torch.cat([e1, F.relu(e3)], 1)
    x = F.relu(F.conv2d(x, sd["classifier.1.weight"], sd["classifier.1.bias"]))
    sd.assert_all_used()
    return x.mean(dim=(2, 3))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("side", [64, 67])  # 67: every ceil-mode pool rounds up
def test_forward_equals_functional_reference(name: str, side: int) -> None:
    model = scramble_(create_model(name))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected = _reference_forward(model.state_dict(), x, name)
        assert_close(model(x), expected)
        # pre_logits: the (dropped-out) map conv10 reads; the classifier acts before the pool.
        pre = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pre.shape[:2] == (2, 512) and pre.dim() == 4
        assert_close(F.relu(model.get_classifier()(pre)).mean(dim=(2, 3)), expected)


def test_squeezenet1_0_matches_table_1_layer_by_layer() -> None:
    with torch.device("meta"):
        model = create_model("squeezenet1_0")
    assert isinstance(model, SqueezeNet)
    conv1 = model.features[0]
    assert (conv1.out_channels, conv1.kernel_size, conv1.stride) == (96, (7, 7), (2, 2))
    fires = [m for m in model.features if isinstance(m, Fire)]
    assert [(f.squeeze.out_channels, f.expand1x1.out_channels, f.expand3x3.out_channels)
            for f in fires] == FIRE_TABLE  # fmt: skip
    counts = [sum(p.numel() for p in m.parameters()) for m in (conv1, *fires)]
    assert counts == TABLE1_PARAMS
    assert sum(p.numel() for p in model.get_classifier().parameters()) == TABLE1_CONV10
    total = sum(p.numel() for p in model.parameters())
    assert total == sum(TABLE1_PARAMS) + TABLE1_CONV10 == 1_248_424
    # Table 2: "4.8MB" uncompressed (32-bit weights), 50x smaller than AlexNet's 240MB.
    assert round(total * 4 / 2**20, 1) == 4.8
    assert not any(isinstance(m, nn.Linear) for m in model.modules())  # sec. 3.3: no FC layers


def test_squeezenet1_1_moves_the_pools_and_shrinks_conv1() -> None:
    with torch.device("meta"):
        v10, v11 = create_model("squeezenet1_0"), create_model("squeezenet1_1")
    conv1 = v11.features[0]
    assert (conv1.out_channels, conv1.kernel_size, conv1.stride) == (64, (3, 3), (2, 2))
    for name, model in (("squeezenet1_0", v10), ("squeezenet1_1", v11)):
        kinds = "".join("M" if isinstance(m, nn.MaxPool2d) else "F" for m in model.features[2:])
        assert kinds == LAYOUT[name][1]
        assert all(m.ceil_mode for m in model.features if isinstance(m, nn.MaxPool2d))
    # Same Fire modules; 1.1 saves parameters only in conv1 (96@7x7 -> 64@3x3).
    assert sum(p.numel() for p in v10.parameters()) - sum(p.numel() for p in v11.parameters()) == (
        (96 * 3 * 49 + 96) - (64 * 3 * 9 + 64) + (96 - 64) * 16  # and fire2's squeeze input
    )


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_numbers(name: str, torchvision_state_dicts: dict[str, Any]) -> None:
    params, side, gflops = TORCHVISION_NUMBERS[name]
    info = model_info(name)
    assert info.params == params == torchvision_state_dicts[name]["num_params"]
    assert info.min_size == (side, side)  # the generic tests prove one pixel less fails
    macs = summary_macs(name)
    assert macs == info.macs
    assert round(macs / 1e9, 3) == gflops


@pytest.mark.parametrize("name", NAMES)
def test_torchvision_layout_pth_loads_strict(
    name: str, tmp_path: Path, torchvision_state_dicts: dict[str, Any]
) -> None:
    pairs = torchvision_state_dicts[name]["state_dict"]
    check_torchvision_file_loads_strict(name, pairs, tmp_path / f"{name}.pth")


def test_torchvision_init_and_arguments() -> None:
    model = create_model("squeezenet1_0", dropout=0.25)
    assert model.classifier[0].p == 0.25
    conv10 = model.get_classifier()
    assert conv10.weight.std().item() == pytest.approx(0.01, rel=0.05)  # N(0, 0.01)
    fire = model.features[12]
    bound = (6 / (fire.expand3x3.in_channels * 9)) ** 0.5  # He uniform, fan_in, gain sqrt(2)
    assert fire.expand3x3.weight.abs().max().item() <= bound
    assert all(
        torch.count_nonzero(m.bias) == 0 for m in model.modules() if isinstance(m, nn.Conv2d)
    )
    with pytest.raises(ValueError, match="Unsupported SqueezeNet version 1_2: 1_0 or 1_1 expected"):
        SqueezeNet("1_2")


@pytest.mark.parametrize("name", NAMES)
def test_reset_classifier_keeps_dtype(name: str) -> None:
    check_reset_classifier_keeps_dtype(name)


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_lower_the_loss(name: str) -> None:
    first, last = loss_drops(name, dropout=0.0)
    assert last < first
