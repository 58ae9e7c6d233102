"""MobileNet v1 (Howard et al. 2017) and MobileNet v2 (Sandler et al. 2018).

v1 factorises each standard conv into a 3x3 depthwise conv (one filter per channel) and a 1x1
pointwise conv, each followed by BN and ReLU (paper Fig. 3): about 8-9x fewer mult-adds than the
standard 3x3 conv. The width multiplier alpha thins every layer (Table 6); the resolution
multiplier rho is the input size, 224 * rho (Table 7).

v2's inverted residual block expands a thin input with a 1x1 conv (factor t), filters it with a
3x3 depthwise conv and projects it back with a linear 1x1 conv, no ReLU after it (the "linear
bottleneck"); the shortcut joins the thin ends (paper Fig. 3b, Table 1-2). It is
torchvision-compatible: same module names, state_dict order and shapes, constructor arguments,
initialisation and function, so torchvision checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo, sequential_head
from cnnzoo.registry import Paper, register_model

__all__ = [
    "HOWARD2017",
    "MOBILENET_V1_LAYERS",
    "MOBILENET_V2_SETTING",
    "SANDLER2018",
    "ConvBNActivation",
    "DepthwiseSeparable",
    "InvertedResidual",
    "MobileNetV1",
    "MobileNetV2",
]

HOWARD2017 = Paper(
    title="MobileNets: Efficient Convolutional Neural Networks for Mobile Vision Applications",
    authors="Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto, Adam",
    year=2017,
    link="https://arxiv.org/abs/1704.04861",
)
SANDLER2018 = Paper(
    title="MobileNetV2: Inverted Residuals and Linear Bottlenecks",
    authors="Sandler, Howard, Zhu, Zhmoginov, Chen",
    year=2018,
    link="https://arxiv.org/abs/1801.04381",
)

NormLayer = Callable[[int], nn.Module]


class ConvBNActivation(nn.Sequential):
    """Conv (no bias, "same" padding) -> norm -> activation; torchvision's Conv2dNormActivation
    layout (keys ``0.weight``, ``1.*``), so v2's state_dict matches torchvision's."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        groups: int = 1,
        norm_layer: NormLayer | None = None,
        activation_layer: Callable[..., nn.Module] = nn.ReLU6,
    ) -> None:
        norm_layer = norm_layer or nn.BatchNorm2d
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride,
                padding=(kernel_size - 1) // 2,
                groups=groups,
                bias=False,
            ),
            norm_layer(out_channels),
            activation_layer(inplace=True),
        )
        self.out_channels = out_channels


# --- MobileNet v1 ---------------------------------------------------------------------------------

# Paper Table 1 after the 32@3x3/2 stem: (pointwise output channels, depthwise stride) of each
# depthwise separable layer. Table 1 prints the last depthwise conv as "s2", but its input and
# output are both 7x7: stride 1, as in the authors' TensorFlow release.
MOBILENET_V1_LAYERS: tuple[tuple[int, int], ...] = (
    (64, 1),
    (128, 2),
    (128, 1),
    (256, 2),
    (256, 1),
    (512, 2),
    *((512, 1),) * 5,
    (1024, 2),
    (1024, 1),
)
MOBILENET_V1_STEM = 32


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv -> BN -> ReLU, then 1x1 pointwise conv -> BN -> ReLU (paper Fig. 3)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.depthwise = ConvBNActivation(
            in_channels, in_channels, 3, stride, groups=in_channels, activation_layer=nn.ReLU
        )
        self.pointwise = ConvBNActivation(in_channels, out_channels, 1, activation_layer=nn.ReLU)

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.pointwise(self.depthwise(x))
        return out


class MobileNetV1(ClassifierModel):
    """MobileNet v1: 3x3/2 stem conv, 13 depthwise separable layers, global average pool, fc.

    ``width_mult`` is the paper's alpha (sec. 3.3): every layer keeps ``int(channels * alpha)``
    filters, at least 8 (as the authors' TensorFlow release). ``resolution`` is the input side the
    network is meant for, the paper's rho = resolution / 224 (sec. 3.4): it changes no weight
    (the pool is global) but every layer's mult-adds, and is recorded as ``self.resolution``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        resolution: int = 224,
        dropout: float = 0.0,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if width_mult <= 0:
            raise ValueError(f"width_mult must be positive, got {width_mult}")
        if resolution < 1:
            raise ValueError(f"resolution must be a positive input side, got {resolution}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.width_mult = width_mult
        self.resolution = resolution
        # Every conv is padded ("same"): a 1x1 input stays 1x1 through the five stride-2 convs.
        self.min_input_size = (1, 1)
        self.fixed_input_size = None

        def width(channels: int) -> int:
            return max(int(channels * width_mult), 8)

        channels = width(MOBILENET_V1_STEM)
        layers: list[nn.Module] = [
            ConvBNActivation(in_channels, channels, 3, 2, activation_layer=nn.ReLU)
        ]
        self.feature_info = []
        reduction = 2
        for out_channels, stride in MOBILENET_V1_LAYERS:
            if stride == 2:  # a stage ends where the resolution halves
                self.feature_info.append(
                    FeatureInfo(f"features.{len(layers) - 1}", channels, reduction)
                )
                reduction *= 2
            layers.append(DepthwiseSeparable(channels, width(out_channels), stride))
            channels = width(out_channels)
        self.feature_info.append(FeatureInfo(f"features.{len(layers) - 1}", channels, reduction))
        self.features = nn.Sequential(*layers)
        self.num_features = channels
        self.dropout = nn.Dropout(p=dropout)
        self.classifier = nn.Linear(channels, num_classes)
        _init_mobilenet(self)

    def forward_features(self, x: Tensor) -> Tensor:
        features: Tensor = self.features(x)
        return features

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # Table 1: "Avg Pool 7x7" at 224, i.e. a global average pool.
        x = self.dropout(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))
        if pre_logits:
            return x
        logits: Tensor = self.classifier(x)
        return logits

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = _new_linear(self.classifier, num_classes)
        self.num_classes = num_classes


# --- MobileNet v2 ---------------------------------------------------------------------------------


class _BlockSetting(NamedTuple):
    """One row of the paper's Table 2: expansion t, output channels c, repeats n, stride s."""

    t: int
    c: int
    n: int
    s: int


# Sandler et al. 2018, Table 2 (the bottleneck rows), after a 32@3x3/2 stem; a 1x1 conv to 1280
# channels, a global pool and the classifier follow.
MOBILENET_V2_SETTING: tuple[_BlockSetting, ...] = (
    _BlockSetting(1, 16, 1, 1),
    _BlockSetting(6, 24, 2, 2),
    _BlockSetting(6, 32, 3, 2),
    _BlockSetting(6, 64, 4, 2),
    _BlockSetting(6, 96, 3, 1),
    _BlockSetting(6, 160, 3, 2),
    _BlockSetting(6, 320, 1, 1),
)


def _make_divisible(value: float, divisor: int, min_value: int | None = None) -> int:
    """Round channels to a multiple of ``divisor`` (nearest, but never below 90% of ``value``):
    the rule of the authors' TensorFlow release, which torchvision follows."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


class InvertedResidual(nn.Module):
    """1x1 expand (t > 1) -> 3x3 depthwise (stride) -> linear 1x1 project -> BN, with a shortcut
    when stride is 1 and the width is kept (paper Table 1, Fig. 4d). ReLU6 after the first two."""

    def __init__(
        self,
        inp: int,  # torchvision's argument names
        oup: int,
        stride: int,
        expand_ratio: int,
        norm_layer: NormLayer | None = None,
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride should be 1 or 2 instead of {stride}")
        norm_layer = norm_layer or nn.BatchNorm2d
        hidden_dim = round(inp * expand_ratio)
        self.stride = stride
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvBNActivation(inp, hidden_dim, 1, norm_layer=norm_layer))
        layers += [
            ConvBNActivation(
                hidden_dim, hidden_dim, 3, stride, groups=hidden_dim, norm_layer=norm_layer
            ),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),  # linear: no activation after it
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(ClassifierModel):
    """torchvision's MobileNetV2: ``features`` (stem, 17 inverted residual blocks, 1x1 conv to
    1280) and ``classifier`` (Dropout, Linear)."""

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        inverted_residual_setting: Sequence[Sequence[int]] | None = None,
        round_nearest: int = 8,
        block: Callable[..., nn.Module] | None = None,
        norm_layer: NormLayer | None = None,
        dropout: float = 0.2,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        block = block or InvertedResidual
        norm_layer = norm_layer or nn.BatchNorm2d
        setting = inverted_residual_setting or MOBILENET_V2_SETTING
        if len(setting) == 0 or any(len(row) != 4 for row in setting):
            raise ValueError(
                "inverted_residual_setting should be non-empty or a 4-element list, "
                f"got {inverted_residual_setting}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        # Every conv is padded ("same"): a 1x1 input stays 1x1 (torchvision's min_size too).
        self.min_input_size = (1, 1)
        self.fixed_input_size = None

        channels = _make_divisible(32 * width_mult, round_nearest)
        # Table 2's last conv keeps 1280 channels for width multipliers below 1 (sec. 6.1).
        self.last_channel = _make_divisible(1280 * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [
            ConvBNActivation(in_channels, channels, 3, 2, norm_layer=norm_layer)
        ]
        self.feature_info = []
        reduction = 2
        for t, c, n, s in setting:
            out_channels = _make_divisible(c * width_mult, round_nearest)
            if s == 2:
                self.feature_info.append(
                    FeatureInfo(f"features.{len(features) - 1}", channels, reduction)
                )
                reduction *= 2
            for index in range(n):
                stride = s if index == 0 else 1
                features.append(
                    block(channels, out_channels, stride, expand_ratio=t, norm_layer=norm_layer)
                )
                channels = out_channels
        features.append(ConvBNActivation(channels, self.last_channel, 1, norm_layer=norm_layer))
        self.feature_info.append(
            FeatureInfo(f"features.{len(features) - 1}", self.last_channel, reduction)
        )
        self.features = nn.Sequential(*features)
        self.num_features = self.last_channel
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Linear(self.last_channel, num_classes)
        )
        _init_mobilenet(self)

    def forward_features(self, x: Tensor) -> Tensor:
        features: Tensor = self.features(x)
        return features

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return sequential_head(self.classifier, x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[1]
        assert isinstance(old, nn.Linear)
        self.classifier[1] = _new_linear(old, num_classes)
        self.num_classes = num_classes


def _init_linear(module: nn.Linear) -> None:
    nn.init.normal_(module.weight, 0, 0.01)
    nn.init.zeros_(module.bias)


def _new_linear(old: nn.Linear, num_classes: int) -> nn.Linear:
    fc = nn.Linear(old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype)
    _init_linear(fc)
    return fc


def _init_mobilenet(model: nn.Module) -> None:
    """torchvision's MobileNet init: He normal (fan_out) convs, norms at identity, N(0, 0.01)
    linear weights, zero biases. (v1 uses it too: the paper gives no init.)"""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out")
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            _init_linear(module)


# Common to both: every conv is padded, so a 1x1 input stays 1x1 (torchvision's min_size too).
_META: dict[str, Any] = {"family": "mobilenet", "input_size": (3, 224, 224), "min_size": (1, 1)}


@register_model(
    **_META,
    paper=HOWARD2017,
    params=4_231_976,
    macs=568_740_352,
    source="computed (paper Table 6/7: 4.2M params, 569M mult-adds for 1.0 MobileNet-224)",
)
def mobilenet_v1(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    width_mult: float = 1.0,
    resolution: int = 224,
    dropout: float = 0.0,
) -> MobileNetV1:
    """MobileNet v1: depthwise separable convs, width multiplier and resolution as arguments.

    Howard et al. 2017, Table 1 (1.0 MobileNet-224: 4.2M params, 569M mult-adds, 70.6% top-1).
    ``width_mult`` (alpha) in (0, 1] gives Table 6's thinner nets; ``resolution`` (224 * rho)
    Table 7's smaller inputs.
    """
    return MobileNetV1(num_classes, width_mult, resolution, dropout, in_channels=in_channels)


@register_model(
    **_META,
    paper=SANDLER2018,
    params=3_504_872,
    macs=300_774_272,
    source="torchvision 0.28 weights metadata (params, 0.301 GFLOPS); MACs computed, equal "
    "(paper Table 4: 3.4M params, 300M MAdds)",
    torchvision=True,
)
def mobilenet_v2(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> MobileNetV2:
    """MobileNet v2: inverted residuals with linear bottlenecks, as in torchvision.

    Sandler et al. 2018, Table 2. Keyword arguments (width_mult, inverted_residual_setting,
    round_nearest, block, norm_layer, dropout) go to :class:`MobileNetV2`.
    """
    return MobileNetV2(num_classes=num_classes, in_channels=in_channels, **kwargs)
