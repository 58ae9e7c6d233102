"""DenseNet (Huang et al. 2017): torchvision-compatible DenseNet-BC 121/161/169/201 for ImageNet
and the paper's DenseNet-BC (L=100, k=12) for CIFAR.

Every layer of a dense block reads the concatenation of all earlier feature maps of the block
and adds ``growth_rate`` new ones (paper eq. 2). "B" is the bottleneck: BN-ReLU-1x1 conv to
``bn_size * growth_rate`` channels before the BN-ReLU-3x3 conv; "C" is compression: a transition
halves the channels (theta = 0.5) with a 1x1 conv before its 2x2 average pool.

The ImageNet models keep torchvision's module names, state_dict order and shapes, constructor
arguments, initialisation and function, so torchvision checkpoints load with ``strict=True``.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo
from cnnzoo.registry import Paper, register_model

# torchvision's DenseNet files were saved as ``denselayerN.norm.1.weight``; its modules are named
# ``norm1`` since (torchvision's own loader renames them the same way).
_LEGACY_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)

__all__ = ["DENSENETS", "HUANG2017", "DenseNet", "DenseNetSpec"]

HUANG2017 = Paper(
    title="Densely Connected Convolutional Networks",
    authors="Huang, Liu, van der Maaten, Weinberger",
    year=2017,
    link="https://arxiv.org/abs/1608.06993",
)


class DenseNetSpec(NamedTuple):
    """One DenseNet: growth rate k, layers per dense block, channels of the stem."""

    growth_rate: int
    block_config: tuple[int, ...]
    num_init_features: int


# Paper Table 1 (ImageNet, k=32; DenseNet-161 is k=48 with a 96-channel stem, sec. 4.1) and
# Table 2's DenseNet-BC L=100, k=12: (100 - 4) / 6 = 16 bottleneck layers in each of three blocks,
# a 2k = 24-channel first conv (sec. 3, "Implementation Details").
DENSENETS: dict[str, DenseNetSpec] = {
    "densenet121": DenseNetSpec(32, (6, 12, 24, 16), 64),
    "densenet161": DenseNetSpec(48, (6, 12, 36, 24), 96),
    "densenet169": DenseNetSpec(32, (6, 12, 32, 32), 64),
    "densenet201": DenseNetSpec(32, (6, 12, 48, 32), 64),
    "densenet_bc_100_k12": DenseNetSpec(12, (16, 16, 16), 24),
}


class _DenseLayer(nn.Module):
    """BN-ReLU-Conv1x1 (to bn_size * k) then BN-ReLU-Conv3x3 (to k): paper sec. 3, "DenseNet-B"."""

    def __init__(
        self,
        num_input_features: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(
            num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False
        )
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(
            bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False
        )
        self.drop_rate = float(drop_rate)
        self.memory_efficient = memory_efficient

    def bottleneck(self, *inputs: Tensor) -> Tensor:
        concatenated = torch.cat(inputs, 1)
        out: Tensor = self.conv1(self.relu1(self.norm1(concatenated)))
        return out

    def forward(self, inputs: list[Tensor]) -> Tensor:
        if self.memory_efficient and any(t.requires_grad for t in inputs):
            # Recompute the concatenation and bottleneck in the backward pass instead of storing
            # them: memory grows linearly, not quadratically, with depth (Pleiss et al. 2017).
            # The tensors are passed one by one: the block appends to the list afterwards.
            bottleneck = cp.checkpoint(self.bottleneck, *inputs, use_reentrant=False)
        else:
            bottleneck = self.bottleneck(*inputs)
        new_features: Tensor = self.conv2(self.relu2(self.norm2(bottleneck)))
        if self.drop_rate > 0:
            new_features = F.dropout(new_features, p=self.drop_rate, training=self.training)
        return new_features


class _DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers; each reads every earlier output of the block (paper eq. 2)."""

    def __init__(
        self,
        num_layers: int,
        num_input_features: int,
        bn_size: int,
        growth_rate: int,
        drop_rate: float,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for index in range(num_layers):
            layer = _DenseLayer(
                num_input_features + index * growth_rate,
                growth_rate=growth_rate,
                bn_size=bn_size,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.add_module(f"denselayer{index + 1}", layer)

    def forward(self, init_features: Tensor) -> Tensor:
        features = [init_features]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    """BN-ReLU-Conv1x1 (compression) then 2x2/2 average pool between dense blocks (sec. 3)."""

    def __init__(self, num_input_features: int, num_output_features: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(
            num_input_features, num_output_features, kernel_size=1, stride=1, bias=False
        )
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


class DenseNet(ClassifierModel):
    """torchvision's DenseNet-BC: a stem, dense blocks joined by transitions, BN, ReLU, global
    average pool, one linear ``classifier``.

    ``DenseNet.upgrade_state_dict`` reads torchvision's published files, whose keys predate its
    module names; ``cnnzoo.load_weights`` applies it to any file loaded into a DenseNet.

    ``cifar_stem=True`` gives the paper's CIFAR stem instead of the ImageNet one: a single 3x3
    conv (``2 * growth_rate`` channels in DenseNet-BC) with no BN, ReLU or pooling before the
    first block (sec. 3, "Implementation Details").
    """

    @staticmethod
    def upgrade_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
        """``norm.1`` -> ``norm1`` in a torchvision DenseNet file (keeps ``_metadata``)."""
        renamed: dict[str, Tensor] = type(state)()
        for key, value in state.items():
            match = _LEGACY_KEY.match(key)
            renamed[match.group(1) + match.group(2) if match else key] = value
        metadata = getattr(state, "_metadata", None)
        if metadata is not None:
            renamed._metadata = metadata  # type: ignore[attr-defined]
        return renamed

    def __init__(
        self,
        growth_rate: int = 32,
        block_config: Sequence[int] = (6, 12, 24, 16),
        num_init_features: int = 64,
        bn_size: int = 4,
        drop_rate: float = 0,
        num_classes: int = 1000,
        memory_efficient: bool = False,
        *,
        in_channels: int = 3,
        cifar_stem: bool = False,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fixed_input_size = None

        stem: list[tuple[str, nn.Module]]
        if cifar_stem:
            stem = [("conv0", nn.Conv2d(in_channels, num_init_features, 3, padding=1, bias=False))]
            reduction = 1
        else:
            stem = [
                ("conv0", nn.Conv2d(in_channels, num_init_features, 7, 2, 3, bias=False)),
                ("norm0", nn.BatchNorm2d(num_init_features)),
                ("relu0", nn.ReLU(inplace=True)),
                ("pool0", nn.MaxPool2d(kernel_size=3, stride=2, padding=1)),
            ]
            reduction = 4
        self.features = nn.Sequential(OrderedDict(stem))

        self.feature_info = []
        num_features = num_init_features
        for index, num_layers in enumerate(block_config):
            block = _DenseBlock(
                num_layers=num_layers,
                num_input_features=num_features,
                bn_size=bn_size,
                growth_rate=growth_rate,
                drop_rate=drop_rate,
                memory_efficient=memory_efficient,
            )
            self.features.add_module(f"denseblock{index + 1}", block)
            num_features += num_layers * growth_rate
            if index != len(block_config) - 1:
                self.feature_info.append(
                    FeatureInfo(f"features.denseblock{index + 1}", num_features, reduction)
                )
                transition = _Transition(num_features, num_features // 2)  # theta = 0.5
                self.features.add_module(f"transition{index + 1}", transition)
                num_features //= 2
                reduction *= 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        # The last stage's output is forward_features' output: the last block after norm5.
        self.feature_info.append(FeatureInfo("features.norm5", num_features, reduction))
        self.num_features = num_features
        self.classifier = nn.Linear(num_features, num_classes)

        # Each transition's 2x2/2 pool floors, so the last block needs a map of at least
        # 2 ** transitions; the ImageNet stem (7x7/2 pad 3, 3x3/2 pad 1) maps 4m - 3 to m.
        last = 2 ** (len(block_config) - 1)
        side = last if cifar_stem else 4 * last - 3
        self.min_input_size = (side, side)

        # torchvision's init: He normal (fan_in) convs, BN at identity, zero linear bias.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.constant_(module.weight, 1)
                nn.init.constant_(module.bias, 0)
            elif isinstance(module, nn.Linear):
                nn.init.constant_(module.bias, 0)

    def forward_features(self, x: Tensor) -> Tensor:
        features: Tensor = self.features(x)
        return features

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        # The final BN (norm5) is in `features`; its ReLU is applied here, as torchvision does.
        x = torch.flatten(F.adaptive_avg_pool2d(F.relu(x), (1, 1)), 1)
        if pre_logits:
            return x
        logits: Tensor = self.classifier(x)
        return logits

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier
        fc = nn.Linear(
            old.in_features, num_classes, device=old.weight.device, dtype=old.weight.dtype
        )
        nn.init.constant_(fc.bias, 0)  # torchvision's init for the classifier
        self.classifier = fc
        self.num_classes = num_classes


def _densenet(
    name: str, num_classes: int, in_channels: int, kwargs: dict[str, Any], **extra: Any
) -> DenseNet:
    spec = DENSENETS[name]
    # As torchvision's builders: the variant's defining arguments cannot be passed again.
    for key, value in spec._asdict().items():
        if key in kwargs and kwargs[key] != value:
            raise ValueError(f"{key}={value} defines {name}, got {key}={kwargs[key]}")
        kwargs[key] = value
    return DenseNet(num_classes=num_classes, in_channels=in_channels, **kwargs, **extra)


_FAMILY: dict[str, Any] = {"family": "densenet", "paper": HUANG2017}
_META: dict[str, Any] = {**_FAMILY, "input_size": (3, 224, 224), "torchvision": True}
# (params, MACs at 224x224). params: torchvision 0.28 weights metadata and the state_dict JSON;
# MACs: computed exactly by cnnzoo.summary (conv + linear weights), rounding to torchvision's
# documented GFLOPS (`_ops`), given in each source string.
_NUMBERS: dict[str, tuple[int, int]] = {
    "densenet121": (7_978_856, 2_834_161_664),
    "densenet161": (28_681_000, 7_727_907_072),
    "densenet169": (14_149_480, 3_359_843_328),
    "densenet201": (20_013_928, 4_291_365_888),
}
_SOURCE = "torchvision 0.28 weights metadata (params, {gflops} GFLOPS); MACs computed, equal"


def _meta(name: str, gflops: str) -> dict[str, Any]:
    params, macs = _NUMBERS[name]
    # min_size: torchvision's metadata says 29x29 too; the test checks 28 fails.
    source = _SOURCE.format(gflops=gflops)
    return {**_META, "min_size": (29, 29), "params": params, "macs": macs, "source": source}


@register_model(**_meta("densenet121", "2.834"))
def densenet121(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    """DenseNet-121 (DenseNet-BC, k=32, blocks 6-12-24-16), as in torchvision.

    Huang et al. 2017, Table 1. Keyword arguments (bn_size, drop_rate, memory_efficient) go to
    :class:`DenseNet`.
    """
    return _densenet("densenet121", num_classes, in_channels, kwargs)


@register_model(**_meta("densenet161", "7.728"))
def densenet161(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    """DenseNet-161 (DenseNet-BC, k=48, blocks 6-12-36-24, 96-channel stem), as in torchvision.

    Huang et al. 2017, Table 1 and sec. 4.1. Keyword arguments go to :class:`DenseNet`.
    """
    return _densenet("densenet161", num_classes, in_channels, kwargs)


@register_model(**_meta("densenet169", "3.36"))
def densenet169(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    """DenseNet-169 (DenseNet-BC, k=32, blocks 6-12-32-32), as in torchvision.

    Huang et al. 2017, Table 1. Keyword arguments go to :class:`DenseNet`.
    """
    return _densenet("densenet169", num_classes, in_channels, kwargs)


@register_model(**_meta("densenet201", "4.291"))
def densenet201(*, num_classes: int = 1000, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    """DenseNet-201 (DenseNet-BC, k=32, blocks 6-12-48-32), as in torchvision.

    Huang et al. 2017, Table 1. Keyword arguments go to :class:`DenseNet`.
    """
    return _densenet("densenet201", num_classes, in_channels, kwargs)


@register_model(
    **_FAMILY,
    input_size=(3, 32, 32),
    min_size=(4, 4),
    params=769_162,
    macs=287_929_692,
    source="computed (paper Table 2: 0.8M params); MACs computed at 32x32",
)
def densenet_bc_100_k12(*, num_classes: int = 10, in_channels: int = 3, **kwargs: Any) -> DenseNet:
    """DenseNet-BC (L=100, k=12) for CIFAR: three dense blocks of 16 bottleneck layers.

    Huang et al. 2017, Table 2 (0.8M params, C10+ error 4.51%). 3x3 conv stem with 2k = 24
    channels, transitions with compression 0.5 between 32x32, 16x16 and 8x8 blocks. Keyword
    arguments (bn_size, drop_rate, memory_efficient) go to :class:`DenseNet`; the paper uses
    drop_rate 0.2 only without data augmentation.
    """
    return _densenet("densenet_bc_100_k12", num_classes, in_channels, kwargs, cifar_stem=True)
