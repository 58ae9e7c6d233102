"""DenseNet: the torchvision contract, the paper's tables, and the CIFAR DenseNet-BC.

The functional reference recomputes the forward pass from a state_dict with plain
``torch.nn.functional`` calls, following the paper (sec. 3): each dense layer is
BN-ReLU-Conv1x1(4k)-BN-ReLU-Conv3x3(k) on the concatenation of all earlier maps of its block, a
transition is BN-ReLU-Conv1x1(half)-AvgPool2x2, then BN, ReLU, global average pool, linear.
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
    check_torchvision_file_loads_strict,
    loss_drops,
    scramble_,
    summary_macs,
)
from torch import Tensor, nn

from cnnzoo import create_model, model_info
from cnnzoo.models.densenet import DENSENETS, DenseNet

TORCHVISION = ["densenet121", "densenet161", "densenet169", "densenet201"]
# torchvision 0.28 weights metadata (tests/data/published_numbers.md): num_params and `_ops`
# (GFLOPS, which are MACs), and ImageNet-1K acc@1 of its weights ported from LuaTorch.
TORCHVISION_NUMBERS = {
    "densenet121": (7_978_856, 2.834),
    "densenet161": (28_681_000, 7.728),
    "densenet169": (14_149_480, 3.36),
    "densenet201": (20_013_928, 4.291),
}


def _meta(name: str, **kwargs: Any) -> DenseNet:
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert isinstance(model, DenseNet)
    return model


def _reference_forward(
    state: dict[str, Tensor], x: Tensor, blocks: tuple[int, ...], cifar: bool
) -> Tensor:
    sd = Tracked(state)
    if cifar:  # sec. 3: one 3x3 conv before the first block on CIFAR
        x = F.conv2d(x, sd["features.conv0.weight"], padding=1)
    else:  # Table 1: 7x7/2 conv, 3x3/2 max pool
        x = F.conv2d(x, sd["features.conv0.weight"], stride=2, padding=3)
        x = F.max_pool2d(F.relu(bn(x, sd, "features.norm0")), 3, stride=2, padding=1)
    for b, num_layers in enumerate(blocks, start=1):
        maps = [x]
        for i in range(1, num_layers + 1):
            p = f"features.denseblock{b}.denselayer{i}"
            h = F.relu(bn(torch.cat(maps, 1), sd, f"{p}.norm1"))
            h = F.conv2d(h, sd[f"{p}.conv1.weight"])
            h = F.conv2d(F.relu(bn(h, sd, f"{p}.norm2")), sd[f"{p}.conv2.weight"], padding=1)
            maps.append(h)
        x = torch.cat(maps, 1)
        if b < len(blocks):
            p = f"features.transition{b}"
            x = F.conv2d(F.relu(bn(x, sd, f"{p}.norm")), sd[f"{p}.conv.weight"])
            x = F.avg_pool2d(x, 2)
    x = F.relu(bn(x, sd, "features.norm5")).mean(dim=(2, 3))
    logits = F.linear(x, sd["classifier.weight"], sd["classifier.bias"])
    sd.assert_all_used()
    return logits


@pytest.mark.parametrize(("name", "side"), [("densenet121", 64), ("densenet_bc_100_k12", 16)])
def test_forward_equals_functional_reference(name: str, side: int) -> None:
    model = scramble_(create_model(name))
    x = torch.randn(2, 3, side, side)
    spec = DENSENETS[name]
    with torch.no_grad():
        expected = _reference_forward(
            model.state_dict(), x, spec.block_config, cifar=name.endswith("k12")
        )
        assert_close(model(x), expected)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        assert_close(model.get_classifier()(pooled), expected)


def test_memory_efficient_gives_the_same_outputs_and_gradients() -> None:
    # Checkpointing recomputes the bottleneck in backward: same numbers, less memory.
    small: dict[str, Any] = {"growth_rate": 4, "block_config": (3, 2), "num_init_features": 8}
    plain = DenseNet(**small, cifar_stem=True).train()
    efficient = DenseNet(**small, cifar_stem=True, memory_efficient=True).train()
    efficient.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 8, 8)
    for model in (plain, efficient):
        model(x).square().sum().backward()
    for (name, p), q in zip(plain.named_parameters(), efficient.parameters(), strict=True):
        assert p.grad is not None and q.grad is not None
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_drop_rate_drops_new_features_in_training_only() -> None:
    model = create_model("densenet_bc_100_k12", drop_rate=0.5)
    layer = model.features.denseblock1.denselayer1
    x = [torch.randn(2, 24, 8, 8)]
    layer.train()
    new = layer(x)
    assert (new == 0).float().mean() > 0.3  # half of the new maps' values are zeroed
    layer.eval()
    assert (layer(x) == 0).float().mean() < 0.1


@pytest.mark.parametrize("name", list(DENSENETS))
def test_growth_compression_and_depth_follow_the_paper(name: str) -> None:
    model = _meta(name)
    spec = DENSENETS[name]
    k = spec.growth_rate
    channels = spec.num_init_features
    for b, num_layers in enumerate(spec.block_config, start=1):
        block = model.features.get_submodule(f"denseblock{b}")
        assert len(block) == num_layers
        for i, layer in enumerate(block.values()):
            # eq. 2: layer i sees k0 + i * k maps; the bottleneck makes 4k (sec. 3, DenseNet-B).
            assert layer.conv1.in_channels == channels + i * k
            assert layer.conv1.out_channels == 4 * k and layer.conv1.kernel_size == (1, 1)
            assert layer.conv2.out_channels == k and layer.conv2.kernel_size == (3, 3)
        channels += num_layers * k
        if b < len(spec.block_config):
            transition = model.features.get_submodule(f"transition{b}")
            assert transition.conv.out_channels == channels // 2  # compression theta = 0.5
            channels //= 2
    assert model.classifier.in_features == channels
    # The L in the name counts weighted layers: stem conv, two per dense layer, one per
    # transition, the classifier (Table 1; Table 2's "L = 100").
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    depth = int(name.removeprefix("densenet").split("_")[-2 if "bc" in name else 0])
    assert len(convs) + 1 == depth


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_numbers(name: str, torchvision_state_dicts: dict[str, Any]) -> None:
    params, gflops = TORCHVISION_NUMBERS[name]
    info = model_info(name)
    assert info.params == params == torchvision_state_dicts[name]["num_params"]
    assert info.min_size == (29, 29)  # torchvision's min_size; the generic tests prove 28 fails
    macs = summary_macs(name)
    assert macs == info.macs
    assert round(macs / 1e9, 3) == gflops


def test_cifar_densenet_bc_matches_table_2() -> None:
    info = model_info("densenet_bc_100_k12")
    model = _meta("densenet_bc_100_k12")
    params = sum(p.numel() for p in model.parameters())
    assert params == info.params == 769_162
    assert round(params / 1e6, 1) == 0.8  # Huang et al. 2017, Table 2: 0.8M
    assert summary_macs("densenet_bc_100_k12") == info.macs
    # Three blocks on 32x32, 16x16 and 8x8 maps (sec. 3, "Implementation Details").
    assert [(f.module, f.reduction) for f in model.feature_info] == [
        ("features.denseblock1", 1),
        ("features.denseblock2", 2),
        ("features.norm5", 4),
    ]
    stem = model.features.conv0
    assert (stem.out_channels, stem.kernel_size, stem.stride) == (24, (3, 3), (1, 1))  # 2k


@pytest.mark.parametrize(
    "name",
    [
        n if n in ("densenet121", "densenet169") else pytest.param(n, marks=pytest.mark.slow)
        for n in TORCHVISION
    ],
)
def test_torchvision_layout_pth_loads_strict(
    name: str, tmp_path: Path, torchvision_state_dicts: dict[str, Any]
) -> None:
    pairs = torchvision_state_dicts[name]["state_dict"]
    check_torchvision_file_loads_strict(name, pairs, tmp_path / f"{name}.pth")


def test_torchvision_init_and_fixed_arguments() -> None:
    model = create_model("densenet121")
    conv = model.features.denseblock4.denselayer16.conv1  # He normal, fan_in, on every conv
    fan_in = conv.in_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.05)
    assert torch.count_nonzero(model.classifier.bias) == 0
    with pytest.raises(ValueError, match="growth_rate=32 defines densenet121, got growth_rate=12"):
        _meta("densenet121", growth_rate=12)
    assert _meta("densenet121", growth_rate=32).classifier.in_features == 1024


@pytest.mark.parametrize(("name", "side"), [("densenet121", 32), ("densenet_bc_100_k12", 16)])
def test_a_few_steps_lower_the_loss(name: str, side: int) -> None:
    # The other ImageNet DenseNets differ from densenet121 only in their Table 1 row.
    first, last = loss_drops(name, side=side)
    assert last < first
