"""Pre-activation ResNets (He et al. 2016, "Identity Mappings in Deep Residual Networks")."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import assert_trains, count_macs, count_params, meta_model
from cnnzoo import create_model, model_info
from cnnzoo.models.preact_resnet import PreActBasicBlock, PreActBottleneck, PreActResNet

# He et al. 2016, sec. 4 (and tests/data/published_numbers.md): ResNet-164 1.7M, ResNet-1001
# 10.2M parameters, as printed (millions, one decimal).
PAPER_PARAMS_M = {"preact_resnet164": 1.7, "preact_resnet1001": 10.2}


@functools.cache
def _meta(name: str) -> PreActResNet:
    # Shared: building the 1001-layer net takes seconds even on the meta device.
    return meta_model(name, PreActResNet)


def _weights(model: nn.Module) -> int:
    """Conv and linear parameters only (no BN scale/shift)."""
    return sum(
        p.numel()
        for m in model.modules()
        if isinstance(m, nn.Conv2d | nn.Linear)
        for p in m.parameters()
    )


@pytest.mark.parametrize("name", list(PAPER_PARAMS_M))
def test_paper_param_counts(name: str) -> None:
    model = _meta(name)
    # The 164's total rounds to the paper's 1.7M either way; the 1001's total is 10.33M and its
    # conv + fc weights 10.18M: the paper's 10.2M leaves out BN's scales and shifts.
    assert round(_weights(model) / 1e6, 1) == PAPER_PARAMS_M[name]
    assert count_params(model) == model_info(name).params


@pytest.mark.parametrize(
    ("name", "block", "depth"),
    [
        ("preact_resnet110", PreActBasicBlock, 110),  # 6n + 2, n = 18
        ("preact_resnet164", PreActBottleneck, 164),  # 9n + 2, n = 18
        ("preact_resnet1001", PreActBottleneck, 1001),  # 9n + 2, n = 111
    ],
)
def test_cifar_depth_counts_weight_layers(name: str, block: type, depth: int) -> None:
    model = _meta(name)
    units = [m for m in model.modules() if isinstance(m, block)]
    assert len(units) * (2 if block is PreActBasicBlock else 3) + 2 == depth  # + conv1 and fc
    assert [model.feature_info[i].channels for i in range(3)] == (
        [16, 32, 64] if block is PreActBasicBlock else [64, 128, 256]
    )


def test_maps_are_32_16_8_and_the_stride_sits_on_the_first_1x1() -> None:
    model = meta_model("preact_resnet164", PreActResNet)
    first = model.layer2[0]
    assert isinstance(first, PreActBottleneck)
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)  # the authors' code
    moved = meta_model("preact_resnet164", PreActResNet, stride_in_1x1=False).layer2[0]
    assert isinstance(moved, PreActBottleneck) and moved.conv2.stride == (2, 2)
    shapes = {}
    for stage in ("layer1", "layer2", "layer3"):
        getattr(model, stage).register_forward_hook(
            lambda m, i, o, stage=stage: shapes.__setitem__(stage, tuple(o.shape[1:]))
        )
    model.eval()(torch.empty(1, 3, 32, 32, device="meta"))
    assert shapes == {"layer1": (64, 32, 32), "layer2": (128, 16, 16), "layer3": (256, 8, 8)}


def _bn(x: Tensor, bn: nn.BatchNorm2d) -> Tensor:
    assert bn.running_mean is not None and bn.running_var is not None
    return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps)


def _randomise(model: nn.Module) -> None:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def test_units_follow_figure_4e_full_pre_activation() -> None:
    # Fig. 4e: x + conv(relu(bn(conv(relu(bn(x)))))), nothing after the addition; at a shape
    # change the shortcut projects the activated input (the appendix, the authors' code).
    model = create_model("preact_resnet110").eval()
    _randomise(model)
    x = torch.randn(2, 16, 8, 8)
    plain = model.layer1[1]
    expected = x + plain.conv2(F.relu(_bn(plain.conv1(F.relu(_bn(x, plain.bn1))), plain.bn2)))
    with torch.no_grad():
        torch.testing.assert_close(plain(x), expected)
        first = model.layer2[0]
        activated = F.relu(_bn(x, first.bn1))
        branch = first.conv2(F.relu(_bn(first.conv1(activated), first.bn2)))
        torch.testing.assert_close(first(x), branch + first.shortcut(activated))
    assert isinstance(first.shortcut, nn.Conv2d) and first.shortcut.kernel_size == (1, 1)


def test_final_activation_and_imagenet_stem() -> None:
    model = create_model("preact_resnet18").eval()
    _randomise(model)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        stem = model.stem(model.conv1(x))
        body = model.layer4(model.layer3(model.layer2(model.layer1(stem))))
        torch.testing.assert_close(model.forward_features(x), F.relu(_bn(body, model.bn_final)))
    assert model.layer1[0].bn1 is None, "the stem's BN-ReLU pre-activates the first unit"
    assert all(unit.bn1 is not None for unit in list(model.layer1)[1:])


@pytest.mark.parametrize("name", ["preact_resnet164", "preact_resnet18", "preact_resnet50"])
def test_macs(name: str) -> None:
    info = model_info(name)
    assert count_macs(meta_model(name, PreActResNet), info.input_size) == info.macs


def test_imagenet_macs_equal_the_post_activation_resnets() -> None:
    # BN does no MACs and the projections are the same 1x1 convs (registered ResNet numbers).
    for depth in (18, 34, 50, 101, 152):
        assert model_info(f"preact_resnet{depth}").macs == model_info(f"resnet{depth}").macs


@pytest.mark.parametrize("name", ["preact_resnet110", "preact_resnet18"])
def test_trains_on_cifar_shaped_input(name: str) -> None:
    model = create_model(name, num_classes=10)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    assert_trains(model, x, y, steps=6)
