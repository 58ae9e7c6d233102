"""Pre-activation ResNets (He, Zhang, Ren, Sun 2016, "Identity Mappings in Deep Residual
Networks", arXiv:1603.05027): BN and ReLU move in front of every weight layer (Fig. 1b, Fig. 4e),
so the shortcut path carries the identity from unit to unit with nothing after the addition.

- CIFAR (sec. 4 and 5, Table 3): ``preact_resnet110`` with basic units (6n + 2, n = 18) and the
  bottleneck ``preact_resnet164`` / ``preact_resnet1001`` (9n + 2, n = 18 / 111), 16 filters in
  the first conv and stage outputs 16/32/64 (basic) or 64/128/256 (bottleneck, x4 expansion) on
  32/16/8 maps, as in the authors' released Torch code (KaimingHe/resnet-1k-layers).
- ImageNet (sec. 5, Table 5): ``preact_resnet18`` ... ``preact_resnet200``, the ResNet stem and
  stages of He et al. 2015 Table 1 (ResNet-200: 3, 24, 36, 3 bottlenecks, as in fb.resnet.torch,
  the code the paper's ImageNet models were trained with) with pre-activation units.

Where the shape changes (a stage's first unit), the unit's BN-ReLU is shared: both the residual
branch and the 1x1 projection shortcut read the activated input (the paper's appendix: "we adopt
the first activation right after conv1 and before splitting into two paths"; the authors' code does
the same at every dimension increase). The shortcut projection is a bare 1x1 conv (no BN: the next
unit normalises). After the last unit comes an extra BN-ReLU before pooling (appendix).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.models import papers
from cnnzoo.models.base import FeatureInfo
from cnnzoo.models.resnet import PooledLinearHead, conv1x1, conv3x3
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "PREACT_CIFAR",
    "PREACT_IMAGENET",
    "PreActBasicBlock",
    "PreActBottleneck",
    "PreActResNet",
]


class PreActBasicBlock(nn.Module):
    """BN-ReLU-conv3x3, BN-ReLU-conv3x3, plus the shortcut (Fig. 4e with two 3x3 layers).

    ``preact_shortcut``: the shortcut reads the activated input (a stage's first unit) instead of
    the raw one; ``preactivate=False`` skips the first BN-ReLU (the ImageNet stem ends with one).
    """

    expansion = 1

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        *,
        preact_shortcut: bool = False,
        preactivate: bool = True,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        del stride_in_1x1  # no 1x1 here; accepted for a uniform block interface
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else None
        self.conv1 = conv3x3(in_channels, planes, stride)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes)
        self.shortcut = shortcut
        self.preact_shortcut = preact_shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x)) if self.bn1 is not None else x
        identity = out if self.preact_shortcut else x
        if self.shortcut is not None:
            identity = self.shortcut(identity)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        result: Tensor = out + identity  # nothing after the addition: the identity stays clean
        return result


class PreActBottleneck(nn.Module):
    """BN-ReLU-conv1x1, BN-ReLU-conv3x3, BN-ReLU-conv1x1 (x4), plus the shortcut (Fig. 4e).

    The stride sits on the 3x3 by default (fb.resnet.torch, the ImageNet models) or, with
    ``stride_in_1x1=True``, on the first 1x1 as in the authors' CIFAR code (resnet-1k-layers).
    """

    expansion = 4

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        shortcut: nn.Module | None = None,
        *,
        preact_shortcut: bool = False,
        preactivate: bool = True,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.bn1 = nn.BatchNorm2d(in_channels) if preactivate else None
        self.conv1 = conv1x1(in_channels, planes, stride_1x1)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride_3x3)
        self.bn3 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.shortcut = shortcut
        self.preact_shortcut = preact_shortcut

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(x)) if self.bn1 is not None else x
        identity = out if self.preact_shortcut else x
        if self.shortcut is not None:
            identity = self.shortcut(identity)
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        out = self.conv3(F.relu(self.bn3(out)))
        result: Tensor = out + identity
        return result


Block = type[PreActBasicBlock] | type[PreActBottleneck]
Stem = Literal["cifar", "imagenet"]

# CIFAR, sec. 4-5: (block, units per stage). Depth 6n + 2 (basic) or 9n + 2 (bottleneck).
PREACT_CIFAR: dict[str, tuple[Block, int]] = {
    "preact_resnet110": (PreActBasicBlock, 18),
    "preact_resnet164": (PreActBottleneck, 18),
    "preact_resnet1001": (PreActBottleneck, 111),
}
CIFAR_PLANES = (16, 32, 64)  # x4 at a bottleneck's output: 64/128/256, the authors' nStages
# ImageNet: He et al. 2015 Table 1 (18-152) and fb.resnet.torch's ResNet-200 (sec. 5, Table 5).
PREACT_IMAGENET: dict[str, tuple[Block, tuple[int, int, int, int]]] = {
    "preact_resnet18": (PreActBasicBlock, (2, 2, 2, 2)),
    "preact_resnet34": (PreActBasicBlock, (3, 4, 6, 3)),
    "preact_resnet50": (PreActBottleneck, (3, 4, 6, 3)),
    "preact_resnet101": (PreActBottleneck, (3, 4, 23, 3)),
    "preact_resnet152": (PreActBottleneck, (3, 8, 36, 3)),
    "preact_resnet200": (PreActBottleneck, (3, 24, 36, 3)),
}
IMAGENET_PLANES = (64, 128, 256, 512)
MIN_INPUT_SIZE = (1, 1)  # 3x3 pad 1, 7x7/2 pad 3, 3x3/2 pad 1 and 1x1 convs all keep a 1x1 map


class PreActResNet(PooledLinearHead):
    """A pre-activation ResNet: stem, stages of pre-activation units, BN-ReLU, global pool, fc.

    ``stem="cifar"``: one 3x3 conv (16 filters), no BN or ReLU after it (the first unit
    pre-activates). ``stem="imagenet"``: 7x7/2 conv 64, BN, ReLU, 3x3/2 max pool; the first unit
    then skips its own BN-ReLU (fb.resnet.torch's "no_preact"). Module names follow the ResNets:
    conv1, stem, layer1..layerN, bn_final, relu_final, avgpool, fc.
    """

    def __init__(
        self,
        block: Block,
        layers: Sequence[int],
        planes: Sequence[int],
        *,
        stem: Stem,
        num_classes: int,
        in_channels: int = 3,
        stride_in_1x1: bool = False,
    ) -> None:
        super().__init__()
        if stem not in ("cifar", "imagenet"):
            raise ValueError(f"stem must be 'cifar' or 'imagenet', got {stem!r}")
        if len(layers) != len(planes) or min(layers) < 1:
            raise ValueError(f"need one positive unit count per stage {planes}, got {layers}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = MIN_INPUT_SIZE
        self.fixed_input_size = None

        self.stem: nn.Sequential
        if stem == "cifar":
            channels, reduction = 16, 1
            self.conv1 = conv3x3(in_channels, channels)
            self.stem = nn.Sequential()
        else:
            channels, reduction = 64, 4
            self.conv1 = nn.Conv2d(in_channels, channels, 7, stride=2, padding=3, bias=False)
            self.stem = nn.Sequential(
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        self.stages: list[str] = []
        for index, (width, count) in enumerate(zip(planes, layers, strict=True)):
            stride = 1 if index == 0 else 2
            reduction *= stride
            out_channels = width * block.expansion
            units = []
            for unit in range(count):
                first = unit == 0
                shortcut = None
                if first and (stride != 1 or channels != out_channels):
                    shortcut = conv1x1(channels, out_channels, stride)
                units.append(
                    block(
                        channels if first else out_channels,
                        width,
                        stride if first else 1,
                        shortcut,
                        preact_shortcut=first,
                        # The ImageNet stem ends in BN-ReLU: the first unit does not repeat it.
                        preactivate=not (first and index == 0 and stem == "imagenet"),
                        stride_in_1x1=stride_in_1x1,
                    )
                )
            name = f"layer{index + 1}"
            self.add_module(name, nn.Sequential(*units))
            self.stages.append(name)
            channels = out_channels
        # The appendix: an extra activation after the last unit's addition, before pooling.
        self.bn_final = nn.BatchNorm2d(channels)
        self.relu_final = nn.ReLU(inplace=True)
        self.feature_info = [
            FeatureInfo(name, width * block.expansion, 2**i * (1 if stem == "cifar" else 4))
            for i, (name, width) in enumerate(zip(self.stages, planes, strict=True))
        ]
        # The last stage is tapped after the final BN-ReLU: forward_features' output.
        self.feature_info[-1] = FeatureInfo("relu_final", channels, self.feature_info[-1].reduction)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels
        self._init_weights()

    def _init_weights(self) -> None:
        # The authors' code: convs N(0, sqrt(2 / (k * k * out_channels))) (He init, fan_out), no
        # conv biases, BN at identity, the fc's bias zero (its weight keeps the default init).
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        nn.init.zeros_(self.fc.bias)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.stem(self.conv1(x))
        for name in self.stages:
            x = getattr(self, name)(x)
        features: Tensor = self.relu_final(self.bn_final(x))
        return features


def _cifar(name: str, num_classes: int, in_channels: int, stride_in_1x1: bool) -> PreActResNet:
    block, units = PREACT_CIFAR[name]
    return PreActResNet(
        block,
        (units,) * 3,
        CIFAR_PLANES,
        stem="cifar",
        num_classes=num_classes,
        in_channels=in_channels,
        stride_in_1x1=stride_in_1x1,
    )


def _imagenet(name: str, num_classes: int, in_channels: int, stride_in_1x1: bool) -> PreActResNet:
    block, layers = PREACT_IMAGENET[name]
    return PreActResNet(
        block,
        layers,
        IMAGENET_PLANES,
        stem="imagenet",
        num_classes=num_classes,
        in_channels=in_channels,
        stride_in_1x1=stride_in_1x1,
    )


_COMPUTED = "computed (tests/data/published_numbers.md){paper}; MACs computed at {size}"
# One row per variant. The paper gives CIFAR sizes only (sec. 4, Table 4): ResNet-164 "1.7M" and
# ResNet-1001 "10.2M". Ours: 1,703,258 and 10,327,706. The 1001's 10.2M is its conv and fc
# weights alone (10,178,490); BN's scales and shifts add 149,216 (1.5%), which the paper leaves
# out (for the 164 both round to 1.7M). ResNet-110: 1.7M as in He et al. 2015 Table 6.
# The ImageNet MACs equal the post-activation ResNets' (BN does no MACs; the projections are the
# same 1x1 convs); the params differ by the norms (no BN on the shortcuts, one after the last unit).
NUMBERS: dict[str, Numbers] = {
    "preact_resnet110": numbers(
        1_730_522, 253_149_824, _COMPUTED.format(paper="; paper: 1.7M", size="32x32")
    ),
    "preact_resnet164": numbers(
        1_703_258, 244_500_992, _COMPUTED.format(paper="; paper: 1.7M", size="32x32")
    ),
    "preact_resnet1001": numbers(
        10_327_706,
        1_487_849_984,
        _COMPUTED.format(paper="; paper: 10.2M, conv + fc weights only", size="32x32"),
    ),
    "preact_resnet18": numbers(11_687_720, 1_814_073_344, _COMPUTED.format(paper="", size="224")),
    "preact_resnet34": numbers(21_795_880, 3_663_761_408, _COMPUTED.format(paper="", size="224")),
    "preact_resnet50": numbers(25_549_352, 4_089_184_256, _COMPUTED.format(paper="", size="224")),
    "preact_resnet101": numbers(44_541_480, 7_801_405_440, _COMPUTED.format(paper="", size="224")),
    "preact_resnet152": numbers(60_185_128, 11_513_626_624, _COMPUTED.format(paper="", size="224")),
    "preact_resnet200": numbers(64_666_152, 15_007_481_856, _COMPUTED.format(paper="", size="224")),
}

_cifar_register = functools.partial(
    register_model,
    family="preact_resnet",
    paper=papers.HE2016,
    input_size=(3, 32, 32),
    min_size=MIN_INPUT_SIZE,
)
_imagenet_register = functools.partial(
    register_model,
    family="preact_resnet",
    paper=papers.HE2016,
    input_size=(3, 224, 224),
    min_size=MIN_INPUT_SIZE,
)


@_cifar_register(**NUMBERS["preact_resnet110"])
def preact_resnet110(
    *, num_classes: int = 10, in_channels: int = 3, stride_in_1x1: bool = True
) -> PreActResNet:
    """Pre-activation ResNet-110 for CIFAR-10: 3 stages of 18 basic units, 16/32/64 filters.

    He et al. 2016, "Identity Mappings in Deep Residual Networks", sec. 4 and Fig. 4e (the
    full pre-activation unit), on He et al. 2015's CIFAR layout.
    """
    return _cifar("preact_resnet110", num_classes, in_channels, stride_in_1x1)


@_cifar_register(**NUMBERS["preact_resnet164"])
def preact_resnet164(
    *, num_classes: int = 10, in_channels: int = 3, stride_in_1x1: bool = True
) -> PreActResNet:
    """Pre-activation ResNet-164 for CIFAR-10: 3 stages of 18 bottleneck units (64/128/256 out).

    He et al. 2016, sec. 4-5, Table 4 (1.7M params, 5.46% CIFAR-10 error). The stride sits on
    each stage's first 1x1, as in the authors' code; ``stride_in_1x1=False`` moves it to the 3x3.
    """
    return _cifar("preact_resnet164", num_classes, in_channels, stride_in_1x1)


@_cifar_register(**NUMBERS["preact_resnet1001"])
def preact_resnet1001(
    *, num_classes: int = 10, in_channels: int = 3, stride_in_1x1: bool = True
) -> PreActResNet:
    """Pre-activation ResNet-1001 for CIFAR-10: 3 stages of 111 bottleneck units.

    He et al. 2016, sec. 4-5, Table 4 (10.2M params, 4.92% CIFAR-10 error). The stride sits on
    each stage's first 1x1, as in the authors' code; ``stride_in_1x1=False`` moves it to the 3x3.
    """
    return _cifar("preact_resnet1001", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet18"])
def preact_resnet18(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-18 for ImageNet: basic units (2, 2, 2, 2).

    He et al. 2016 (pre-activation units, Fig. 4e) on He et al. 2015's Table 1 layout.
    """
    return _imagenet("preact_resnet18", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet34"])
def preact_resnet34(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-34 for ImageNet: basic units (3, 4, 6, 3).

    He et al. 2016 (pre-activation units, Fig. 4e) on He et al. 2015's Table 1 layout.
    """
    return _imagenet("preact_resnet34", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet50"])
def preact_resnet50(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-50 for ImageNet: bottleneck units (3, 4, 6, 3).

    He et al. 2016 (pre-activation units, Fig. 4e) on He et al. 2015's Table 1 layout; the
    stride on the 3x3 as in fb.resnet.torch (``stride_in_1x1=True``: on the first 1x1).
    """
    return _imagenet("preact_resnet50", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet101"])
def preact_resnet101(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-101 for ImageNet: bottleneck units (3, 4, 23, 3).

    He et al. 2016 (pre-activation units, Fig. 4e) on He et al. 2015's Table 1 layout.
    """
    return _imagenet("preact_resnet101", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet152"])
def preact_resnet152(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-152 for ImageNet: bottleneck units (3, 8, 36, 3).

    He et al. 2016, sec. 5 and Table 5 (ImageNet results of the pre-activation ResNet-152).
    """
    return _imagenet("preact_resnet152", num_classes, in_channels, stride_in_1x1)


@_imagenet_register(**NUMBERS["preact_resnet200"])
def preact_resnet200(
    *, num_classes: int = 1000, in_channels: int = 3, stride_in_1x1: bool = False
) -> PreActResNet:
    """Pre-activation ResNet-200 for ImageNet: bottleneck units (3, 24, 36, 3).

    He et al. 2016, sec. 5 and Table 5 (ImageNet results of the pre-activation ResNet-200); the
    stage counts are fb.resnet.torch's, the code of the paper's ImageNet experiments.
    """
    return _imagenet("preact_resnet200", num_classes, in_channels, stride_in_1x1)
