"""ResNet / ResNeXt / Wide ResNet: the torchvision contract beyond the generic tests.

The functional reference below recomputes the forward pass from a state_dict with plain
``torch.nn.functional`` calls, following torchvision's documented architecture (conv 7x7/2,
max-pool 3x3/2, four stages whose first block strides, projection shortcut where the shape
changes, global average pool, fc), not the model's modules.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import count_macs, meta_model
from cnnzoo import create_model, model_info
from cnnzoo.models.resnet import BasicBlock, Bottleneck, ResNet

BLOCKS = {
    "resnet18": (2, 2, 2, 2),
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
    "resnet152": (3, 8, 36, 3),
}


def _meta(name: str, **kwargs: Any) -> ResNet:
    return meta_model(name, ResNet, **kwargs)


def _randomise_norms(model: nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so a misplaced BN cannot hide."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.copy_(0.1 * torch.randn(n))
            module.running_var.copy_(torch.rand(n) + 0.5)
            module.weight.data.copy_(torch.rand(n) + 0.5)
            module.bias.data.copy_(0.1 * torch.randn(n))


class _Tracked(dict[str, Tensor]):
    """A state_dict that remembers which entries the reference read."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__(state)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        self.used.add(key)
        return super().__getitem__(key)


def _bn(x: Tensor, sd: _Tracked, prefix: str) -> Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _reference_forward(
    state: dict[str, Tensor],
    x: Tensor,
    *,
    layers: tuple[int, int, int, int],
    bottleneck: bool,
    groups: int = 1,
    stride_in_1x1: bool = False,
    dilate: tuple[bool, bool, bool] = (False, False, False),
) -> Tensor:
    sd = _Tracked(state)
    x = F.relu(_bn(F.conv2d(x, sd["conv1.weight"], stride=2, padding=3), sd, "bn1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
    dilation = 1
    for stage, num_blocks in enumerate(layers):
        stride = 1 if stage == 0 else 2
        entry_dilation = dilation  # torchvision: a dilated stage's first block keeps the old one
        if stage > 0 and dilate[stage - 1]:
            dilation, stride = dilation * stride, 1
        for index in range(num_blocks):
            p = f"layer{stage + 1}.{index}"
            s = stride if index == 0 else 1
            d = entry_dilation if index == 0 else dilation
            shortcut = x
            if f"{p}.downsample.0.weight" in sd:
                shortcut = F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=s)
                shortcut = _bn(shortcut, sd, f"{p}.downsample.1")
            if bottleneck:
                s1x1, s3x3 = (s, 1) if stride_in_1x1 else (1, s)
                out = F.relu(_bn(F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s1x1), sd, f"{p}.bn1"))
                out = F.conv2d(
                    out, sd[f"{p}.conv2.weight"], stride=s3x3, padding=d, dilation=d, groups=groups
                )
                out = F.relu(_bn(out, sd, f"{p}.bn2"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv3.weight"]), sd, f"{p}.bn3")
            else:
                out = F.conv2d(x, sd[f"{p}.conv1.weight"], stride=s, padding=1)
                out = F.relu(_bn(out, sd, f"{p}.bn1"))
                out = _bn(F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            x = F.relu(out + shortcut)
    logits = F.linear(x.mean(dim=(2, 3)), sd["fc.weight"], sd["fc.bias"])
    unused = {k for k in state if not k.endswith("num_batches_tracked")} - sd.used
    assert not unused, f"the model has state the reference never used: {sorted(unused)[:5]}"
    return logits


REFERENCE_CASES = {
    "resnet18": ("resnet18", {}, {"layers": BLOCKS["resnet18"], "bottleneck": False}),
    "resnet50": ("resnet50", {}, {"layers": BLOCKS["resnet50"], "bottleneck": True}),
    "resnet50_v1": (
        "resnet50",
        {"stride_in_1x1": True},
        {"layers": BLOCKS["resnet50"], "bottleneck": True, "stride_in_1x1": True},
    ),
    "resnet50_dilated": (
        "resnet50",
        {"replace_stride_with_dilation": [False, True, True]},
        {"layers": BLOCKS["resnet50"], "bottleneck": True, "dilate": (False, True, True)},
    ),
    "resnext50_32x4d": (
        "resnext50_32x4d",
        {},
        {"layers": BLOCKS["resnet50"], "bottleneck": True, "groups": 32},
    ),
}


@functools.cache
def _random_state(name: str) -> dict[str, Tensor]:
    """A real build's weights with randomised norms, shared by the variants of one model."""
    model = create_model(name)
    with torch.no_grad():
        _randomise_norms(model)
    return model.state_dict()


@pytest.mark.parametrize("case", list(REFERENCE_CASES))
def test_forward_equals_functional_reference(case: str) -> None:
    name, kwargs, reference_kwargs = REFERENCE_CASES[case]
    # v1 and dilation change no shapes: they run on the same weights as the default build.
    model = _meta(name, **kwargs)
    model.load_state_dict(_random_state(name), assign=True)
    model.eval()
    with torch.no_grad():
        x = torch.randn(2, 3, 64, 64)
        expected = _reference_forward(model.state_dict(), x, **reference_kwargs)
        tolerance = 1e-5 * expected.abs().max().item()  # float32 through 50 layers
        assert torch.allclose(model(x), expected, rtol=1e-4, atol=tolerance)
        # forward is forward_head(forward_features(.)); pre_logits gives the pooled vector.
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert pooled.shape == (2, model.num_features)
        logits = model.get_classifier()(pooled)
        assert torch.allclose(logits, expected, rtol=1e-4, atol=tolerance)


def _widened(reference: list[list[Any]], groups: int, width_per_group: int) -> list[list[Any]]:
    """A ResNet's [key, shape] list turned into its ResNeXt / WRN sibling's: the bottleneck's
    inner width (conv1 out, bn1, conv2, bn2, conv3 in) grows by ``groups * width_per_group / 64``
    and conv2's input channels per group shrink by ``groups``; nothing else changes."""
    factor = groups * width_per_group // 64
    widened = []
    for key, shape in reference:
        parts = key.split(".")
        layer = parts[2] if key.startswith("layer") and len(parts) > 3 else ""
        if layer == "conv1":
            shape = [shape[0] * factor, *shape[1:]]
        elif layer in ("bn1", "bn2") and shape:
            shape = [shape[0] * factor]
        elif layer == "conv2":
            shape = [shape[0] * factor, shape[1] * factor // groups, *shape[2:]]
        elif layer == "conv3":
            shape = [shape[0], shape[1] * factor, *shape[2:]]
        widened.append([key, shape])
    return widened


def _param_count(pairs: list[list[Any]]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(math.prod(shape) for key, shape in pairs if not key.endswith(buffers))


@pytest.mark.parametrize(
    ("name", "base", "groups", "width_per_group", "published_params"),
    [
        # torchvision 0.28 docs; not in the JSON, so their shapes follow from the 50-layer pattern.
        ("resnext101_32x8d", "resnet101", 32, 8, 88_791_336),
        ("wide_resnet101_2", "resnet101", 1, 128, 126_886_696),
    ],
)
def test_wide_101s_follow_the_50_layer_pattern(
    name: str,
    base: str,
    groups: int,
    width_per_group: int,
    published_params: int,
    torchvision_state_dicts: dict[str, Any],
) -> None:
    ref = {k: v["state_dict"] for k, v in torchvision_state_dicts.items()}
    # The rule holds where the JSON can check it ...
    assert _widened(ref["resnet50"], 32, 4) == ref["resnext50_32x4d"]
    assert _widened(ref["resnet50"], 1, 128) == ref["wide_resnet50_2"]
    # ... and then predicts the 101-layer models, down to torchvision's documented param count.
    expected = _widened(ref[base], groups, width_per_group)
    assert _param_count(expected) == published_params
    ours = [[k, list(v.shape)] for k, v in _meta(name).state_dict().items()]
    assert ours == expected


@pytest.mark.parametrize(
    ("name", "v1_gmacs", "v15_gmacs"),
    # He et al. 2015 Table 1 (3.8 / 7.6 / 11.3 G) agrees with v1; torchvision docs give v1.5.
    [
        ("resnet50", 3.858, 4.089),
        pytest.param("resnet101", 7.570, 7.801, marks=pytest.mark.slow),
        pytest.param("resnet152", 11.282, 11.514, marks=pytest.mark.slow),
    ],
)
def test_v1_puts_the_stride_on_the_first_1x1(name: str, v1_gmacs: float, v15_gmacs: float) -> None:
    v15, v1 = _meta(name), _meta(name, stride_in_1x1=True)
    for model, strided in ((v15, "conv2"), (v1, "conv1")):
        for stage in ("layer2", "layer3", "layer4"):
            for index, block in enumerate(getattr(model, stage)):
                assert isinstance(block, Bottleneck)
                for conv in ("conv1", "conv2", "conv3"):
                    want = (2, 2) if index == 0 and conv == strided else (1, 1)
                    assert getattr(block, conv).stride == want, (stage, index, conv)
            assert getattr(model, stage)[0].downsample[0].stride == (2, 2)
        layer1_convs = [m for m in model.layer1.modules() if isinstance(m, nn.Conv2d)]
        assert all(conv.stride == (1, 1) for conv in layer1_convs)
    # Same parameters, different arithmetic: the strided 1x1 skips 3/4 of its input.
    assert [(k, v.shape) for k, v in v1.state_dict().items()] == [
        (k, v.shape) for k, v in v15.state_dict().items()
    ]
    v15_macs = count_macs(v15, (3, 224, 224))
    assert v15_macs == model_info(name).macs
    assert round(v15_macs / 1e9, 3) == v15_gmacs
    assert round(count_macs(v1, (3, 224, 224)) / 1e9, 3) == v1_gmacs


def test_v1_is_v15_for_basic_blocks() -> None:
    v15, v1 = _meta("resnet18"), _meta("resnet18", stride_in_1x1=True)
    assert [m.stride for m in v1.modules() if isinstance(m, nn.Conv2d)] == [
        m.stride for m in v15.modules() if isinstance(m, nn.Conv2d)
    ]
    assert (
        count_macs(v1, (3, 224, 224))
        == count_macs(v15, (3, 224, 224))
        == model_info("resnet18").macs
    )


@pytest.mark.parametrize(
    ("name", "gmacs"),
    [
        ("resnet18", 1.814),
        ("resnet34", 3.664),
        ("resnext50_32x4d", 4.23),
        ("wide_resnet50_2", 11.4),
        ("resnext101_32x8d", 16.414),
        ("wide_resnet101_2", 22.753),
    ],
)
def test_macs_match_torchvision_docs(name: str, gmacs: float) -> None:
    macs = count_macs(_meta(name), (3, 224, 224))
    assert macs == model_info(name).macs
    decimals = len(str(gmacs).split(".")[1])
    assert round(macs / 1e9, decimals) == gmacs  # torchvision docs "GFLOPS" (= MACs)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_zero_init_residual_makes_every_block_relu_of_its_shortcut(name: str) -> None:
    model = create_model(name, zero_init_residual=True).eval()
    blocks = [m for m in model.modules() if isinstance(m, BasicBlock | Bottleneck)]
    for block in blocks:
        last = block.bn3 if isinstance(block, Bottleneck) else block.bn2
        assert torch.count_nonzero(last.weight) == 0
        others = [m for m in block.modules() if isinstance(m, nn.BatchNorm2d) and m is not last]
        assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in others)
    with torch.no_grad():
        identity = model.layer1[1]
        x = torch.randn(2, identity.conv1.in_channels, 16, 16)
        assert torch.equal(identity(x), F.relu(x))
        projection = model.layer2[0]
        assert projection.downsample is not None
        x = torch.randn(2, projection.conv1.in_channels, 16, 16)
        assert torch.equal(projection(x), F.relu(projection.downsample(x)))
    default = create_model(name)
    assert all(
        torch.count_nonzero(m.weight) == m.num_features
        for m in default.modules()
        if isinstance(m, nn.BatchNorm2d)
    )


@pytest.mark.parametrize(
    "dilate",
    [(False, False, False), (False, False, True), (False, True, True), (True, True, True)],
)
def test_replace_stride_with_dilation_keeps_resolution(dilate: tuple[bool, bool, bool]) -> None:
    model = _meta("resnet50", replace_stride_with_dilation=list(dilate)).eval()
    sizes: dict[str, int] = {}
    for feature in model.feature_info:
        model.get_submodule(feature.module).register_forward_hook(
            lambda m, i, o, key=feature.module: sizes.__setitem__(key, o.shape[-1])
        )
    features = model.forward_features(torch.empty(1, 3, 64, 64, device="meta"))
    output_stride = 32 // 2 ** sum(dilate)
    assert features.shape == (1, 2048, 64 // output_stride, 64 // output_stride)
    assert sizes == {f.module: 64 // f.reduction for f in model.feature_info}
    assert model.feature_info[-1].reduction == output_stride
    # Dilation doubles per dilated stage; the first block of each keeps the previous dilation.
    expected, dilation = [], 1
    for stage, flag in zip((model.layer2, model.layer3, model.layer4), dilate, strict=True):
        previous, dilation = dilation, dilation * 2 if flag else dilation
        expected += [previous] + [dilation] * (len(stage) - 1)
    convs = [b.conv2 for s in (model.layer2, model.layer3, model.layer4) for b in s]
    assert [c.dilation[0] for c in convs] == expected
    assert all(c.padding == c.dilation for c in convs)


def test_constructor_arguments_are_checked_like_torchvision() -> None:
    with pytest.raises(ValueError, match="3-element"):
        _meta("resnet50", replace_stride_with_dilation=[False, True])
    with pytest.raises(NotImplementedError, match="Dilation"):
        _meta("resnet18", replace_stride_with_dilation=[False, False, True])
    with pytest.raises(ValueError, match="groups=1 and base_width=64"):
        _meta("resnet18", groups=2)
    with pytest.raises(ValueError, match="groups=32 defines this variant, got groups=16"):
        _meta("resnext50_32x4d", groups=16)
    assert _meta("resnext50_32x4d", groups=32).groups == 32  # repeating the fixed value is fine


def test_norm_layer_and_torchvision_init() -> None:
    model = create_model("resnet18", norm_layer=lambda c: nn.GroupNorm(32, c))
    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    assert len(norms) == 20 and not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    # He normal, fan_out, gain sqrt(2) on every conv (checked on the largest one) ...
    conv = model.layer4[0].conv2
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / fan_out), rel=0.02)
    # ... while the fc keeps nn.Linear's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    bound = 1 / math.sqrt(512)
    assert model.fc.weight.abs().max().item() <= bound
    assert model.fc.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
