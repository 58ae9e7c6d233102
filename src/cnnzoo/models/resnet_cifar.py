"""The CIFAR-10 ResNets of He et al. 2015, sec. 4.2 (ResNet-20/32/44/56/110/1202).

A 3x3 conv with 16 filters, then three stages of n basic blocks with 16/32/64 filters on 32/16/8
maps (depth 6n + 2), global average pooling and a 10-way fc. The blocks are the ImageNet ResNet's
:class:`~cnnzoo.models.resnet.BasicBlock`; only the shortcut that changes width differs:

- option A (the paper's CIFAR choice, sec. 4.2 "all cases"): identity with stride-2 subsampling
  and zero-padded new channels, no parameters;
- option B (sec. 3.3): a strided 1x1 projection + BN, as in the ImageNet models.

Module names follow the ImageNet ResNet: conv1, bn1, layer1..layer3, avgpool, fc.
"""

from __future__ import annotations

import functools
from typing import Literal

import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.models import papers
from cnnzoo.models.base import FeatureInfo
from cnnzoo.models.resnet import (
    BasicBlock,
    PooledLinearHead,
    conv1x1,
    conv3x3,
    init_resnet_weights,
)
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = ["CIFAR_DEPTHS", "CifarResNet", "ZeroPadShortcut"]

Shortcut = Literal["A", "B"]

# Sec. 4.2: depth 6n + 2, n blocks (2n layers) per stage. Table 6 rows.
CIFAR_DEPTHS = {
    "resnet20": 3,
    "resnet32": 5,
    "resnet44": 7,
    "resnet56": 9,
    "resnet110": 18,
    "resnet1202": 200,
}
STAGE_WIDTHS = (16, 32, 64)  # sec. 4.2: filters per stage, on 32x32 / 16x16 / 8x8 maps
# 3x3 pad-1 convs keep a 1x1 map; stride 2 turns 1 into 1, and so does [::2].
MIN_INPUT_SIZE = (1, 1)


class ZeroPadShortcut(nn.Module):
    """Option A shortcut: subsample by taking every ``stride``-th pixel, append zero channels.

    The zeros go after the input's channels (as fb.resnet.torch's shortcutType 'A' does with a
    zero-scaled copy); the paper only says "extra zero entries padded". Taking ``[::stride]``
    gives ceil(H / stride) rows, the same as a 3x3 stride-2 pad-1 conv, for every H.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        if out_channels < in_channels:
            raise ValueError(f"cannot zero-pad {in_channels} channels down to {out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: Tensor) -> Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        # F.pad's pairs run from the last dim backwards: (W, W, H, H, C before, C after).
        return F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, stride={self.stride}"


class CifarResNet(PooledLinearHead):
    """He et al. 2015 sec. 4.2: conv 3x3/16, 3 stages of ``n`` basic blocks, global pool, fc."""

    def __init__(
        self,
        n: int,
        num_classes: int = 10,
        in_channels: int = 3,
        shortcut: Shortcut = "A",
        zero_init_residual: bool = False,
    ) -> None:
        super().__init__()
        if shortcut not in ("A", "B"):
            raise ValueError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
        if n < 1:
            raise ValueError(f"n (blocks per stage) must be at least 1, got {n}")
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = MIN_INPUT_SIZE
        self.fixed_input_size = None
        self.shortcut = shortcut

        self.conv1 = conv3x3(in_channels, STAGE_WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(STAGE_WIDTHS[0])
        self.relu = nn.ReLU(inplace=True)

        channels = STAGE_WIDTHS[0]
        stages: list[nn.Sequential] = []
        self.feature_info: list[FeatureInfo] = []
        for index, width in enumerate(STAGE_WIDTHS):
            # Sec. 4.2: "subsampling is performed by convolutions with a stride of 2".
            stride = 1 if index == 0 else 2
            blocks = []
            for block_index in range(n):
                first = block_index == 0
                blocks.append(
                    BasicBlock(
                        channels if first else width,
                        width,
                        stride if first else 1,
                        _shortcut(shortcut, channels, width, stride) if first else None,
                    )
                )
            stages.append(nn.Sequential(*blocks))
            channels = width
            self.feature_info.append(FeatureInfo(f"layer{index + 1}", width, 2**index))
        self.layer1, self.layer2, self.layer3 = stages

        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(channels, num_classes)
        self.num_features = channels

        # Sec. 3.4: "We initialize the weights as in [13]" (He et al. 2015, PReLU paper): normal
        # with std sqrt(2 / fan), fan_out as in fb.resnet.torch and torchvision.
        init_resnet_weights(self, zero_init_residual)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer1(x)
        x = self.layer2(x)
        features: Tensor = self.layer3(x)
        return features


def _shortcut(kind: Shortcut, in_channels: int, out_channels: int, stride: int) -> nn.Module | None:
    """The shortcut of a stage's first block: identity (None) unless the shape changes."""
    if stride == 1 and in_channels == out_channels:
        return None
    if kind == "A":
        return ZeroPadShortcut(in_channels, out_channels, stride)
    # Sec. 3.3 option B: "projection shortcuts are used for increasing dimensions".
    return nn.Sequential(conv1x1(in_channels, out_channels, stride), nn.BatchNorm2d(out_channels))


def _cifar_resnet(
    name: str, num_classes: int, in_channels: int, shortcut: Shortcut, zero_init_residual: bool
) -> CifarResNet:
    return CifarResNet(
        CIFAR_DEPTHS[name],
        num_classes=num_classes,
        in_channels=in_channels,
        shortcut=shortcut,
        zero_init_residual=zero_init_residual,
    )


# Option A (the default) params and MACs, computed exactly: conv + linear weights at 32x32, the
# zero-padded shortcut has neither. Option B adds 2,752 params (512 + 64 + 2,048 + 128).
_SOURCE = "computed, option A (paper Table 6: {paper} params); MACs computed ({mmacs} M)"


_register = functools.partial(
    register_model,
    family="resnet_cifar",
    paper=papers.HE2015,
    input_size=(3, 32, 32),
    min_size=MIN_INPUT_SIZE,
)
NUMBERS: dict[str, Numbers] = {
    "resnet20": numbers(269_722, 40_551_040, _SOURCE.format(paper="0.27M", mmacs="40.55")),
    "resnet32": numbers(464_154, 68_862_592, _SOURCE.format(paper="0.46M", mmacs="68.86")),
    "resnet44": numbers(658_586, 97_174_144, _SOURCE.format(paper="0.66M", mmacs="97.17")),
    "resnet56": numbers(853_018, 125_485_696, _SOURCE.format(paper="0.85M", mmacs="125.49")),
    "resnet110": numbers(1_727_962, 252_887_680, _SOURCE.format(paper="1.7M", mmacs="252.89")),
    "resnet1202": numbers(
        19_421_274, 2_829_238_912, _SOURCE.format(paper="19.4M", mmacs="2829.24")
    ),
}


@_register(**NUMBERS["resnet20"])
def resnet20(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-20 for CIFAR-10: 3 stages of 3 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet20", num_classes, in_channels, shortcut, zero_init_residual)


@_register(**NUMBERS["resnet32"])
def resnet32(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-32 for CIFAR-10: 3 stages of 5 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet32", num_classes, in_channels, shortcut, zero_init_residual)


@_register(**NUMBERS["resnet44"])
def resnet44(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-44 for CIFAR-10: 3 stages of 7 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet44", num_classes, in_channels, shortcut, zero_init_residual)


@_register(**NUMBERS["resnet56"])
def resnet56(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-56 for CIFAR-10: 3 stages of 9 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet56", num_classes, in_channels, shortcut, zero_init_residual)


@_register(**NUMBERS["resnet110"])
def resnet110(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-110 for CIFAR-10: 3 stages of 18 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet110", num_classes, in_channels, shortcut, zero_init_residual)


@_register(**NUMBERS["resnet1202"])
def resnet1202(
    *,
    num_classes: int = 10,
    in_channels: int = 3,
    shortcut: Shortcut = "A",
    zero_init_residual: bool = False,
) -> CifarResNet:
    """ResNet-1202 for CIFAR-10: 3 stages of 200 basic blocks, 16/32/64 filters.

    He et al. 2015, sec. 4.2 and Table 6. ``shortcut="B"`` uses 1x1 projections where the
    shape changes instead of zero padding.
    """
    return _cifar_resnet("resnet1202", num_classes, in_channels, shortcut, zero_init_residual)
