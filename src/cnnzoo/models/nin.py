"""Network in Network (Lin, Chen, Yan 2013): mlpconv blocks and global average pooling.

An mlpconv block is a conv followed by two 1x1 convs ("cccp", cascaded cross-channel parametric
pooling), each with a ReLU: a small MLP slid over the image (paper sec. 3.1). The last block
outputs one map per class and a global average pool turns the maps into class scores: no fully
connected layer (sec. 3.2).

The layer sizes are those of the authors' released Caffe models, which the paper's experiments
used: the CIFAR-10 network (sec. 4.2, three mlpconv blocks, ~0.97M params) and the ImageNet model
of the Caffe Model Zoo (four mlpconv blocks, 224x224 input). Their pools use Caffe's ceil
rounding, reproduced with ``ceil_mode=True``; Caffe's average pool divides by the part of the
window inside the image, as PyTorch's does without padding.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo
from cnnzoo.registry import Paper, register_model

__all__ = ["LIN2013", "NIN_CONFIGS", "MlpConvSpec", "NiN", "mlpconv"]

LIN2013 = Paper(
    title="Network In Network",
    authors="Lin, Chen, Yan",
    year=2013,
    link="https://arxiv.org/abs/1312.4400",
)


class MlpConvSpec(NamedTuple):
    """One mlpconv block: conv (filters, kernel, stride, padding), the two 1x1 convs' filters
    (the last block's second is ``num_classes``: None here), and what follows the block."""

    filters: int
    kernel: int
    stride: int
    padding: int
    cccp: tuple[int, int | None]
    pool: str  # "max" or "avg": 3x3/2 ceil mode; "" for the last block (global average pool)
    dropout: bool  # dropout 0.5 after the block (and its pool)


NIN_CONFIGS: dict[str, tuple[MlpConvSpec, ...]] = {
    # Authors' CIFAR-10 model (Caffe Model Zoo, "NIN CIFAR10"): 192-160-96, 192-192-192,
    # 192-192-10; max pool after the first block, average pool after the second, dropout after
    # both (sec. 4.2: "dropout is applied on the outputs of all but the last mlpconv layers").
    "cifar10": (
        MlpConvSpec(192, 5, 1, 2, (160, 96), "max", True),
        MlpConvSpec(192, 5, 1, 2, (192, 192), "avg", True),
        MlpConvSpec(192, 3, 1, 1, (192, None), "", False),
    ),
    # Authors' ImageNet model (Caffe Model Zoo, "NIN ImageNet"): AlexNet-like first convs, a max
    # pool after each of the first three blocks, dropout before the last; maps 55 -> 27 -> 13 -> 6,
    # then the 6x6 global average pool. The zoo crops 224, where conv1 (11x11/4, no padding)
    # never reads the last row and column; 227 fits exactly and gives the same 27/13/6 maps.
    "imagenet": (
        MlpConvSpec(96, 11, 4, 0, (96, 96), "max", False),
        MlpConvSpec(256, 5, 1, 2, (256, 256), "max", False),
        MlpConvSpec(384, 3, 1, 1, (384, 384), "max", True),
        MlpConvSpec(1024, 3, 1, 1, (1024, None), "", False),
    ),
}


def mlpconv(in_channels: int, spec: MlpConvSpec) -> nn.Sequential:
    """conv -> ReLU -> 1x1 conv -> ReLU [-> 1x1 conv -> ReLU] (paper eq. 2, Fig. 1b); the last
    block's second 1x1 conv (None in its spec) is the model's ``classifier``."""
    first, second = spec.cccp
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, spec.filters, spec.kernel, spec.stride, spec.padding),
        nn.ReLU(inplace=True),
        nn.Conv2d(spec.filters, first, 1),
        nn.ReLU(inplace=True),
    ]
    if second is not None:
        layers += [nn.Conv2d(first, second, 1), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class NiN(ClassifierModel):
    """Network in Network: ``features`` (mlpconv blocks ``block1``.. with their pools and
    dropout) and the head: the last block's second 1x1 conv (``classifier``, one map per class),
    a ReLU (as in the authors' models) and a global average pool. No fully connected layer.

    ``forward_head(pre_logits=True)`` gives the feature map the classifier conv reads: the
    classifier acts before the global pool, so there is no pooled vector before it.
    """

    def __init__(
        self,
        config: str = "cifar10",
        num_classes: int = 10,
        dropout: float = 0.5,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if config not in NIN_CONFIGS:
            raise ValueError(f"unknown NiN config {config!r}; expected one of {list(NIN_CONFIGS)}")
        specs = NIN_CONFIGS[config]
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fixed_input_size = None
        self.min_input_size = _min_side(specs)
        self.feature_info = []

        layers: dict[str, nn.Module] = {}
        channels, reduction = in_channels, 1
        for index, spec in enumerate(specs, start=1):
            layers[f"block{index}"] = mlpconv(channels, spec)
            channels = spec.cccp[1] or spec.cccp[0]
            reduction *= spec.stride
            if spec.pool:
                pool = nn.MaxPool2d if spec.pool == "max" else nn.AvgPool2d
                layers[f"pool{index}"] = pool(3, stride=2, ceil_mode=True)
                self.feature_info.append(FeatureInfo(f"features.block{index}", channels, reduction))
                reduction *= 2
            if spec.dropout:
                layers[f"dropout{index}"] = nn.Dropout(p=dropout)
        self.feature_info.append(FeatureInfo(f"features.block{len(specs)}", channels, reduction))
        self.features = nn.Sequential(OrderedDict(layers))
        self.num_features = channels
        self.classifier = nn.Conv2d(channels, num_classes, 1)
        self.relu = nn.ReLU(inplace=True)
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module)
        _init_classifier(self.classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        features: Tensor = self.features(x)
        return features

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        if pre_logits:
            return x
        return torch.flatten(self.global_pool(self.relu(self.classifier(x))), 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier
        conv = nn.Conv2d(
            old.in_channels, num_classes, 1, device=old.weight.device, dtype=old.weight.dtype
        )
        _init_classifier(conv)
        self.classifier = conv
        self.num_classes = num_classes


def _init_conv(conv: nn.Conv2d) -> None:
    # The paper gives no initialisation. He normal (fan_in) suits the ReLU after every conv and
    # lets this 9- or 12-conv net without BN train from scratch; biases start at zero.
    nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)


def _init_classifier(conv: nn.Conv2d) -> None:
    # The class maps pass a ReLU before the global pool, and the features they read are all >= 0
    # (post-ReLU), so with He-normal weights each map's sign is mostly that of its weights' sum
    # against the features' mean: alike for every image and position. A class drawn negative is
    # dead from the first step (the ReLU passes it no gradient) and never predicted (issue 18:
    # on the digits, seeds 0 and 2 lost the classes that started positive at 0.1% and 3% of
    # their positions). Small weights (N(0, 0.01), as torchvision's SqueezeNet head, the same
    # conv -> ReLU -> pool) and a bias of 1 open every class's ReLU with equal logits: training
    # then moves each map by the difference of class means, not by the common part.
    nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 1.0)


def _min_side(specs: tuple[MlpConvSpec, ...]) -> tuple[int, int]:
    """Walk back from a 1x1 final map: a ceil-mode 3x3/2 pool gives m outputs from 2m inputs
    (its last window may hang over the edge), a conv maps (m - 1) * stride + kernel - 2 * pad."""
    side = 1
    for spec in reversed(specs):
        if spec.pool:
            side *= 2
        side = max((side - 1) * spec.stride + spec.kernel - 2 * spec.padding, 1)
    return (side, side)


_META: dict[str, Any] = {"family": "nin", "paper": LIN2013}
# config: (input size, params, MACs at the input size), computed by cnnzoo.summary. The paper
# quotes no parameter count; the CIFAR-10 figure agrees with the commonly cited ~0.97M.
_NUMBERS: dict[str, tuple[tuple[int, int, int], int, int]] = {
    "cifar10": ((3, 32, 32), 966_986, 222_486_528),
    "imagenet": ((3, 227, 227), 7_595_176, 1_105_996_320),
}


def _meta(config: str) -> dict[str, Any]:
    input_size, params, macs = _NUMBERS[config]
    with_min = {"min_size": _min_side(NIN_CONFIGS[config])}
    source = "computed (layer sizes from the authors' Caffe Model Zoo release)"
    return {
        **_META,
        **with_min,
        "input_size": input_size,
        "params": params,
        "macs": macs,
        "source": source,
    }


@register_model(**_meta("cifar10"))
def nin_cifar10(*, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.5) -> NiN:
    """NiN for CIFAR-10: three mlpconv blocks, global average pooling, no fully connected layer.

    Lin, Chen, Yan 2013, sec. 4.2 (CIFAR-10 test error 10.41%, 8.81% with augmentation).
    """
    return NiN("cifar10", num_classes, dropout, in_channels=in_channels)


@register_model(**_meta("imagenet"))
def nin_imagenet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> NiN:
    """NiN for ImageNet: four mlpconv blocks (conv1 96@11x11/4), global average pooling.

    Lin, Chen, Yan 2013; layer sizes of the authors' ImageNet model in the Caffe Model Zoo.
    Default input 227x227 (as alexnet_original): the first conv covers it exactly.
    """
    return NiN("imagenet", num_classes, dropout, in_channels=in_channels)
