"""MobileNet v1 (the paper's Tables 1, 2, 6, 7) and MobileNet v2 (the torchvision contract, the
paper's Table 2), each against a functional reference.

The references recompute the forward pass from a state_dict with plain ``torch.nn.functional``
calls. v1 (Howard et al. 2017, Table 1, Fig. 3): 3x3/2 conv, then 13 x (3x3 depthwise conv, 1x1
conv), BN and ReLU after every conv, global average pool, fc. v2 (Sandler et al. 2018, Table 1-2):
3x3/2 conv, bottlenecks (1x1 expand + ReLU6, 3x3 depthwise + ReLU6, linear 1x1 projection, each
with BN; residual when stride 1 and width kept), 1x1 conv to 1280, pool, dropout, linear.
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
    bn,
    check_reset_classifier_keeps_dtype,
    check_torchvision_file_loads_strict,
    loss_drops,
    scramble_,
    summary_macs,
)
from torch import Tensor, nn

from cnnzoo import create_model, model_info
from cnnzoo.models.mobilenet import InvertedResidual, MobileNetV1, MobileNetV2

# Howard et al. 2017, Table 1: (depthwise stride, pointwise filters) after the 32@3x3/2 conv.
V1_TABLE1 = (
    [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)]
    + [(1, 512)] * 5
    + [
        (2, 1024),
        (1, 1024),  # printed "s2" in Table 1, but 7x7 in and out: stride 1
    ]
)
# Table 6 (width multiplier at 224) and Table 7 (resolution at width 1.0): million mult-adds
# and million parameters as printed. The paper's rounding is not uniform: 568.7M prints as 569
# but 290.7M (at 160) as 290, so mult-adds are checked to within 1M.
V1_TABLE6 = {1.0: (569, 4.2), 0.75: (325, 2.6), 0.5: (149, 1.3), 0.25: (41, 0.5)}
V1_TABLE7 = {224: 569, 192: 418, 160: 290, 128: 186}
# Table 2: share (%) of mult-adds and of parameters by layer type. The paper prints 1.19% of
# mult-adds for the full 3x3 conv, but its four rows then sum to 99.29%: the computed 1.91% is
# those digits transposed and makes the sum 100.01%.
V1_TABLE2 = {"1x1": (94.86, 74.59), "dw": (3.06, 1.06), "3x3": (1.91, 0.02), "fc": (0.18, 24.33)}
# Sandler et al. 2018, Table 2: expansion t, output channels c, repeats n, stride s.
# fmt: off
V2_TABLE2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
             (6, 160, 3, 2), (6, 320, 1, 1)]
# fmt: on


def _reference_v1(state: dict[str, Tensor], x: Tensor) -> Tensor:
    sd = Tracked(state)
    x = F.conv2d(x, sd["features.0.0.weight"], stride=2, padding=1)
    x = F.relu(bn(x, sd, "features.0.1"))
    for index, (stride, _) in enumerate(V1_TABLE1, start=1):
        p = f"features.{index}"
        dw = sd[f"{p}.depthwise.0.weight"]
        x = F.conv2d(x, dw, stride=stride, padding=1, groups=dw.shape[0])
        x = F.relu(bn(x, sd, f"{p}.depthwise.1"))
        x = F.relu(bn(F.conv2d(x, sd[f"{p}.pointwise.0.weight"]), sd, f"{p}.pointwise.1"))
    logits = F.linear(x.mean(dim=(2, 3)), sd["classifier.weight"], sd["classifier.bias"])
    sd.assert_all_used()
    return logits


def _reference_v2(state: dict[str, Tensor], x: Tensor) -> Tensor:
    sd = Tracked(state)
    x = F.conv2d(x, sd["features.0.0.weight"], stride=2, padding=1)
    x = F.relu6(bn(x, sd, "features.0.1"))
    index = 1
    for t, c, n, s in V2_TABLE2:
        for repeat in range(n):
            p, stride, j = f"features.{index}.conv", s if repeat == 0 else 1, 0
            h = x
            if t != 1:
                h = F.relu6(bn(F.conv2d(h, sd[f"{p}.0.0.weight"]), sd, f"{p}.0.1"))
                j = 1
            dw = sd[f"{p}.{j}.0.weight"]
            h = F.conv2d(h, dw, stride=stride, padding=1, groups=dw.shape[0])
            h = F.relu6(bn(h, sd, f"{p}.{j}.1"))
            h = bn(F.conv2d(h, sd[f"{p}.{j + 1}.weight"]), sd, f"{p}.{j + 2}")  # linear
            x = x + h if stride == 1 and x.shape[1] == c else h
            index += 1
    x = F.relu6(bn(F.conv2d(x, sd[f"features.{index}.0.weight"]), sd, f"features.{index}.1"))
    logits = F.linear(x.mean(dim=(2, 3)), sd["classifier.1.weight"], sd["classifier.1.bias"])
    sd.assert_all_used()
    return logits


@pytest.mark.parametrize(
    ("name", "reference"), [("mobilenet_v1", _reference_v1), ("mobilenet_v2", _reference_v2)]
)
@pytest.mark.parametrize("side", [64, 33])  # 33: odd maps through every stride-2 conv
def test_forward_equals_functional_reference(name: str, reference: Any, side: int) -> None:
    model = scramble_(create_model(name))
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected = reference(model.state_dict(), x)
        assert_close(model(x), expected)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert_close(model.get_classifier()(pooled), expected)


# --- v1 ---


def test_v1_follows_table_1_with_28_layers() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v1")
    assert isinstance(model, MobileNetV1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    # "Counting depthwise and pointwise convolutions as separate layers, MobileNet has 28 layers."
    assert len(convs) + 1 == 28
    depthwise = [m for m in convs if m.groups > 1]
    pointwise = [m for m in convs if m.kernel_size == (1, 1)]
    assert [(d.stride[0], p.out_channels) for d, p in zip(depthwise, pointwise, strict=True)] == (
        V1_TABLE1
    )
    assert all(d.groups == d.in_channels == d.out_channels for d in depthwise)
    assert convs[0].out_channels == 32 and convs[0].stride == (2, 2)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(norms) == len(convs) and sum(isinstance(m, nn.ReLU) for m in model.modules()) == 27


@pytest.mark.parametrize("alpha", list(V1_TABLE6))
def test_v1_width_multiplier_matches_table_6(alpha: float) -> None:
    mult_adds, params = V1_TABLE6[alpha]
    with torch.device("meta"):
        model = create_model("mobilenet_v1", width_mult=alpha)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 1) == params
    assert abs(summary_macs("mobilenet_v1", None, width_mult=alpha) / 1e6 - mult_adds) < 1


@pytest.mark.parametrize("resolution", list(V1_TABLE7))
def test_v1_resolution_matches_table_7(resolution: int) -> None:
    model = create_model("mobilenet_v1", resolution=resolution)
    assert model.resolution == resolution  # no weight changes: the pool is global
    macs = summary_macs("mobilenet_v1", (resolution, resolution))
    assert abs(macs / 1e6 - V1_TABLE7[resolution]) < 1
    if resolution == 224:
        assert macs == model_info("mobilenet_v1").macs


def test_v1_resource_shares_match_table_2() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v1")
    macs: dict[str, int] = {}
    weights: dict[str, int] = {}

    def kind(m: nn.Module) -> str:
        if isinstance(m, nn.Linear):
            return "fc"
        assert isinstance(m, nn.Conv2d)
        return "dw" if m.groups > 1 else "1x1" if m.kernel_size == (1, 1) else "3x3"

    def hook(m: nn.Module, inputs: Any, out: Tensor) -> None:
        macs[kind(m)] = macs.get(kind(m), 0) + out[0].numel() * m.weight[0].numel()

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(hook)
            weights[kind(m)] = weights.get(kind(m), 0) + m.weight.numel()  # weights, no biases
    model.eval()(torch.empty(1, 3, 224, 224, device="meta"))
    assert sum(macs.values()) == model_info("mobilenet_v1").macs
    for key, (mult_add_share, param_share) in V1_TABLE2.items():
        assert round(100 * macs[key] / sum(macs.values()), 2) == mult_add_share, key
        assert round(100 * weights[key] / sum(weights.values()), 2) == param_share, key


def test_v1_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="width_mult must be positive, got 0"):
        create_model("mobilenet_v1", width_mult=0)
    with pytest.raises(ValueError, match="resolution must be a positive input side, got -1"):
        create_model("mobilenet_v1", resolution=-1)
    assert create_model("mobilenet_v1", dropout=0.3).dropout.p == 0.3


# --- v2 ---


def test_v2_follows_table_2() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v2")
    assert isinstance(model, MobileNetV2)
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    expected = [(t, c, s if i == 0 else 1) for t, c, n, s in V2_TABLE2 for i in range(n)]
    found = []
    channels = 32
    for block in blocks:
        depthwise = next(
            m for m in block.conv.modules() if isinstance(m, nn.Conv2d) and m.groups > 1
        )
        found.append((depthwise.in_channels // channels, block.out_channels, depthwise.stride[0]))
        # Residual only where the thin ends match (Fig. 4d); the projection is linear.
        assert block.use_res_connect == (
            depthwise.stride == (1, 1) and channels == block.out_channels
        )
        assert not isinstance(block.conv[-1], nn.ReLU6)
        channels = block.out_channels
    assert found == expected and sum(b.use_res_connect for b in blocks) == 10
    assert model.last_channel == 1280 and model.classifier[0].p == 0.2


def test_v2_numbers(torchvision_state_dicts: dict[str, Any]) -> None:
    info = model_info("mobilenet_v2")
    with torch.device("meta"):
        model = create_model("mobilenet_v2")
    params = sum(p.numel() for p in model.parameters())
    # torchvision 0.28: 3,504,872 params, 0.301 GFLOPS, min_size 1x1.
    assert params == info.params == torchvision_state_dicts["mobilenet_v2"]["num_params"]
    assert info.min_size == (1, 1)
    macs = summary_macs("mobilenet_v2")
    assert macs == info.macs and round(macs / 1e9, 3) == 0.301
    # Paper Table 4: "300M" MAdds; "3.4M" params: conv and linear weights and biases without the
    # BN parameters give 3.47M, the counting of the v1 paper's Table 2 (with BN: 3.50M).
    assert round(macs / 1e7) * 10 == 300
    bn_params = sum(
        p.numel() for m in model.modules() if isinstance(m, nn.BatchNorm2d) for p in m.parameters()
    )
    assert params - bn_params == 3_470_760


def test_v2_width_multiplier_rounds_like_torchvision() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v2", width_mult=0.5)
    convs = [m for m in model.features.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == 16  # 32 * 0.5, a multiple of 8
    assert model.features[1].out_channels == 8  # 16 * 0.5
    assert model.last_channel == 1280  # kept for multipliers below 1 (sec. 6.1)
    assert all(m.out_channels % 8 == 0 for m in convs)


def test_v2_arguments_are_checked_like_torchvision() -> None:
    with pytest.raises(ValueError, match="should be non-empty or a 4-element list"):
        create_model("mobilenet_v2", inverted_residual_setting=[[1, 16, 1]])
    with pytest.raises(ValueError, match="stride should be 1 or 2 instead of 3"):
        InvertedResidual(8, 8, 3, 6)
    model = create_model("mobilenet_v2", norm_layer=lambda c: nn.GroupNorm(4, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)


def test_v2_torchvision_layout_pth_loads_strict(
    tmp_path: Path, torchvision_state_dicts: dict[str, Any]
) -> None:
    pairs = torchvision_state_dicts["mobilenet_v2"]["state_dict"]
    check_torchvision_file_loads_strict("mobilenet_v2", pairs, tmp_path / "mobilenet_v2.pth")


def test_v2_torchvision_init() -> None:
    model = create_model("mobilenet_v2")
    conv = model.features[17].conv[0][0]  # He normal, fan_out
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)
    fc = model.get_classifier()
    assert fc.weight.std().item() == pytest.approx(0.01, rel=0.05)
    assert torch.count_nonzero(fc.bias) == 0


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_reset_classifier_keeps_dtype(name: str) -> None:
    check_reset_classifier_keeps_dtype(name)


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v2"])
def test_a_few_steps_lower_the_loss(name: str) -> None:
    # Digits-shaped for v1 (1 channel), CIFAR-shaped for v2.
    kwargs = {"side": 8, "in_channels": 1} if name == "mobilenet_v1" else {"dropout": 0.0}
    first, last = loss_drops(name, **kwargs)  # type: ignore[arg-type]
    assert last < first
