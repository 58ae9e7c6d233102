"""Inception v3 (Szegedy, Vanhoucke, Ioffe, Shlens, Wojna 2015, arXiv:1512.00567), as torchvision.

``inception_v3`` is torchvision's ``Inception3``, state_dict for state_dict. Like torchvision it
follows the TensorFlow release whose weights it ported, which differs from the paper's Table 1 in
places (a 1x1 80 + 3x3 192 pair and a max pool where Table 1 lists 3x3 convs; a 5x5 branch kept
beside the factorised 3x3-3x3 branch in the 35x35 modules). Module names are TensorFlow's
(``Conv2d_1a_3x3`` ... ``Mixed_7c``, ``AuxLogits``): they are the state_dict contract.

Blocks and the paper's figures: InceptionA = the 35x35 modules (Figure 5, sec. 3.1: 5x5 factored
into two 3x3), InceptionB and InceptionD = grid-size reductions 35->17 and 17->8 (Figure 10, sec.
5), InceptionC = the 17x17 modules with 1x7 / 7x1 factorisation (Figure 6, sec. 3.2, n = 7),
InceptionE = the 8x8 modules with expanded filter banks (Figure 7), InceptionAux = the auxiliary
classifier on the last 17x17 map, with BatchNorm (sec. 4 and 7, Figure 8).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo.layers import BasicConv2d, imagenet_to_unit_range
from cnnzoo.models import papers
from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "AUX_MIN_INPUT_SIZE",
    "Inception3",
    "InceptionA",
    "InceptionAux",
    "InceptionB",
    "InceptionC",
    "InceptionD",
    "InceptionE",
    "InceptionOutputs",
    "inception_v3",
]

# torchvision's init: every conv and linear weight truncated-normal with std 0.1 (cut at +-2,
# absolute), unless the module carries a ``stddev`` attribute; AuxLogits.fc carries 0.001.
# Trap: torchvision also tags AuxLogits.conv1 with 0.01, but on the BasicConv2d wrapper, and its
# init loop reads the tag only from nn.Conv2d / nn.Linear modules, so the conv inside gets 0.1.
# We reproduce what torchvision does, not what the tag says.
_DEFAULT_STD = 0.1
_AUX_FC_STD = 0.001

# In training mode the aux head runs on Mixed_6e: its 5x5/3 average pool and 5x5 conv need a 17x17
# map (17 -> 5 -> 1), which only inputs of at least 299x299 give (298 -> Mixed_6e 16 -> 4 -> none).
AUX_MIN_INPUT_SIZE = (299, 299)
# 75 -> 37 -> 35 -> 35 -> pool 17 -> 17 -> 15 -> pool 7 -> Mixed_6a 3 -> Mixed_7a 1; 74 leaves
# Mixed_7a a 2x2 map, too small for its 3x3/2 convs and pool. torchvision's weights metadata also
# says min_size (75, 75). The aux head needs 299 (training only).
MIN_INPUT_SIZE = (75, 75)


class InceptionOutputs(NamedTuple):
    """Training-mode output when the aux head is built: torchvision's field names and order."""

    logits: Tensor
    aux_logits: Tensor | None


def _cat(branches: list[Tensor]) -> Tensor:
    return torch.cat(branches, 1)


class InceptionA(nn.Module):
    """35x35 module (Mixed_5b-5d): 1x1 64 | 1x1 48 → 5x5 64 | 1x1 64 → 3x3 96 → 3x3 96 |
    3x3/1 average pool → 1x1 ``pool_features``. Output 224 + pool_features channels."""

    def __init__(
        self,
        in_channels: int,
        pool_features: int,
        conv_block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.branch1x1 = conv(in_channels, 64, kernel_size=1)
        self.branch5x5_1 = conv(in_channels, 48, kernel_size=1)
        self.branch5x5_2 = conv(48, 64, kernel_size=5, padding=2)
        self.branch3x3dbl_1 = conv(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, kernel_size=3, padding=1)
        self.branch_pool = conv(in_channels, pool_features, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b5x5 = self.branch5x5_2(self.branch5x5_1(x))
        b3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return _cat([self.branch1x1(x), b5x5, b3x3dbl, pool])


class InceptionB(nn.Module):
    """Grid reduction 35 → 17 (Mixed_6a): 3x3/2 384 | 1x1 64 → 3x3 96 → 3x3/2 96 | 3x3/2 max
    pool, side by side rather than pool-then-conv (sec. 5: cheap and no representational
    bottleneck). Output 480 + in_channels."""

    def __init__(
        self, in_channels: int, conv_block: Callable[..., nn.Module] | None = None
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.branch3x3 = conv(in_channels, 384, kernel_size=3, stride=2)
        self.branch3x3dbl_1 = conv(in_channels, 64, kernel_size=1)
        self.branch3x3dbl_2 = conv(64, 96, kernel_size=3, padding=1)
        self.branch3x3dbl_3 = conv(96, 96, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return _cat([self.branch3x3(x), b3x3dbl, pool])


class InceptionC(nn.Module):
    """17x17 module (Mixed_6b-6e), 7x7 factorised into 1x7 and 7x1 (sec. 3.2, Figure 6):
    1x1 192 | 1x1 c7 → 1x7 c7 → 7x1 192 | 1x1 c7 → 7x1 → 1x7 → 7x1 → 1x7 (192) |
    3x3/1 average pool → 1x1 192. Output 768 channels."""

    def __init__(
        self,
        in_channels: int,
        channels_7x7: int,
        conv_block: Callable[..., nn.Module] | None = None,
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        c7 = channels_7x7
        self.branch1x1 = conv(in_channels, 192, kernel_size=1)
        self.branch7x7_1 = conv(in_channels, c7, kernel_size=1)
        self.branch7x7_2 = conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7_3 = conv(c7, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_1 = conv(in_channels, c7, kernel_size=1)
        self.branch7x7dbl_2 = conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_3 = conv(c7, c7, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7dbl_4 = conv(c7, c7, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7dbl_5 = conv(c7, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch_pool = conv(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        b7x7dbl = self.branch7x7dbl_1(x)
        for layer in (
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            b7x7dbl = layer(b7x7dbl)
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return _cat([self.branch1x1(x), b7x7, b7x7dbl, pool])


class InceptionD(nn.Module):
    """Grid reduction 17 → 8 (Mixed_7a): 1x1 192 → 3x3/2 320 | 1x1 192 → 1x7 → 7x1 → 3x3/2 192 |
    3x3/2 max pool. Output 512 + in_channels."""

    def __init__(
        self, in_channels: int, conv_block: Callable[..., nn.Module] | None = None
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.branch3x3_1 = conv(in_channels, 192, kernel_size=1)
        self.branch3x3_2 = conv(192, 320, kernel_size=3, stride=2)
        self.branch7x7x3_1 = conv(in_channels, 192, kernel_size=1)
        self.branch7x7x3_2 = conv(192, 192, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = conv(192, 192, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = conv(192, 192, kernel_size=3, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        b3x3 = self.branch3x3_2(self.branch3x3_1(x))
        b7x7x3 = self.branch7x7x3_1(x)
        for layer in (self.branch7x7x3_2, self.branch7x7x3_3, self.branch7x7x3_4):
            b7x7x3 = layer(b7x7x3)
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return _cat([b3x3, b7x7x3, pool])


class InceptionE(nn.Module):
    """8x8 module (Mixed_7b, 7c) with expanded filter banks (Figure 7): 1x1 320 |
    1x1 384 → [1x3 384, 3x1 384] | 1x1 448 → 3x3 384 → [1x3 384, 3x1 384] |
    3x3/1 average pool → 1x1 192. The bracketed pairs read the same input and are concatenated.
    Output 2048 channels."""

    def __init__(
        self, in_channels: int, conv_block: Callable[..., nn.Module] | None = None
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.branch1x1 = conv(in_channels, 320, kernel_size=1)
        self.branch3x3_1 = conv(in_channels, 384, kernel_size=1)
        self.branch3x3_2a = conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3_2b = conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch3x3dbl_1 = conv(in_channels, 448, kernel_size=1)
        self.branch3x3dbl_2 = conv(448, 384, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = conv(384, 384, kernel_size=(1, 3), padding=(0, 1))
        self.branch3x3dbl_3b = conv(384, 384, kernel_size=(3, 1), padding=(1, 0))
        self.branch_pool = conv(in_channels, 192, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        b3x3 = self.branch3x3_1(x)
        b3x3 = _cat([self.branch3x3_2a(b3x3), self.branch3x3_2b(b3x3)])
        b3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        b3x3dbl = _cat([self.branch3x3dbl_3a(b3x3dbl), self.branch3x3dbl_3b(b3x3dbl)])
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return _cat([self.branch1x1(x), b3x3, b3x3dbl, pool])


class InceptionAux(nn.Module):
    """Auxiliary classifier on Mixed_6e (Figure 8): 5x5/3 average pool → 1x1 128 → 5x5 768 (both
    conv-BN-ReLU: the paper's "BN-auxiliary", sec. 7) → global average pool → fc."""

    def __init__(
        self, in_channels: int, num_classes: int, conv_block: Callable[..., nn.Module] | None = None
    ) -> None:
        super().__init__()
        conv = conv_block or BasicConv2d
        self.conv0 = conv(in_channels, 128, kernel_size=1)
        self.conv1 = conv(128, 768, kernel_size=5)
        self.fc = nn.Linear(768, num_classes)
        self.fc.stddev = _AUX_FC_STD  # type: ignore[assignment]  # read by Inception3's init

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv1(self.conv0(F.avg_pool2d(x, kernel_size=5, stride=3)))
        logits: Tensor = self.fc(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))
        return logits


class Inception3(ClassifierModel):
    """torchvision's Inception3: its submodule names, constructor, init and forward.

    Stem of five conv-BN(eps 0.001)-ReLU layers and two 3x3/2 max pools (299 → 35x35x192), three
    InceptionA, InceptionB, four InceptionC (with the aux head on the last), InceptionD, two
    InceptionE (8x8x2048), global average pool, dropout, fc. Unpadded convs and pools ("valid",
    as in TensorFlow) make the map sizes 149, 147, 73, 71, 35, 17, 8 at 299. ``in_channels``
    changes Conv2d_1a_3x3 only. ``inception_blocks`` = [conv, A, B, C, D, E, aux] block types.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        aux_logits: bool = True,
        transform_input: bool = False,
        inception_blocks: Sequence[Callable[..., nn.Module]] | None = None,
        init_weights: bool | None = None,
        dropout: float = 0.5,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if inception_blocks is None:
            inception_blocks = [
                BasicConv2d,
                InceptionA,
                InceptionB,
                InceptionC,
                InceptionD,
                InceptionE,
                InceptionAux,
            ]
        if len(inception_blocks) != 7:
            raise ValueError(
                "inception_blocks must be [conv, A, B, C, D, E, aux] block types, "
                f"got {len(inception_blocks)}"
            )
        if transform_input and in_channels != 3:
            raise ValueError("transform_input re-normalises RGB input: it needs in_channels=3")
        conv_block, block_a, block_b, block_c, block_d, block_e, block_aux = inception_blocks
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.aux_logits = aux_logits
        self.transform_input = transform_input
        self.min_input_size = MIN_INPUT_SIZE

        # Construction order is torchvision's, so the same seed draws the same initial weights.
        self.Conv2d_1a_3x3 = conv_block(in_channels, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = conv_block(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv_block(32, 64, kernel_size=3, padding=1)
        self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Conv2d_3b_1x1 = conv_block(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv_block(80, 192, kernel_size=3)
        self.maxpool2 = nn.MaxPool2d(kernel_size=3, stride=2)
        self.Mixed_5b = block_a(192, pool_features=32)  # 35x35, 256 channels out
        self.Mixed_5c = block_a(256, pool_features=64)  # 288
        self.Mixed_5d = block_a(288, pool_features=64)  # 288
        self.Mixed_6a = block_b(288)  # 17x17, 768
        self.Mixed_6b = block_c(768, channels_7x7=128)
        self.Mixed_6c = block_c(768, channels_7x7=160)
        self.Mixed_6d = block_c(768, channels_7x7=160)
        self.Mixed_6e = block_c(768, channels_7x7=192)
        self.AuxLogits: nn.Module | None = block_aux(768, num_classes) if aux_logits else None
        self.Mixed_7a = block_d(768)  # 8x8, 1280
        self.Mixed_7b = block_e(1280)  # 2048
        self.Mixed_7c = block_e(2048)  # 2048
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(2048, num_classes)
        self.feature_info = [
            FeatureInfo("Conv2d_2b_3x3", 64, 2),
            FeatureInfo("Conv2d_4a_3x3", 192, 4),
            FeatureInfo("Mixed_5d", 288, 8),
            FeatureInfo("Mixed_6e", 768, 16),
            FeatureInfo("Mixed_7c", 2048, 32),
        ]
        # torchvision: None means True (it warns that the default may change; we do not).
        if init_weights is None or init_weights:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    std = float(getattr(m, "stddev", _DEFAULT_STD))
                    nn.init.trunc_normal_(m.weight, mean=0.0, std=std, a=-2, b=2)
                elif isinstance(m, nn.BatchNorm2d):
                    nn.init.constant_(m.weight, 1)
                    nn.init.constant_(m.bias, 0)

    def _trunk(self, x: Tensor, with_aux: bool) -> tuple[Tensor, Tensor | None]:
        """Features of Mixed_7c, and the aux logits (head on Mixed_6e) if ``with_aux``."""
        if self.transform_input:
            x = imagenet_to_unit_range(x)
        for layer in (
            self.Conv2d_1a_3x3,
            self.Conv2d_2a_3x3,
            self.Conv2d_2b_3x3,
            self.maxpool1,
            self.Conv2d_3b_1x1,
            self.Conv2d_4a_3x3,
            self.maxpool2,
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
        ):
            x = layer(x)
        aux = self.AuxLogits(x) if with_aux and self.AuxLogits is not None else None
        x = self.Mixed_7a(x)
        x = self.Mixed_7b(x)
        x = self.Mixed_7c(x)
        return x, aux

    def forward_features(self, x: Tensor) -> Tensor:
        return self._trunk(x, with_aux=False)[0]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.dropout(self.avgpool(x)), 1)
        return x if pre_logits else self.fc(x)

    # Training mode with the aux head returns a namedtuple, as torchvision's eager mode does.
    def forward(self, x: Tensor) -> Tensor | InceptionOutputs:  # type: ignore[override]
        self.check_input(x)
        with_aux = self.training and self.aux_logits
        if with_aux:
            self._check_aux_input(x)
        features, aux = self._trunk(x, with_aux)
        logits = self.forward_head(features)
        return InceptionOutputs(logits, aux) if with_aux else logits

    def _check_aux_input(self, x: Tensor) -> None:
        min_h, min_w = AUX_MIN_INPUT_SIZE
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h < min_h or w < min_w:
            name = getattr(self, "model_name", type(self).__name__)
            raise ValueError(
                f"{name} in training mode runs its aux head on Mixed_6e, which needs an input of "
                f"at least {min_h}x{min_w}, got {h}x{w}; build it with aux_logits=False "
                f"to train on smaller inputs (down to {self.min_input_size[0]}x"
                f"{self.min_input_size[1]})"
            )

    def get_classifier(self) -> nn.Module:
        return self.fc

    def reset_classifier(self, num_classes: int) -> None:
        """New ``fc`` for ``num_classes``, and a new final layer in the aux head to match."""
        self.fc = new_linear_like(self.fc, num_classes, _trunc_normal_init(_DEFAULT_STD))
        if self.AuxLogits is not None:
            assert isinstance(self.AuxLogits.fc, nn.Linear)
            self.AuxLogits.fc = new_linear_like(
                self.AuxLogits.fc, num_classes, _trunc_normal_init(_AUX_FC_STD)
            )
            self.AuxLogits.fc.stddev = _AUX_FC_STD  # type: ignore[assignment]
        self.num_classes = num_classes


def _trunc_normal_init(std: float) -> Callable[[nn.Linear], None]:
    """torchvision's weight init for a new classifier: truncated normal with ``std``."""

    def init(layer: nn.Linear) -> None:
        nn.init.trunc_normal_(layer.weight, mean=0.0, std=std, a=-2, b=2)

    return init


_register = functools.partial(
    register_model,
    family="inception",
    paper=papers.SZEGEDY2015,
    input_size=(3, 299, 299),
    min_size=MIN_INPUT_SIZE,
    torchvision=True,
)
# One row per variant: params and MACs with their source.
NUMBERS: dict[str, Numbers] = {
    "inception_v3": numbers(
        27_161_264,
        5_713_216_096,
        (
            "torchvision 0.28: params of the default build, aux head included "
            "(torchvision_state_dicts.json; 23,834,568 without it, torchvision docs); "
            "MACs 5.713G published (torchvision weights metadata, inference forward: aux head idle)"
        ),
    ),
}


@_register(**NUMBERS["inception_v3"])
def inception_v3(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    aux_logits: bool = True,
    transform_input: bool = False,
    inception_blocks: Sequence[Callable[..., nn.Module]] | None = None,
    init_weights: bool | None = None,
    dropout: float = 0.5,
) -> Inception3:
    """Inception v3, torchvision's TensorFlow-layout model with its aux head.

    Szegedy et al. 2015, "Rethinking the Inception Architecture for Computer Vision", as
    torchvision's ``inception_v3()`` builds it (same arguments and defaults, same state_dict):
    factorised convolutions (sec. 3), efficient grid reduction (sec. 5), a BN aux classifier used
    in training only (sec. 4, 7). Input 299x299; ``transform_input`` maps ImageNet-normalised input
    to the [-1, 1] range the ported TensorFlow weights expect.
    """
    return Inception3(
        num_classes=num_classes,
        aux_logits=aux_logits,
        transform_input=transform_input,
        inception_blocks=inception_blocks,
        init_weights=init_weights,
        dropout=dropout,
        in_channels=in_channels,
    )
