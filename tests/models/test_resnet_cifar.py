"""CIFAR ResNets (He et al. 2015, sec. 4.2): shortcuts A and B, stage sizes, depth, MACs, and the
forward pass against a functional reference written from the paper's description."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import count_macs, count_params, meta_model
from cnnzoo import create_model, model_info
from cnnzoo.models.resnet import BasicBlock
from cnnzoo.models.resnet_cifar import CifarResNet, ZeroPadShortcut

# tests/data/published_numbers.md (computed, cross-checked with torchinfo), He et al. 2015 Table 6.
# name: (n blocks per stage, params option A, params option B, MMACs)
PUBLISHED = {
    "resnet20": (3, 269_722, 272_474, 40.55),
    "resnet32": (5, 464_154, 466_906, 68.86),
    "resnet44": (7, 658_586, 661_338, 97.17),
    "resnet56": (9, 853_018, 855_770, 125.49),
    "resnet110": (18, 1_727_962, 1_730_714, 252.89),
}
PAPER_TABLE6_PARAMS = {  # millions, as printed
    "resnet20": 0.27,
    "resnet32": 0.46,
    "resnet44": 0.66,
    "resnet56": 0.85,
    "resnet110": 1.7,
    "resnet1202": 19.4,
}


def _meta(name: str, **kwargs: Any) -> CifarResNet:
    return meta_model(name, CifarResNet, **kwargs)


@pytest.mark.parametrize("size", [8, 7, 1])
def test_option_a_pads_with_exact_zeros_and_subsamples_every_other_pixel(size: int) -> None:
    shortcut = ZeroPadShortcut(16, 32, stride=2)
    x = torch.randn(2, 16, size, size)
    y = shortcut(x)
    half = (size + 1) // 2  # what a 3x3, stride-2, pad-1 conv gives, so the sum lines up
    assert y.shape == (2, 32, half, half)
    assert torch.equal(y[:, :16], x[:, :, ::2, ::2])
    assert torch.equal(y[:, 16:], torch.zeros(2, 16, half, half))
    assert not list(shortcut.parameters())


def test_option_a_block_is_conv_branch_plus_padded_identity() -> None:
    model = create_model("resnet20").eval()
    block = model.layer2[0]
    assert isinstance(block, BasicBlock) and isinstance(block.downsample, ZeroPadShortcut)
    x = torch.randn(2, 16, 7, 7)  # odd size: both paths must round up alike
    with torch.no_grad():
        branch = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(x)))))
        padded = F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, 16))
        assert torch.equal(block(x), F.relu(branch + padded))
    # The only shape-changing shortcuts are stage 2's and stage 3's first; all others identity.
    shortcuts = {n for n, m in model.named_modules() if isinstance(m, ZeroPadShortcut)}
    assert shortcuts == {"layer2.0.downsample", "layer3.0.downsample"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_param_counts_for_both_shortcut_options(name: str) -> None:
    _, option_a, option_b, _ = PUBLISHED[name]
    assert count_params(_meta(name)) == option_a == model_info(name).params
    model_b = _meta(name, shortcut="B")
    assert count_params(model_b) == option_b
    projections = {
        n: m
        for n, m in model_b.named_modules()
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1)
    }
    assert set(projections) == {"layer2.0.downsample.0", "layer3.0.downsample.0"}
    assert all(m.stride == (2, 2) for m in projections.values())
    assert isinstance(model_b.layer2[0].downsample[1], nn.BatchNorm2d)


@pytest.mark.parametrize("name", [*PUBLISHED, pytest.param("resnet1202", marks=pytest.mark.slow)])
def test_depth_and_paper_param_count(name: str) -> None:
    model = _meta(name)
    depth = int(name.removeprefix("resnet"))
    # 6n + 2 weighted layers: the first conv, 2n 3x3 convs per stage, the fc (sec. 4.2).
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) + 1 == depth and all(c.kernel_size == (3, 3) for c in convs)
    assert round(count_params(model) / 1e6, 2 if depth < 100 else 1) == PAPER_TABLE6_PARAMS[name]


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_macs(name: str) -> None:
    *_, mmacs = PUBLISHED[name]
    counts = {}
    for shortcut in ("A", "B"):
        counts[shortcut] = count_macs(_meta(name, shortcut=shortcut), (3, 32, 32))
    assert counts["A"] == model_info(name).macs
    assert round(counts["A"] / 1e6, 2) == mmacs
    # Option B adds only its two projections: 16->32 on 16x16 and 32->64 on 8x8.
    assert counts["B"] - counts["A"] == 16 * 32 * 16 * 16 + 32 * 64 * 8 * 8


def test_stages_run_on_32_16_8_maps() -> None:
    model = _meta("resnet20")
    shapes: dict[str, tuple[int, ...]] = {}
    for feature in model.feature_info:
        model.get_submodule(feature.module).register_forward_hook(
            lambda m, i, o, key=feature.module: shapes.__setitem__(key, tuple(o.shape[1:]))
        )
    model(torch.empty(1, 3, 32, 32, device="meta"))
    assert shapes == {"layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}
    assert [(f.channels, 32 // f.reduction) for f in model.feature_info] == [
        (16, 32),
        (32, 16),
        (64, 8),
    ]


def _bn(x: Tensor, sd: dict[str, Tensor], prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
    )


def _reference_forward(sd: dict[str, Tensor], x: Tensor, n: int, shortcut: str) -> Tensor:
    """Sec. 4.2 from the state_dict: conv3x3-16, 3 x n basic blocks at 16/32/64, pool, fc."""
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], padding=1), sd, "bn1"))
    for stage in range(3):
        for index in range(n):
            p = f"layer{stage + 1}.{index}"
            stride = 2 if stage > 0 and index == 0 else 1
            out = F.relu(
                _bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1")
            )
            out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            if stride == 1:
                identity = x
            elif shortcut == "A":
                sub = x[:, :, ::2, ::2]
                identity = torch.cat([sub, torch.zeros_like(sub)], dim=1)  # widths double
            else:
                identity = F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=2)
                identity = _bn(identity, sd, f"{p}.downsample.1")
            x = F.relu(out + identity)
    return F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_forward_equals_functional_reference(shortcut: str) -> None:
    model = create_model("resnet20", shortcut=shortcut).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):  # non-trivial BN so a misplaced one shows
                module.running_mean.normal_(0, 0.1)
                module.running_var.uniform_(0.5, 1.5)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0, 0.1)
        x = torch.randn(2, 3, 32, 32)
        expected = _reference_forward(model.state_dict(), x, n=3, shortcut=shortcut)
        assert torch.allclose(model(x), expected, rtol=1e-4, atol=1e-5 * expected.abs().max())


def test_shortcut_option_is_checked_and_zero_init_residual() -> None:
    with pytest.raises(ValueError, match="'A' or 'B'"):
        create_model("resnet20", shortcut="C")
    model = create_model("resnet20", zero_init_residual=True).eval()
    x = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.layer1[0](x), F.relu(x))
        assert torch.equal(model.layer2[0](x), F.relu(model.layer2[0].downsample(x)))


def test_he_init() -> None:
    # Sec. 3.4: "We initialize the weights as in [13]": N(0, 2 / fan), here fan_out as torchvision.
    model = create_model("resnet110")
    weights = torch.cat([b.conv2.weight.flatten() for b in model.layer3])  # 18 x 64x64x3x3
    assert weights.std().item() == pytest.approx((2 / (64 * 9)) ** 0.5, rel=0.02)
    assert all(
        torch.equal(m.weight, torch.ones_like(m.weight))
        for m in model.modules()
        if isinstance(m, nn.BatchNorm2d)
    )
