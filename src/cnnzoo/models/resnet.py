"""ResNet (He et al. 2015), ResNeXt (Xie et al. 2016) and Wide ResNet (Zagoruyko & Komodakis 2016)
for ImageNet, torchvision-compatible.

Same state_dict keys, order and shapes as torchvision, same constructor arguments and defaults,
same initialisation, same function. The default is torchvision's "v1.5": a bottleneck's stride sits
on its 3x3 conv. ``stride_in_1x1=True`` moves it to the first 1x1, as in the paper's original
(Caffe) models; this changes no parameter, only MACs (ResNet-50: 4.089 -> 3.858 G, the latter
matching the paper's Table 1 "3.8 x 10^9").

ResNeXt and Wide ResNet are the same network with a wider (and, for ResNeXt, grouped) 3x3 in every
bottleneck: width = planes * width_per_group / 64 * groups.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo.models import papers
from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "RESNETS",
    "BasicBlock",
    "Bottleneck",
    "PooledLinearHead",
    "ResNet",
    "init_resnet_weights",
    "zero_init_residual_branches",
]

NormLayer = Callable[[int], nn.Module]


def conv3x3(
    in_channels: int, out_channels: int, stride: int = 1, groups: int = 1, dilation: int = 1
) -> nn.Conv2d:
    """3x3 conv without bias (a BN follows); padding = dilation keeps the size at stride 1."""
    return nn.Conv2d(
        in_channels,
        out_channels,
        kernel_size=3,
        stride=stride,
        padding=dilation,
        groups=groups,
        dilation=dilation,
        bias=False,
    )


def conv1x1(in_channels: int, out_channels: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv without bias (a BN follows)."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs with an identity (or projection) shortcut: paper Fig. 2 / Fig. 5 left.

    ``stride_in_1x1`` is accepted for a uniform block interface and has no effect: the basic block
    has no 1x1 conv, so v1 and v1.5 are the same network for ResNet-18/34.
    """

    expansion: int = 1

    def __init__(
        self,
        inplanes: int,  # torchvision's argument names, for drop-in use of the blocks
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        # torchvision's limits: grouped/wide widths only make sense in the bottleneck.
        if groups != 1 or base_width != 64:
            raise ValueError("BasicBlock only supports groups=1 and base_width=64")
        if dilation > 1:
            raise NotImplementedError("Dilation > 1 not supported in BasicBlock")
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        result: Tensor = self.relu(out + shortcut)
        return result


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3, 1x1 expand (x4) with a shortcut: paper Fig. 5 right; ResNeXt Fig. 3c.

    The stride sits on the 3x3 (torchvision's "v1.5", from Goyal et al. 2017's Caffe2 models) or,
    with ``stride_in_1x1=True``, on the first 1x1 as in the paper's original models (v1), where
    the 1x1 then drops three quarters of its input unseen.
    """

    expansion: int = 4

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        groups: int = 1,
        base_width: int = 64,
        dilation: int = 1,
        norm_layer: NormLayer | None = None,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        # ResNeXt: cardinality `groups` times `base_width` channels per group at the 64-plane
        # stage (32x4d: 128 at layer1); Wide ResNet: groups=1, base_width=128 doubles the width.
        width = int(planes * (base_width / 64.0)) * groups
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(inplanes, width, stride_1x1)
        self.bn1 = norm_layer(width)
        self.conv2 = conv3x3(width, width, stride_3x3, groups, dilation)
        self.bn2 = norm_layer(width)
        self.conv3 = conv1x1(width, planes * self.expansion)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        shortcut = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        result: Tensor = self.relu(out + shortcut)
        return result


Block = type[BasicBlock] | type[Bottleneck]

# Paper Table 1: block type and blocks per stage (conv2_x .. conv5_x = layer1 .. layer4).
# ResNeXt-50/101 and WRN-50/101-2 reuse the 50/101 rows with wider bottlenecks.
RESNETS: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2)),
    "resnet34": (BasicBlock, (3, 4, 6, 3)),
    "resnet50": (Bottleneck, (3, 4, 6, 3)),
    "resnet101": (Bottleneck, (3, 4, 23, 3)),
    "resnet152": (Bottleneck, (3, 8, 36, 3)),
}
STAGE_PLANES = (64, 128, 256, 512)  # Table 1: output channels of each stage (x4 in bottlenecks)


# Every layer keeps a 1x1 map at 1x1 (7x7/2 pad 3, 3x3/2 pad 1, 3x3 pad = dilation):
# torchvision's metadata says min_size (1, 1).
MIN_INPUT_SIZE = (1, 1)


class PooledLinearHead(ClassifierModel):
    """The ResNet head, shared by the ImageNet and CIFAR ResNets: global average pool, then one
    linear layer ``fc`` on ``num_features`` channels."""

    avgpool: nn.Module
    fc: nn.Linear
    num_features: int

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        if pre_logits:
            return x
        logits: Tensor = self.fc(x)
        return logits

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        # nn.Linear's default init, as at construction (torchvision and He et al. leave the fc
        # alone), on the old fc's device and dtype (issue #12: a .double() model got a float32 fc).
        self.fc = new_linear_like(self.fc, num_classes)
        self.num_classes = num_classes


def init_resnet_weights(model: nn.Module, zero_init_residual: bool) -> None:
    """He normal (fan_out) on convs, norms to identity, the fc left at nn.Linear's default
    (torchvision's init; He et al. 2015 sec. 3.4 for the CIFAR nets); optionally zero the last
    norm of every residual branch."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d | nn.GroupNorm):
            nn.init.constant_(module.weight, 1)
            nn.init.constant_(module.bias, 0)
    if zero_init_residual:
        zero_init_residual_branches(model)


class ResNet(PooledLinearHead):
    """torchvision's ResNet: 7x7/2 conv stem, 3x3/2 max-pool, four stages, global pool, fc.

    ``replace_stride_with_dilation`` (three bools, for layer2..layer4) keeps a stage at its input
    resolution and dilates its 3x3 convs instead (DeepLab-style backbones); the first block of a
    dilated stage still uses the previous dilation, as torchvision does.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 1000,
        zero_init_residual: bool = False,
        groups: int = 1,
        width_per_group: int = 64,
        replace_stride_with_dilation: Sequence[bool] | None = None,
        norm_layer: NormLayer | None = None,
        *,
        in_channels: int = 3,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        norm_layer = norm_layer or nn.BatchNorm2d
        if replace_stride_with_dilation is None:
            replace_stride_with_dilation = (False, False, False)
        if len(replace_stride_with_dilation) != 3:
            raise ValueError(
                "replace_stride_with_dilation should be None or a 3-element tuple, "
                f"got {replace_stride_with_dilation}"
            )
        if len(layers) != 4:
            raise ValueError(f"layers needs 4 block counts (layer1..layer4), got {layers}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = MIN_INPUT_SIZE
        self.fixed_input_size = None
        self.groups = groups
        self.base_width = width_per_group

        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        channels, dilation, reduction = 64, 1, 4
        stages: list[nn.Sequential] = []
        self.feature_info: list[FeatureInfo] = []
        dilate_flags = (False, *replace_stride_with_dilation)
        for index, (planes, num_blocks, dilate) in enumerate(
            zip(STAGE_PLANES, layers, dilate_flags, strict=True)
        ):
            stride = 1 if index == 0 else 2
            previous_dilation = dilation
            if dilate:
                dilation, stride = dilation * stride, 1
            reduction *= stride
            stages.append(
                _make_stage(
                    block,
                    channels,
                    planes,
                    num_blocks,
                    stride=stride,
                    first_dilation=previous_dilation,
                    dilation=dilation,
                    groups=groups,
                    base_width=width_per_group,
                    norm_layer=norm_layer,
                    stride_in_1x1=stride_in_1x1,
                )
            )
            channels = planes * block.expansion
            self.feature_info.append(FeatureInfo(f"layer{index + 1}", channels, reduction))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        init_resnet_weights(self, zero_init_residual)  # torchvision's init

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        features: Tensor = self.layer4(x)
        return features


def zero_init_residual_branches(model: nn.Module) -> None:
    """Zero the gamma of the norm that closes every block's residual branch (bn2 / bn3).

    Goyal et al. 2017 sec. 5.1: every block then starts as relu(shortcut), which helps large-batch
    training; torchvision's ``zero_init_residual``.
    """
    for module in model.modules():
        norm = module.bn3 if isinstance(module, Bottleneck) else None
        norm = module.bn2 if isinstance(module, BasicBlock) else norm
        weight = getattr(norm, "weight", None)
        if isinstance(weight, Tensor):  # a norm without an affine weight has None
            nn.init.constant_(weight, 0)


def _make_stage(
    block: Block,
    in_channels: int,
    planes: int,
    num_blocks: int,
    *,
    stride: int,
    first_dilation: int,
    dilation: int,
    groups: int,
    base_width: int,
    norm_layer: NormLayer,
    stride_in_1x1: bool,
) -> nn.Sequential:
    out_channels = planes * block.expansion
    downsample: nn.Module | None = None
    if stride != 1 or in_channels != out_channels:
        # Projection shortcut (paper option B), strided like the block.
        downsample = nn.Sequential(
            conv1x1(in_channels, out_channels, stride), norm_layer(out_channels)
        )
    blocks = []
    for index in range(num_blocks):
        first = index == 0  # only the first block changes resolution and width
        blocks.append(
            block(
                in_channels if first else out_channels,
                planes,
                stride if first else 1,
                downsample if first else None,
                groups=groups,
                base_width=base_width,
                # torchvision's quirk: the first block of a dilated stage keeps the previous
                # stage's dilation; only the later ones use the new one.
                dilation=first_dilation if first else dilation,
                norm_layer=norm_layer,
                stride_in_1x1=stride_in_1x1,
            )
        )
    return nn.Sequential(*blocks)


def _resnet(
    name: str, num_classes: int, in_channels: int, fixed: dict[str, Any], kwargs: dict[str, Any]
) -> ResNet:
    # As torchvision's builders: a variant's defining arguments may be repeated, not changed.
    for key, value in fixed.items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"{key}={value} defines this variant, got {key}={kwargs[key]}")
        kwargs[key] = value
    block, layers = RESNETS[name]
    return ResNet(block, layers, num_classes=num_classes, in_channels=in_channels, **kwargs)


# params: torchvision 0.28 docs and num_params in tests/data/torchvision_state_dicts.json.
# macs: computed exactly (conv + linear weights at 224x224); they round to torchvision's GFLOPS.
_TV = "torchvision 0.28 docs + state_dict JSON (params); MACs computed, torchvision docs: {gmacs} G"
# The two 101-layer wide models are in torchvision's docs but not in the JSON.
_TV_DOCS = (
    "torchvision 0.28 docs (params, computed equal); MACs computed, torchvision docs: {gmacs} G"
)


_register = functools.partial(
    register_model,
    family="resnet",
    input_size=(3, 224, 224),
    min_size=MIN_INPUT_SIZE,
    torchvision=True,
)
# One row per variant: params and MACs with their source.
NUMBERS: dict[str, Numbers] = {
    "resnet18": numbers(11_689_512, 1_814_073_344, _TV.format(gmacs="1.814")),
    "resnet34": numbers(21_797_672, 3_663_761_408, _TV.format(gmacs="3.664")),
    "resnet50": numbers(25_557_032, 4_089_184_256, _TV.format(gmacs="4.089")),
    "resnet101": numbers(44_549_160, 7_801_405_440, _TV.format(gmacs="7.801")),
    "resnet152": numbers(60_192_808, 11_513_626_624, _TV.format(gmacs="11.514")),
    "resnext50_32x4d": numbers(25_028_904, 4_230_479_872, _TV.format(gmacs="4.23")),
    "resnext101_32x8d": numbers(88_791_336, 16_414_015_488, _TV_DOCS.format(gmacs="16.414")),
    "wide_resnet50_2": numbers(68_883_240, 11_398_021_120, _TV.format(gmacs="11.4")),
    "wide_resnet101_2": numbers(126_886_696, 22_753_050_624, _TV_DOCS.format(gmacs="22.753")),
}


@_register(**NUMBERS["resnet18"], paper=papers.HE2015)
def resnet18(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-18: basic blocks (2, 2, 2, 2).

    He et al. 2015, Table 1. Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet18", num_classes, in_channels, {}, kwargs)


@_register(**NUMBERS["resnet34"], paper=papers.HE2015)
def resnet34(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-34: basic blocks (3, 4, 6, 3).

    He et al. 2015, Table 1. Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet34", num_classes, in_channels, {}, kwargs)


@_register(**NUMBERS["resnet50"], paper=papers.HE2015)
def resnet50(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-50: bottlenecks (3, 4, 6, 3), stride on the 3x3 (v1.5).

    He et al. 2015, Table 1. ``stride_in_1x1=True`` gives the paper's v1 (3.858 GMACs).
    Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet50", num_classes, in_channels, {}, kwargs)


@_register(**NUMBERS["resnet101"], paper=papers.HE2015)
def resnet101(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-101: bottlenecks (3, 4, 23, 3), stride on the 3x3 (v1.5).

    He et al. 2015, Table 1. ``stride_in_1x1=True`` gives the paper's v1 (7.570 GMACs).
    Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet101", num_classes, in_channels, {}, kwargs)


@_register(**NUMBERS["resnet152"], paper=papers.HE2015)
def resnet152(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNet-152: bottlenecks (3, 8, 36, 3), stride on the 3x3 (v1.5).

    He et al. 2015, Table 1. ``stride_in_1x1=True`` gives the paper's v1 (11.282 GMACs).
    Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet152", num_classes, in_channels, {}, kwargs)


@_register(**NUMBERS["resnext50_32x4d"], paper=papers.XIE2016)
def resnext50_32x4d(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNeXt-50 (32x4d): ResNet-50 with 32 groups of 4 channels in the 3x3 at layer1.

    Xie et al. 2016, Table 1, with the grouped-convolution form of the block (Fig. 3c).
    Keyword arguments go to :class:`ResNet`.
    """
    return _resnet(
        "resnet50", num_classes, in_channels, {"groups": 32, "width_per_group": 4}, kwargs
    )


@_register(**NUMBERS["resnext101_32x8d"], paper=papers.XIE2016)
def resnext101_32x8d(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """ResNeXt-101 (32x8d): ResNet-101 with 32 groups of 8 channels in the 3x3 at layer1.

    Xie et al. 2016's template at 101 layers; 32x8d is torchvision's choice (the paper's
    tables report 32x4d and 64x4d). Keyword arguments go to :class:`ResNet`.
    """
    return _resnet(
        "resnet101", num_classes, in_channels, {"groups": 32, "width_per_group": 8}, kwargs
    )


@_register(**NUMBERS["wide_resnet50_2"], paper=papers.ZAGORUYKO2016)
def wide_resnet50_2(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """Wide ResNet-50-2: ResNet-50 with bottleneck 3x3s twice as wide.

    Zagoruyko & Komodakis 2016, ImageNet experiments (WRN-50-2-bottleneck); torchvision's
    variant. Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet50", num_classes, in_channels, {"width_per_group": 128}, kwargs)


@_register(**NUMBERS["wide_resnet101_2"], paper=papers.ZAGORUYKO2016)
def wide_resnet101_2(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> ResNet:
    """Wide ResNet-101-2: ResNet-101 with bottleneck 3x3s twice as wide.

    Zagoruyko & Komodakis 2016's widening applied to ResNet-101; torchvision's variant.
    Keyword arguments go to :class:`ResNet`.
    """
    return _resnet("resnet101", num_classes, in_channels, {"width_per_group": 128}, kwargs)
