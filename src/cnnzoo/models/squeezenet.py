"""SqueezeNet 1.0 and 1.1 (Iandola et al. 2016), torchvision-compatible.

A Fire module squeezes its input with 1x1 convs, then expands it with parallel 1x1 and 3x3 convs
whose outputs are concatenated (paper sec. 3.2). The network ends without a fully connected layer:
a 1x1 conv to ``num_classes`` maps, ReLU, global average pool (as NiN does). SqueezeNet 1.1 (from
the authors' repository, not the paper) starts with a 3x3/2 conv of 64 filters and pools earlier:
same accuracy for 2.4x less computation.

Same module names, state_dict order and shapes, constructor arguments, initialisation and
function as torchvision, so its checkpoints load with ``strict=True``.
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import torch
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo
from cnnzoo.registry import Paper, register_model

__all__ = ["FIRE_MODULES", "IANDOLA2016", "SQUEEZENETS", "Fire", "FireSpec", "SqueezeNet"]

IANDOLA2016 = Paper(
    title="SqueezeNet: AlexNet-level accuracy with 50x fewer parameters and <0.5MB model size",
    authors="Iandola, Han, Moskewicz, Ashraf, Dally, Keutzer",
    year=2016,
    link="https://arxiv.org/abs/1602.07360",
)


class FireSpec(NamedTuple):
    """One Fire module (paper Table 1): s1x1, e1x1, e3x3 filters."""

    squeeze: int
    expand1x1: int
    expand3x3: int


class Fire(nn.Module):
    """squeeze 1x1 + ReLU, then concat(expand 1x1 + ReLU, expand 3x3 (pad 1) + ReLU)."""

    def __init__(
        self, inplanes: int, squeeze_planes: int, expand1x1_planes: int, expand3x3_planes: int
    ) -> None:
        super().__init__()
        self.inplanes = inplanes
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            [
                self.expand1x1_activation(self.expand1x1(x)),
                self.expand3x3_activation(self.expand3x3(x)),
            ],
            1,
        )


# Paper Table 1: the Fire modules fire2 .. fire9 (the same in 1.1; only the pools move).
FIRE_MODULES: dict[int, FireSpec] = {
    2: FireSpec(16, 64, 64),
    3: FireSpec(16, 64, 64),
    4: FireSpec(32, 128, 128),
    5: FireSpec(32, 128, 128),
    6: FireSpec(48, 192, 192),
    7: FireSpec(48, 192, 192),
    8: FireSpec(64, 256, 256),
    9: FireSpec(64, 256, 256),
}


class SqueezeNetSpec(NamedTuple):
    """The stem conv (filters, kernel; stride 2, no padding) and the layers after it: an int
    is that Fire module, "M" a 3x3/2 max pool (ceil mode, as in the Caffe models)."""

    stem_channels: int
    stem_kernel: int
    layers: tuple[int | Literal["M"], ...]


SQUEEZENETS: dict[str, SqueezeNetSpec] = {
    # Table 1: conv1 96@7x7/2, maxpool1, fire2-4, maxpool4, fire5-8, maxpool8, fire9, conv10.
    "1_0": SqueezeNetSpec(96, 7, ("M", 2, 3, 4, "M", 5, 6, 7, 8, "M", 9)),
    # The authors' v1.1 (github.com/forresti/SqueezeNet): conv1 64@3x3/2, earlier pools.
    "1_1": SqueezeNetSpec(64, 3, ("M", 2, 3, "M", 4, 5, "M", 6, 7, 8, 9)),
}


class SqueezeNet(ClassifierModel):
    """torchvision's SqueezeNet: ``features`` (conv1, pools, Fire modules) and ``classifier``
    (Dropout, conv10 1x1 to ``num_classes``, ReLU, global average pool)."""

    def __init__(
        self,
        version: str = "1_0",
        num_classes: int = 1000,
        dropout: float = 0.5,
        *,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        if version not in SQUEEZENETS:
            raise ValueError(f"Unsupported SqueezeNet version {version}: 1_0 or 1_1 expected")
        spec = SQUEEZENETS[version]
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.fixed_input_size = None

        # torchvision's conv1 has no padding: 7x7/2 (1.0) or 3x3/2 (1.1).
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, spec.stem_channels, kernel_size=spec.stem_kernel, stride=2),
            nn.ReLU(inplace=True),
        ]
        self.feature_info = []
        channels, reduction = spec.stem_channels, 2
        for layer in spec.layers:
            if layer == "M":
                self.feature_info.append(
                    FeatureInfo(f"features.{len(layers) - 1}", channels, reduction)
                )
                layers.append(nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True))
                reduction *= 2
            else:
                fire = FIRE_MODULES[layer]
                layers.append(Fire(channels, *fire))
                channels = fire.expand1x1 + fire.expand3x3
        self.feature_info.append(FeatureInfo(f"features.{len(layers) - 1}", channels, reduction))
        self.features = nn.Sequential(*layers)

        # Smallest input: walk back from a 1x1 final map. A ceil-mode 3x3/2 pool gives m outputs
        # from 2m inputs (its last window may hang one pixel over the edge), and the unpadded
        # stem conv maps 2(m - 1) + k to m. Equals torchvision's min_size: 21 (1.0), 17 (1.1).
        side = 1
        for _ in range(sum(1 for layer in spec.layers if layer == "M")):
            side *= 2
        side = 2 * (side - 1) + spec.stem_kernel
        self.min_input_size = (side, side)

        final_conv = nn.Conv2d(channels, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )
        self.num_features = channels

        # torchvision's init: N(0, 0.01) for conv10 (the classifier), He uniform elsewhere.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                _init_conv(module, final=module is final_conv)

    def forward_features(self, x: Tensor) -> Tensor:
        features: Tensor = self.features(x)
        return features

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """``pre_logits`` gives the dropped-out feature map conv10 reads: the classifier here is
        a 1x1 conv applied before the global pool, so there is no pooled vector before it."""
        if pre_logits:
            return self.classifier[0](x)  # type: ignore[no-any-return]
        # The whole classifier is called for logits, so that tables show it as one module.
        return torch.flatten(self.classifier(x), 1)

    def get_classifier(self) -> nn.Module:
        return self.classifier[1]

    def reset_classifier(self, num_classes: int) -> None:
        old = self.classifier[1]
        assert isinstance(old, nn.Conv2d)
        conv = nn.Conv2d(
            old.in_channels, num_classes, 1, device=old.weight.device, dtype=old.weight.dtype
        )
        _init_conv(conv, final=True)
        self.classifier[1] = conv
        self.num_classes = num_classes


def _init_conv(conv: nn.Conv2d, *, final: bool) -> None:
    if final:
        nn.init.normal_(conv.weight, mean=0.0, std=0.01)
    else:
        nn.init.kaiming_uniform_(conv.weight)
    if conv.bias is not None:
        nn.init.constant_(conv.bias, 0)


_META: dict[str, Any] = {
    "family": "squeezenet",
    "paper": IANDOLA2016,
    "input_size": (3, 224, 224),
    "torchvision": True,
}
# version: (min_size side, params, MACs at 224x224). params and min_size: torchvision 0.28
# weights metadata (min_size also derived in SqueezeNet.__init__ and checked one pixel below);
# MACs: computed exactly by cnnzoo.summary, rounding to torchvision's documented GFLOPS.
_NUMBERS: dict[str, tuple[int, int, int]] = {
    "1_0": (21, 1_248_424, 818_924_576),
    "1_1": (17, 1_235_496, 349_151_936),
}


def _meta(version: str, gflops: str) -> dict[str, Any]:
    side, params, macs = _NUMBERS[version]
    source = f"torchvision 0.28 weights metadata (params, {gflops} GFLOPS); MACs computed, equal"
    return {**_META, "min_size": (side, side), "params": params, "macs": macs, "source": source}


@register_model(**_meta("1_0", "0.819"))
def squeezenet1_0(
    *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.0: conv1 96@7x7/2, eight Fire modules, conv10, as in torchvision.

    Iandola et al. 2016, Table 1 (1.25M params, AlexNet-level 57.5% top-1 on ImageNet).
    """
    return SqueezeNet("1_0", num_classes, dropout, in_channels=in_channels)


@register_model(**_meta("1_1", "0.349"))
def squeezenet1_1(
    *, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5
) -> SqueezeNet:
    """SqueezeNet 1.1: conv1 64@3x3/2 and earlier pools, 2.4x less computation than 1.0.

    From the authors' SqueezeNet v1.1 release (Iandola et al. 2016 is the paper), as in
    torchvision.
    """
    return SqueezeNet("1_1", num_classes, dropout, in_channels=in_channels)
