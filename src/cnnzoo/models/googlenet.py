"""GoogLeNet (Inception v1): torchvision's variant and the network of the paper.

Szegedy et al. 2014, "Going Deeper with Convolutions", arXiv:1409.4842: sec. 4 (the Inception
module, Figure 2b), sec. 5 (the network, Table 1, Figure 3, the auxiliary classifiers).

- ``googlenet`` is torchvision's model, state_dict for state_dict. It follows the TensorFlow port
  its weights came from rather than the paper: BatchNorm after every conv and no LRN, a 3x3 conv in
  the "5x5" branch (a known torchvision deviation, pytorch/vision#906, kept for its weights), a 2x2
  max pool before 5a, and aux heads that pool adaptively to 4x4.
- ``googlenet_original`` is the paper's network: true 5x5 branches, conv biases, ReLU, no BN, LRN
  after the first max pool and after the 3x3 conv of the stem, 3x3/2 max pools throughout, and the
  aux heads of sec. 5 with their fixed 5x5/3 average pool.
- ``bn_inception`` is GoogLeNet as Ioffe & Szegedy (2015) rebuilt it for batch normalisation
  (BN-Inception, also called Inception v2): BN before every ReLU, each 5x5 replaced by two 3x3,
  three 28x28 modules, stride-2 modules instead of pools between stages (Appendix, Figure 5).

Both read their Inception modules from one table (``INCEPTION_SPECS``, the rows of Table 1) and
share the trunk order and outputs: in training mode with aux heads, ``GoogLeNetOutputs(logits,
aux_logits2, aux_logits1)`` (torchvision's namedtuple); otherwise a plain logits tensor.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.layers import BasicConv2d, imagenet_to_unit_range
from cnnzoo.models import papers
from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "AUX_LOSS_WEIGHT",
    "BN_INCEPTION_SPECS",
    "INCEPTION_SPECS",
    "BNInception",
    "BNInceptionModule",
    "BNInceptionSpec",
    "ConvBNReLU",
    "ConvReLU",
    "GoogLeNet",
    "GoogLeNetOriginal",
    "GoogLeNetOutputs",
    "Inception",
    "InceptionAux",
    "InceptionAuxOriginal",
    "InceptionSpec",
    "bn_inception",
    "googlenet",
    "googlenet_original",
]

# Sec. 5: "During training, their loss gets added to the total loss of the network with a discount
# weight (the losses of the auxiliary classifiers were weighted by 0.3)." A trainer reads it from
# the model's ``aux_loss_weight``: loss = ce(logits) + w * (ce(aux_logits1) + ce(aux_logits2)).
AUX_LOSS_WEIGHT = 0.3


class GoogLeNetOutputs(NamedTuple):
    """Training-mode output when aux heads are built: torchvision's field names and order."""

    logits: Tensor
    aux_logits2: Tensor | None  # the head on inception4d
    aux_logits1: Tensor | None  # the head on inception4a


class InceptionSpec(NamedTuple):
    """One Inception row of the paper's Table 1: output channels of each branch's convs."""

    c1x1: int
    c3x3_reduce: int
    c3x3: int
    c5x5_reduce: int
    c5x5: int
    pool_proj: int

    @property
    def out_channels(self) -> int:
        """Channels of the module's output: the four branches concatenated."""
        return self.c1x1 + self.c3x3 + self.c5x5 + self.pool_proj


# Table 1, columns "#1x1", "#3x3 reduce", "#3x3", "#5x5 reduce", "#5x5", "pool proj". The same
# numbers build torchvision's model (its branch 3 just uses 3x3 kernels). Max pools (3x3/2) follow
# 3b and 4e; the aux heads sit on 4a and 4d (sec. 5).
INCEPTION_SPECS: dict[str, InceptionSpec] = {
    "3a": InceptionSpec(64, 96, 128, 16, 32, 32),  # 28x28 -> 256 channels
    "3b": InceptionSpec(128, 128, 192, 32, 96, 64),  # 480
    "4a": InceptionSpec(192, 96, 208, 16, 48, 64),  # 14x14 -> 512
    "4b": InceptionSpec(160, 112, 224, 24, 64, 64),  # 512
    "4c": InceptionSpec(128, 128, 256, 24, 64, 64),  # 512
    "4d": InceptionSpec(112, 144, 288, 32, 64, 64),  # 528
    "4e": InceptionSpec(256, 160, 320, 32, 128, 128),  # 832
    "5a": InceptionSpec(256, 160, 320, 32, 128, 128),  # 7x7 -> 832
    "5b": InceptionSpec(384, 192, 384, 48, 128, 128),  # 1024
}
# Table 1 has arithmetic errors in its params/ops columns: the conv1 row says 2.7K params and 34M
# ops, but a 7x7x3x64 conv has 9,408 weights (9.4K) and 9,408 x 112 x 112 = 118M multiply-adds.
# The layer shapes themselves are consistent; only those two columns are off.

STEM_CHANNELS = 192  # conv3's output: the input of inception3a


class ConvReLU(nn.Module):
    """Conv2d with bias → ReLU: the paper's unit (sec. 5: "All the convolutions, including those
    inside the Inception modules, use rectified linear activation")."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, **conv_kwargs)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.conv(x), inplace=True)


class Inception(nn.Module):
    """The Inception module with dimension reductions (sec. 4, Figure 2b).

    Four branches on the same input, concatenated along channels: 1x1; 1x1 reduce → 3x3; 1x1
    reduce → "5x5"; 3x3/1 max pool → 1x1 pool projection. Arguments in torchvision's order, which
    is Table 1's column order. ``branch3_kernel_size`` is 3 in torchvision's model (its known
    deviation, pytorch/vision#906: the ported weights have 3x3 kernels there) and 5 in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        ch1x1: int,
        ch3x3red: int,
        ch3x3: int,
        ch5x5red: int,
        ch5x5: int,
        pool_proj: int,
        conv_block: Callable[..., nn.Module] | None = None,
        *,
        branch3_kernel_size: int = 3,
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        k = branch3_kernel_size
        self.branch1 = conv(in_channels, ch1x1, kernel_size=1)
        self.branch2 = nn.Sequential(
            conv(in_channels, ch3x3red, kernel_size=1),
            conv(ch3x3red, ch3x3, kernel_size=3, padding=1),
        )
        self.branch3 = nn.Sequential(
            conv(in_channels, ch5x5red, kernel_size=1),
            conv(ch5x5red, ch5x5, kernel_size=k, padding=k // 2),
        )
        self.branch4 = nn.Sequential(
            nn.MaxPool2d(kernel_size=3, stride=1, padding=1, ceil_mode=True),
            conv(in_channels, pool_proj, kernel_size=1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class InceptionAux(nn.Module):
    """torchvision's auxiliary classifier: adaptive 4x4 average pool → 1x1 conv 128 (BN, ReLU) →
    fc 1024 + ReLU → dropout → fc. The adaptive pool lets it run at any input size; on the 14x14
    maps of a 224 input it averages 4x4 windows at offsets 0, 3, 7, 10, not the paper's 5x5/3."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        conv_block: Callable[..., nn.Module] | None = None,
        dropout: float = 0.7,
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.conv = conv(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(F.adaptive_avg_pool2d(x, (4, 4))), 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        logits: Tensor = self.fc2(x)
        return logits


# The paper's aux heads pool 5x5/3 and feed fc1 a fixed 128 x 4 x 4 = 2048 vector, so they need a
# 14..16-pixel 4a/4d map. Through the stem (7x7/2 conv, three ceil-mode 3x3/2 pools) a side s gives
# ceil(s/2) -> ceil((.-1)/2) three times; that lands in 14..16 for s in 223..270.
AUX_INPUT_RANGE_ORIGINAL = (223, 270)


class InceptionAuxOriginal(nn.Module):
    """The paper's auxiliary classifier (sec. 5): 5x5/3 average pool → 1x1 conv 128 + ReLU →
    fc 1024 + ReLU → dropout 0.7 → fc. On a 14x14 map (4a, 4d at 224) the pool gives 4x4."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.7) -> None:
        super().__init__()
        self.pool = nn.AvgPool2d(kernel_size=5, stride=3)
        self.conv = ConvReLU(in_channels, 128, kernel_size=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 1024)
        self.fc2 = nn.Linear(1024, num_classes)
        self.dropout = nn.Dropout(p=dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = torch.flatten(self.conv(self.pool(x)), 1)
        x = self.dropout(F.relu(self.fc1(x), inplace=True))
        logits: Tensor = self.fc2(x)
        return logits


class _GoogLeNetBase(ClassifierModel):
    """What both variants share: the trunk of Table 1 / Figure 3 after the stem, the aux taps on
    4a and 4d, the head, and torchvision's output convention."""

    aux_logits: bool
    aux_loss_weight: float = AUX_LOSS_WEIGHT
    aux1: nn.Module | None
    aux2: nn.Module | None
    avgpool: nn.AdaptiveAvgPool2d
    dropout: nn.Dropout
    fc: nn.Linear

    def _add_trunk(self, inception_block: Callable[..., nn.Module], maxpool4_kernel: int) -> None:
        s = INCEPTION_SPECS
        self.inception3a = inception_block(STEM_CHANNELS, *s["3a"])
        self.inception3b = inception_block(s["3a"].out_channels, *s["3b"])
        self.maxpool3 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.inception4a = inception_block(s["3b"].out_channels, *s["4a"])
        self.inception4b = inception_block(s["4a"].out_channels, *s["4b"])
        self.inception4c = inception_block(s["4b"].out_channels, *s["4c"])
        self.inception4d = inception_block(s["4c"].out_channels, *s["4d"])
        self.inception4e = inception_block(s["4d"].out_channels, *s["4e"])
        self.maxpool4 = nn.MaxPool2d(maxpool4_kernel, stride=2, ceil_mode=True)
        self.inception5a = inception_block(s["4e"].out_channels, *s["5a"])
        self.inception5b = inception_block(s["5a"].out_channels, *s["5b"])

    def _stem(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def _check_aux_input(self, x: Tensor) -> None:
        """Raise a clear error for an input the aux heads cannot take (training mode only)."""

    def _trunk(self, x: Tensor, with_aux: bool) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Features of inception5b, and the aux logits (heads on 4d, 4a) if ``with_aux``."""
        x = self._stem(x)
        x = self.inception3a(x)
        x = self.inception3b(x)
        x = self.maxpool3(x)
        x = self.inception4a(x)
        aux1 = self.aux1(x) if with_aux and self.aux1 is not None else None
        x = self.inception4b(x)
        x = self.inception4c(x)
        x = self.inception4d(x)
        aux2 = self.aux2(x) if with_aux and self.aux2 is not None else None
        x = self.inception4e(x)
        x = self.maxpool4(x)
        x = self.inception5a(x)
        x = self.inception5b(x)
        return x, aux2, aux1

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    # Training mode with aux heads returns a namedtuple, as torchvision's eager mode does.
    def forward(self, x: Tensor) -> Tensor | GoogLeNetOutputs:  # type: ignore[override]
        self.check_input(x)
        with_aux = self.training and self.aux_logits
        if with_aux:
            self._check_aux_input(x)
        features, aux2, aux1 = self._trunk(x, with_aux)
        logits = self.forward_head(features)
        return GoogLeNetOutputs(logits, aux2, aux1) if with_aux else logits

    def get_classifier(self) -> nn.Module:
        return self.fc

    def _init_classifier(self, layer: nn.Linear) -> None:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """New ``fc`` for ``num_classes``, and new final layers in the aux heads to match."""
        self.fc = new_linear_like(self.fc, num_classes, self._init_classifier)
        for aux in (self.aux1, self.aux2):
            if aux is not None:
                assert isinstance(aux.fc2, nn.Linear)
                aux.fc2 = new_linear_like(aux.fc2, num_classes, self._init_classifier)
        self.num_classes = num_classes


def _torchvision_trunc_normal_(weight: Tensor) -> None:
    # torchvision's init for every conv and linear weight: truncated normal, std 0.01, cut at +-2
    # (absolute, i.e. 200 std: in effect a plain normal). Linear biases keep PyTorch's default.
    nn.init.trunc_normal_(weight, mean=0.0, std=0.01, a=-2, b=2)


class GoogLeNet(_GoogLeNetBase):
    """torchvision's GoogLeNet: its submodule names, constructor, init and forward.

    Stem conv1 7x7/2 → max pool 3x3/2 → conv2 1x1 → conv3 3x3 → max pool 3x3/2, all convs
    conv-BN(eps 0.001)-ReLU; the Inception trunk of Table 1; global average pool, dropout, fc.
    Pools use ceil_mode so a 224 input gives Table 1's 112/56/28/14/7 maps. ``in_channels``
    changes conv1 only. ``blocks`` = [conv, inception, aux] block types, as torchvision's.
    ``transform_input`` is applied first thing in ``forward_features`` (so also in ``forward``).
    """

    # Side 15 is the smallest that leaves inception5b a map: 15 -> conv1 8 -> 4 -> 2 -> 1 -> 1
    # (ceil-mode pools); 14 -> 7 -> 3 -> 1, and maxpool3 (3x3 on 1x1) has no window left.
    # torchvision's weights metadata also says min_size (15, 15).
    MIN_INPUT_SIZE = (15, 15)

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        init_weights: bool | None = None,
        blocks: Sequence[Callable[..., nn.Module]] | None = None,
        dropout: float = 0.2,
        dropout_aux: float = 0.7,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if blocks is None:
            blocks = [BasicConv2d, Inception, InceptionAux]
        if len(blocks) != 3:
            raise ValueError(
                f"blocks must be [conv, inception, aux] block types, got {len(blocks)}"
            )
        if transform_input and in_channels != 3:
            raise ValueError("transform_input re-normalises RGB input: it needs in_channels=3")
        conv_block, inception_block, aux_block = blocks
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.min_input_size = self.MIN_INPUT_SIZE

        # Construction order is torchvision's, so the same seed draws the same initial weights.
        self.conv1 = conv_block(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = conv_block(64, 64, kernel_size=1)
        self.conv3 = conv_block(64, STEM_CHANNELS, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        # The TensorFlow layout pools 2x2/2 before 5a (Table 1: 3x3/2); 14 -> 7 either way.
        self._add_trunk(inception_block, maxpool4_kernel=2)
        if aux_logits:
            self.aux1 = aux_block(
                INCEPTION_SPECS["4a"].out_channels, num_classes, dropout=dropout_aux
            )
            self.aux2 = aux_block(
                INCEPTION_SPECS["4d"].out_channels, num_classes, dropout=dropout_aux
            )
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(INCEPTION_SPECS["5b"].out_channels, num_classes)
        self.feature_info = [
            FeatureInfo("conv1", 64, 2),
            FeatureInfo("conv3", STEM_CHANNELS, 4),
            FeatureInfo("inception3b", INCEPTION_SPECS["3b"].out_channels, 8),
            FeatureInfo("inception4e", INCEPTION_SPECS["4e"].out_channels, 16),
            FeatureInfo("inception5b", INCEPTION_SPECS["5b"].out_channels, 32),
        ]
        # torchvision: None means True (it warns that the default may change; we do not).
        if init_weights is None or init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    _torchvision_trunc_normal_(m.weight)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _init_classifier(self, layer: nn.Linear) -> None:
        _torchvision_trunc_normal_(layer.weight)

    def _stem(self, x: Tensor) -> Tensor:
        if self.transform_input:
            x = imagenet_to_unit_range(x)
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.maxpool2(x)
        return x


# The paper does not give LRN hyper-parameters or an initialisation; both come from the BVLC Caffe
# replication of this network (models/bvlc_googlenet/train_val.prototxt), the reference model of
# the paper's era: LRN local_size 5, alpha 1e-4, beta 0.75, k 1. Caffe, like PyTorch, divides
# alpha by the window size, so the numbers carry over unchanged (unlike the AlexNet paper's).
_LRN_SIZE, _LRN_ALPHA, _LRN_BETA, _LRN_K = 5, 1e-4, 0.75, 1.0
# Caffe "xavier" filler (default fan-in variant): U(-sqrt(3 / fan_in), +sqrt(3 / fan_in)); biases
# 0.2 in every conv and hidden fc, 0 in the classifiers.
_HIDDEN_BIAS = 0.2


def _caffe_xavier_(weight: Tensor) -> None:
    fan_in = weight[0].numel()
    bound = math.sqrt(3.0 / fan_in)
    nn.init.uniform_(weight, -bound, bound)


class GoogLeNetOriginal(_GoogLeNetBase):
    """The paper's GoogLeNet (sec. 5, Table 1, Figure 3).

    Stem: conv1 7x7/2 → max pool 3x3/2 → LRN → conv2 1x1 (Table 1's "3x3 reduce" 64) → conv3 3x3
    192 → LRN → max pool 3x3/2; nine Inception modules with true 5x5 branches; 3x3/2 max pools
    after 3b and 4e; average pool → dropout 0.4 → linear (Table 1). Every conv has a bias and a
    ReLU; there is no BatchNorm (it came later). Aux heads on 4a and 4d (sec. 5), weighted
    ``aux_loss_weight`` = 0.3 in the loss, discarded at inference.

    The paper's final pool is 7x7/1 on the 7x7 map of a 224 input. We pool adaptively to 1x1:
    identical at 224 (and for any input that gives a 7x7 map), and global average pooling (the
    paper's intent, sec. 5 citing Network-in-Network) at other sizes, which a fixed 7x7 window
    followed by a 1024-input linear layer could not take. The aux heads keep the paper's fixed
    5x5/3 pool, so in training mode they need inputs of 223..270 pixels a side (224 in the paper);
    build with ``aux_logits=False`` to train at other sizes.
    """

    # Larger than torchvision's 15: the 3x3/2 pool before 5a (torchvision: 2x2) needs a 2x2
    # map. 31 -> conv1 16 -> pools 8, 4, 2, 1; 30 -> 15 -> 7, 3, 1 and maxpool4 has no window.
    MIN_INPUT_SIZE = (31, 31)

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        dropout: float = 0.4,
        dropout_aux: float = 0.7,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.min_input_size = self.MIN_INPUT_SIZE

        self.conv1 = ConvReLU(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.norm1 = nn.LocalResponseNorm(_LRN_SIZE, alpha=_LRN_ALPHA, beta=_LRN_BETA, k=_LRN_K)
        self.conv2 = ConvReLU(64, 64, kernel_size=1)
        self.conv3 = ConvReLU(64, STEM_CHANNELS, kernel_size=3, padding=1)
        self.norm2 = nn.LocalResponseNorm(_LRN_SIZE, alpha=_LRN_ALPHA, beta=_LRN_BETA, k=_LRN_K)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        inception = functools.partial(Inception, conv_block=ConvReLU, branch3_kernel_size=5)
        self._add_trunk(inception, maxpool4_kernel=3)
        if aux_logits:
            self.aux1 = InceptionAuxOriginal(
                INCEPTION_SPECS["4a"].out_channels, num_classes, dropout_aux
            )
            self.aux2 = InceptionAuxOriginal(
                INCEPTION_SPECS["4d"].out_channels, num_classes, dropout_aux
            )
        else:
            self.aux1 = None
            self.aux2 = None
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(INCEPTION_SPECS["5b"].out_channels, num_classes)
        self.feature_info = [
            FeatureInfo("conv1", 64, 2),
            FeatureInfo("norm2", STEM_CHANNELS, 4),
            FeatureInfo("inception3b", INCEPTION_SPECS["3b"].out_channels, 8),
            FeatureInfo("inception4e", INCEPTION_SPECS["4e"].out_channels, 16),
            FeatureInfo("inception5b", INCEPTION_SPECS["5b"].out_channels, 32),
        ]
        classifiers = {id(self.fc)} | {id(aux.fc2) for aux in (self.aux1, self.aux2) if aux}
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _caffe_xavier_(m.weight)
                assert m.bias is not None
                nn.init.constant_(m.bias, 0.0 if id(m) in classifiers else _HIDDEN_BIAS)

    def _init_classifier(self, layer: nn.Linear) -> None:
        _caffe_xavier_(layer.weight)
        nn.init.zeros_(layer.bias)

    def _check_aux_input(self, x: Tensor) -> None:
        low, high = AUX_INPUT_RANGE_ORIGINAL
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if not (low <= h <= high and low <= w <= high):
            name = getattr(self, "model_name", type(self).__name__)
            raise ValueError(
                f"{name} in training mode runs the paper's aux heads, whose fixed 5x5/3 pool and "
                f"2048-input fc need inputs of {low}..{high} pixels a side, got {h}x{w}; "
                "build it with aux_logits=False to train at other sizes"
            )

    def _stem(self, x: Tensor) -> Tensor:
        x = self.conv1(x)
        x = self.maxpool1(x)
        x = self.norm1(x)
        x = self.conv2(x)
        x = self.conv3(x)
        x = self.norm2(x)
        x = self.maxpool2(x)
        return x


class BNInceptionSpec(NamedTuple):
    """One Inception row of Ioffe & Szegedy's Figure 5 table (the Appendix): the channels of each
    branch's convs, the pool type, and the pool projection (0: the input passes through the pool
    unprojected, in the stride-2 modules 3c and 4e)."""

    c1x1: int  # 0: no 1x1 branch (3c, 4e)
    c3x3_reduce: int
    c3x3: int
    double_3x3_reduce: int
    double_3x3: int  # both 3x3 convs of the double branch (which stands for a 5x5)
    pool: Literal["avg", "max"]
    pool_proj: int
    stride: int = 1

    def out_channels(self, in_channels: int) -> int:
        """Channels of the module's output for ``in_channels`` of input."""
        passed = self.pool_proj or in_channels
        return self.c1x1 + self.c3x3 + self.double_3x3 + passed


# Figure 5, columns "#1x1", "#3x3 reduce", "#3x3", "double #3x3 reduce", "double #3x3",
# "Pool +proj". The table's output column disagrees with its own branch columns in three rows:
# 4c and 4d give 160+160+160+128 = 96+192+192+128 = 608 channels, not the 576 printed, so 4e,
# which passes its input through, gives 192+256+608 = 1056, not 1024. We build the branch
# columns (the ported reference models have the same 608 and 1056 channels); 3c's "28x28" is the
# grid it reads, its output is 14x14 (4a's input).
BN_INCEPTION_SPECS: dict[str, BNInceptionSpec] = {
    "3a": BNInceptionSpec(64, 64, 64, 64, 96, "avg", 32),  # 28x28 -> 256
    "3b": BNInceptionSpec(64, 64, 96, 64, 96, "avg", 64),  # 320
    "3c": BNInceptionSpec(0, 128, 160, 64, 96, "max", 0, stride=2),  # 14x14 -> 576
    "4a": BNInceptionSpec(224, 64, 96, 96, 128, "avg", 128),  # 576
    "4b": BNInceptionSpec(192, 96, 128, 96, 128, "avg", 128),  # 576
    "4c": BNInceptionSpec(160, 128, 160, 128, 160, "avg", 128),  # 608 (table: 576)
    "4d": BNInceptionSpec(96, 128, 192, 160, 192, "avg", 128),  # 608 (table: 576)
    "4e": BNInceptionSpec(0, 128, 192, 192, 256, "max", 0, stride=2),  # 7x7 -> 1056 (table: 1024)
    "5a": BNInceptionSpec(352, 192, 320, 160, 224, "avg", 128),  # 1024
    "5b": BNInceptionSpec(352, 192, 320, 192, 224, "max", 128),  # 1024
}


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias: the BN's shift replaces it) -> BatchNorm2d -> ReLU: the BN paper's unit,
    "we add the BN transform immediately before the nonlinearity" (sec. 3.2). PyTorch's BN eps
    (1e-5); the paper gives none."""

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("conv", nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)),
                    ("bn", nn.BatchNorm2d(out_channels)),
                    ("relu", nn.ReLU(inplace=True)),
                ]
            )
        )


class BNInceptionModule(nn.Module):
    """A BN-Inception module: 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | pool [-> 1x1 projection].

    In the stride-2 modules (3c, 4e) the last 3x3 of both 3x3 branches and a 3x3/2 max pool
    stride, and the pool's output passes through unprojected (Figure 5: "max + pass through").
    Every conv and the strided pool pad by 1, so all four branches give ceil(H / 2) rows at any H.
    """

    def __init__(self, in_channels: int, spec: BNInceptionSpec) -> None:
        super().__init__()
        s = spec.stride
        self.branch1 = ConvBNReLU(in_channels, spec.c1x1, kernel_size=1) if spec.c1x1 else None
        self.branch2 = nn.Sequential(
            ConvBNReLU(in_channels, spec.c3x3_reduce, kernel_size=1),
            ConvBNReLU(spec.c3x3_reduce, spec.c3x3, kernel_size=3, stride=s, padding=1),
        )
        self.branch3 = nn.Sequential(
            ConvBNReLU(in_channels, spec.double_3x3_reduce, kernel_size=1),
            ConvBNReLU(spec.double_3x3_reduce, spec.double_3x3, kernel_size=3, padding=1),
            ConvBNReLU(spec.double_3x3, spec.double_3x3, kernel_size=3, stride=s, padding=1),
        )
        pool: nn.Module = (
            nn.AvgPool2d(3, stride=s, padding=1)
            if spec.pool == "avg"
            else nn.MaxPool2d(3, stride=s, padding=1)
        )
        self.branch4 = (
            nn.Sequential(pool, ConvBNReLU(in_channels, spec.pool_proj, kernel_size=1))
            if spec.pool_proj
            else nn.Sequential(pool)
        )

    def forward(self, x: Tensor) -> Tensor:
        branches = [self.branch2(x), self.branch3(x), self.branch4(x)]
        if self.branch1 is not None:
            branches.insert(0, self.branch1(x))
        return torch.cat(branches, 1)


class BNInception(ClassifierModel):
    """BN-Inception (Ioffe & Szegedy 2015, Appendix, Figure 5): GoogLeNet rebuilt around BN.

    Stem: conv1 7x7/2 64 -> max pool 3x3/2 -> conv2 1x1 64 -> conv3 3x3 192 -> max pool 3x3/2
    (every conv conv-BN-ReLU). Then the ten modules of ``BN_INCEPTION_SPECS``; 3c and 4e halve
    the grid (no pools between stages). Global average pool (Figure 5: 7x7/1 at 224; adaptive here,
    the same at 224), [dropout], linear. No auxiliary classifiers: the paper lists none. Dropout
    defaults to 0: the BN-Inception of the paper's experiments removed it (sec. 4.2.1).
    Initialisation: PyTorch's defaults (the paper gives none).
    """

    # 7 -> conv1 4 -> maxpool1 2 -> maxpool2 1 -> 3c 1 -> 4e 1; 6 -> conv1 3 -> maxpool1 1 and
    # maxpool2's 3x3 window finds no room on the 1x1 map.
    MIN_INPUT_SIZE = (7, 7)

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = self.MIN_INPUT_SIZE
        self.conv1 = ConvBNReLU(in_channels, 64, kernel_size=7, stride=2, padding=3)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        self.conv2 = ConvBNReLU(64, 64, kernel_size=1)  # Figure 5: "#3x3 reduce" 64
        self.conv3 = ConvBNReLU(64, STEM_CHANNELS, kernel_size=3, padding=1)
        self.maxpool2 = nn.MaxPool2d(3, stride=2, ceil_mode=True)
        channels = STEM_CHANNELS
        self.inception_names: list[str] = []
        for key, spec in BN_INCEPTION_SPECS.items():
            self.add_module(f"inception{key}", BNInceptionModule(channels, spec))
            self.inception_names.append(f"inception{key}")
            channels = spec.out_channels(channels)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(channels, num_classes)
        self.feature_info = [
            FeatureInfo("conv1", 64, 2),
            FeatureInfo("conv3", STEM_CHANNELS, 4),
            FeatureInfo("inception3b", 320, 8),
            FeatureInfo("inception4d", 608, 16),
            FeatureInfo("inception5b", channels, 32),
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        x = self.maxpool1(self.conv1(x))
        x = self.maxpool2(self.conv3(self.conv2(x)))
        for name in self.inception_names:
            x = getattr(self, name)(x)
        return x

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = self.dropout(torch.flatten(self.avgpool(x), 1))
        return x if pre_logits else self.fc(x)

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = new_linear_like(self.fc, num_classes)
        self.num_classes = num_classes


_register = functools.partial(
    register_model, family="googlenet", paper=papers.SZEGEDY2014, input_size=(3, 224, 224)
)
# One row per variant: params and MACs with their source.
NUMBERS: dict[str, Numbers] = {
    "googlenet": numbers(
        13_004_888,
        1_498_376_192,
        (
            "torchvision 0.28: params of the default build, aux heads included "
            "(torchvision_state_dicts.json; 6,624,904 without them, torchvision docs); "
            "MACs 1.498G published (torchvision weights metadata, inference forward: "
            "aux heads idle)"
        ),
    ),
    "bn_inception": numbers(
        11_285_224,
        2_032_600_064,
        "computed from Figure 5's branch columns (see BN_INCEPTION_SPECS); MACs an exact "
        "count at 224",
    ),
    "googlenet_original": numbers(
        13_378_280,
        1_582_671_872,
        (
            "computed (published_numbers.md): 13,378,280 params of the default build with both aux "
            "heads (6,998,552 without; paper: ~6.8M); MACs exact count at 224, inference forward "
            "with aux heads idle (1.583G; paper: ~1.5G multiply-adds)"
        ),
    ),
}


@_register(**NUMBERS["googlenet"], min_size=GoogLeNet.MIN_INPUT_SIZE, torchvision=True)
def googlenet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool = True,
    transform_input: bool = False,
    init_weights: bool | None = None,
    blocks: Sequence[Callable[..., nn.Module]] | None = None,
    dropout: float = 0.2,
    dropout_aux: float = 0.7,
) -> GoogLeNet:
    """GoogLeNet (Inception v1), torchvision's BatchNorm variant with two aux heads.

    Szegedy et al. 2014, "Going Deeper with Convolutions", sec. 5 / Table 1, in the layout of
    torchvision's ``googlenet()`` (same arguments and defaults, same state_dict): BN in every conv,
    3x3 kernels in the "5x5" branch, aux heads used in training only. ``transform_input`` maps
    ImageNet-normalised input to the [-1, 1] range the ported TensorFlow weights expect.
    """
    return GoogLeNet(
        num_classes=num_classes,
        aux_logits=aux_logits,
        transform_input=transform_input,
        init_weights=init_weights,
        blocks=blocks,
        dropout=dropout,
        dropout_aux=dropout_aux,
        in_channels=in_channels,
    )


@_register(**NUMBERS["googlenet_original"], min_size=GoogLeNetOriginal.MIN_INPUT_SIZE)
def googlenet_original(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool = True,
    dropout: float = 0.4,
    dropout_aux: float = 0.7,
) -> GoogLeNetOriginal:
    """GoogLeNet as in the paper: 5x5 branches, LRN, no BatchNorm, aux heads (sec. 5).

    Szegedy et al. 2014, "Going Deeper with Convolutions", sec. 5, Table 1 and Figure 3. The aux
    heads are built by default, as the network was trained with them (their loss weight 0.3 is
    ``model.aux_loss_weight``); ``aux_logits=False`` gives the 6,998,552-parameter inference net.
    """
    return GoogLeNetOriginal(
        num_classes=num_classes,
        aux_logits=aux_logits,
        dropout=dropout,
        dropout_aux=dropout_aux,
        in_channels=in_channels,
    )


@_register(**NUMBERS["bn_inception"], paper=papers.IOFFE2015, min_size=BNInception.MIN_INPUT_SIZE)
def bn_inception(
    *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.0
) -> BNInception:
    """BN-Inception (Inception v2): GoogLeNet with batch norm and each 5x5 as two 3x3.

    Ioffe & Szegedy (2015), "Batch Normalization: Accelerating Deep Network Training by Reducing
    Internal Covariate Shift", sec. 4.2 and the Appendix (Figure 5). No aux heads; dropout off
    by default, as in the paper's accelerated BN-Inception (sec. 4.2.1).
    """
    return BNInception(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
