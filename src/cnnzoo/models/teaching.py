"""Teaching nets: the small CNNs of course material, for 32x32 colour and 28x28 MNIST images.

Both are conv blocks (3x3 conv [+ BN] + ReLU [+ 2x2 max-pool]) followed by a ReLU MLP. Each
variant is a table of blocks that a reader can hold against the course slide; the parameter
counts are computed by hand below and checked by the tests.
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from typing import NamedTuple

import torch
from torch import Tensor, nn

from cnnzoo.models import papers
from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "MNIST_CNN",
    "SIMPLE_CNN",
    "ConvBlock",
    "ConvSpec",
    "TeachingCNN",
    "TeachingSpec",
    "mnist_cnn",
    "simple_cnn",
]


class ConvSpec(NamedTuple):
    """One conv block: 3x3 conv to ``channels`` with ``padding``, [BN], ReLU, [2x2 max-pool]."""

    channels: int
    padding: int
    batch_norm: bool
    pool: bool


class TeachingSpec(NamedTuple):
    input_size: tuple[int, int, int]  # (C, H, W) the MLP's in-features are fixed for
    blocks: tuple[ConvSpec, ...]
    hidden: tuple[int, ...]  # widths of the hidden fc layers (each followed by ReLU)


# simple_cnn, 32x32x3: three conv3x3 (pad 1, size kept) + ReLU + maxpool blocks, 32 -> 16 -> 8 -> 4,
# so 128 x 4 x 4 = 2048 features. Params: conv 896 + 18,496 + 73,856; fc 2048*512+512 = 1,049,088,
# 512*64+64 = 32,832, 64*10+10 = 650; total 1,175,818.
SIMPLE_CNN = TeachingSpec(
    input_size=(3, 32, 32),
    blocks=(
        ConvSpec(32, padding=1, batch_norm=False, pool=True),
        ConvSpec(64, padding=1, batch_norm=False, pool=True),
        ConvSpec(128, padding=1, batch_norm=False, pool=True),
    ),
    hidden=(512, 64),
)

# mnist_cnn, 28x28x1: 2048 = 128 x 4 x 4 needs every conv unpadded: 28 -3x3-> 26 -3x3-> 24 -pool->
# 12 -3x3-> 10 -3x3-> 8 -pool-> 4. (Padding 1 everywhere would leave 7x7: 6,272 features.)
# The convs have no bias: the BN after each subtracts the mean and would cancel it.
# Params: conv 144 + 4,608 + 18,432 + 73,728; BN 2x(16+32+64+128) = 480; fc 2048*1024+1024 =
# 2,098,176, 1024*128+128 = 131,200, 128*10+10 = 1,290; total 2,328,058.
MNIST_CNN = TeachingSpec(
    input_size=(1, 28, 28),
    blocks=(
        ConvSpec(16, padding=0, batch_norm=True, pool=False),
        ConvSpec(32, padding=0, batch_norm=True, pool=True),
        ConvSpec(64, padding=0, batch_norm=True, pool=False),
        ConvSpec(128, padding=0, batch_norm=True, pool=True),
    ),
    hidden=(1024, 128),
)


class ConvBlock(nn.Sequential):
    """3x3 conv (no bias when BN follows) [+ BN] + ReLU [+ 2x2 max-pool]."""

    def __init__(self, in_channels: int, spec: ConvSpec) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_channels, spec.channels, 3, padding=spec.padding, bias=not spec.batch_norm
        )
        if spec.batch_norm:
            layers["bn"] = nn.BatchNorm2d(spec.channels)
        layers["act"] = nn.ReLU()
        if spec.pool:
            layers["pool"] = nn.MaxPool2d(2)
        super().__init__(layers)


class TeachingCNN(ClassifierModel):
    """Conv blocks, flatten, ReLU MLP, linear classifier; sized for one fixed input size."""

    def __init__(self, spec: TeachingSpec, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        _, height, width = spec.input_size
        self.min_input_size = (height, width)
        self.fixed_input_size = (height, width)  # the first fc's in-features fix the size

        blocks: OrderedDict[str, nn.Module] = OrderedDict()
        self.feature_info = []
        channels, reduction = in_channels, 1
        for index, block in enumerate(spec.blocks, start=1):
            blocks[f"block{index}"] = ConvBlock(channels, block)
            channels = block.channels
            height, width = height + 2 * block.padding - 2, width + 2 * block.padding - 2
            if block.pool:
                height, width, reduction = height // 2, width // 2, reduction * 2
                # A stage ends with its pool: the last block at each resolution.
                self.feature_info.append(FeatureInfo(f"features.block{index}", channels, reduction))
        self.features = nn.Sequential(blocks)

        hidden: OrderedDict[str, nn.Module] = OrderedDict()
        width_in = channels * height * width
        for index, width_out in enumerate(spec.hidden, start=1):
            hidden[f"fc{index}"] = nn.Linear(width_in, width_out)
            hidden[f"act{index}"] = nn.ReLU()
            width_in = width_out
        self.hidden = nn.Sequential(hidden)
        self.fc = nn.Linear(width_in, num_classes)

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.features(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.hidden(torch.flatten(x, 1))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = new_linear_like(self.fc, num_classes)
        self.num_classes = num_classes


# The first fc's in-features fix each net's input size: min_size is input_size's H x W.
_register = functools.partial(
    register_model, family="teaching", paper=papers.TEACHING, fixed_size=True
)
# One row per variant: params and MACs with their source.
NUMBERS: dict[str, Numbers] = {
    "simple_cnn": numbers(
        1_175_818,
        11_403_904,
        (
            "computed by hand (see SIMPLE_CNN) and checked; MACs conv 884,736 + 4,718,592 + "
            "4,718,592, fc 1,048,576 + 32,768 + 640"
        ),
    ),
    "mnist_cnn": numbers(
        2_328_058,
        11_542_848,
        (
            "computed by hand (see MNIST_CNN) and checked; MACs conv 97,344 + 2,654,208 + "
            "1,843,200 + 4,718,592, fc 2,097,152 + 131,072 + 1,280"
        ),
    ),
}


@_register(**NUMBERS["simple_cnn"], input_size=SIMPLE_CNN.input_size)
def simple_cnn(*, num_classes: int = 10, in_channels: int = 3) -> TeachingCNN:
    """Course CNN for 32x32 colour images: 3 conv-ReLU-pool blocks, fc 2048-512-64.

    Filters 32, 64, 128, padding 1; ReLU after each hidden fc. PyTorch's default initialisation.
    Course material with no paper of its own; it cites LeCun et al. (1998), whose conv-pool-fc
    layout it teaches.
    """
    return TeachingCNN(SIMPLE_CNN, num_classes=num_classes, in_channels=in_channels)


@_register(**NUMBERS["mnist_cnn"], input_size=MNIST_CNN.input_size)
def mnist_cnn(*, num_classes: int = 10, in_channels: int = 1) -> TeachingCNN:
    """Course CNN for 28x28 MNIST: 4 conv-BN-ReLU blocks, 2 pools, fc 2048-1024-128.

    Filters 16, 32, 64, 128, all unpadded so that 28x28 ends at 128x4x4 = 2048 features; convs
    without bias (BN follows). PyTorch's default initialisation.
    Course material with no paper of its own; it cites LeCun et al. (1998), whose conv-pool-fc
    layout it teaches.
    """
    return TeachingCNN(MNIST_CNN, num_classes=num_classes, in_channels=in_channels)
