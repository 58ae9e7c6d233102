"""VGG (Simonyan & Zisserman 2014): configurations A-E of the paper's Table 1, as torchvision builds
them (``vgg11`` ... ``vgg19`` and the ``_bn`` variants), plus configuration C (``vgg16_c``), the one
with 1x1 convolutions, which torchvision leaves out.

Every model is the same code: a stack of 3x3 convolutions (stride 1, padding 1, sec. 2.1) and 2x2/2
max-pools read from ``CONFIGS``, an adaptive 7x7 average pool (torchvision's, so inputs from 32x32
up work), and the three fully connected layers of sec. 2.1.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like, sequential_head
from cnnzoo.models.papers import SIMONYAN2014
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "CONFIGS",
    "VGG",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16",
    "vgg16_bn",
    "vgg16_c",
    "vgg19",
    "vgg19_bn",
]

# One entry of a configuration: an int is "conv3-<width>", (width, 1) is "conv1-<width>", and
# "M" is "maxpool" (2x2, stride 2, sec. 2.1).
LayerSpec = int | tuple[int, Literal[1]] | Literal["M"]

# The paper's Table 1, column by column (A-LRN left out), one stage per line.
# Weight layers = convs + the 3 fully connected layers.
# fmt: off
CONFIGS: dict[str, list[LayerSpec]] = {
    "A": [  # 11 weight layers
        64, "M",
        128, "M",
        256, 256, "M",
        512, 512, "M",
        512, 512, "M",
    ],
    "B": [  # 13 weight layers
        64, 64, "M",
        128, 128, "M",
        256, 256, "M",
        512, 512, "M",
        512, 512, "M",
    ],
    "C": [  # 16 weight layers: a 1x1 conv closes each of the last three stages
        64, 64, "M",
        128, 128, "M",
        256, 256, (256, 1), "M",
        512, 512, (512, 1), "M",
        512, 512, (512, 1), "M",
    ],
    "D": [  # 16 weight layers
        64, 64, "M",
        128, 128, "M",
        256, 256, 256, "M",
        512, 512, 512, "M",
        512, 512, 512, "M",
    ],
    "E": [  # 19 weight layers
        64, 64, "M",
        128, 128, "M",
        256, 256, 256, 256, "M",
        512, 512, 512, 512, "M",
        512, 512, 512, 512, "M",
    ],
}
# fmt: on


def _conv_spec(spec: int | tuple[int, Literal[1]]) -> tuple[int, int]:
    """(out_channels, kernel size) of a conv entry."""
    return (spec, 3) if isinstance(spec, int) else (spec[0], spec[1])


class VGG(ClassifierModel):
    """A VGG network from one column of the paper's Table 1, with torchvision's module layout.

    ``features`` is a flat ``nn.Sequential`` (conv, [BatchNorm,] ReLU, ..., MaxPool), so its
    indices (``features.N``) match torchvision's; ``classifier`` is fc6, ReLU, Dropout, fc7, ReLU,
    Dropout, fc8 (``classifier.0/3/6``).
    """

    def __init__(
        self,
        config: Sequence[LayerSpec],
        *,
        batch_norm: bool = False,
        num_classes: int = 1000,
        in_channels: int = 3,
        init_weights: bool = True,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self._torchvision_init = init_weights

        layers: list[nn.Module] = []
        self.feature_info = []
        channels, reduction = in_channels, 1
        for spec in config:
            if spec == "M":
                # A stage is one resolution; its output is the map before the pool. The final
                # pool is listed too: it is forward_features' output.
                self.feature_info.append(
                    FeatureInfo(f"features.{len(layers) - 1}", channels, reduction)
                )
                layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                reduction *= 2
                continue
            out_channels, kernel = _conv_spec(spec)
            # torchvision keeps the conv bias even when BatchNorm follows.
            layers.append(nn.Conv2d(channels, out_channels, kernel, padding=kernel // 2))
            if batch_norm:
                layers.append(nn.BatchNorm2d(out_channels))
            layers.append(nn.ReLU(inplace=True))
            channels = out_channels
        self.feature_info.append(FeatureInfo(f"features.{len(layers) - 1}", channels, reduction))
        self.features = nn.Sequential(*layers)
        # Each 2x2/2 pool floors, so 2**pools is the smallest side with a non-empty last map.
        side = 2 ** sum(1 for spec in config if spec == "M")
        self.min_input_size = (side, side)

        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(channels * 7 * 7, 4096),  # 0: fc6
            nn.ReLU(inplace=True),  # 1
            nn.Dropout(p=dropout),  # 2
            nn.Linear(4096, 4096),  # 3: fc7
            nn.ReLU(inplace=True),  # 4
            nn.Dropout(p=dropout),  # 5
            nn.Linear(4096, num_classes),  # 6: fc8
        )
        if init_weights:
            for module in self.modules():
                _init_module(module)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return sequential_head(self.classifier, x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        # torchvision's init if the model was built with it, else PyTorch's default.
        init = _init_module if self._torchvision_init else None
        self.classifier[-1] = new_linear_like(self.get_classifier(), num_classes, init)
        self.num_classes = num_classes


def _init_module(module: nn.Module) -> None:
    """torchvision's VGG initialisation (not the paper's, which pre-trained A to start the deeper
    nets, sec. 3.1): He-normal (fan_out) convs, N(0, 0.01) linears, zero biases, BN at identity."""
    if isinstance(module, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Linear):
        nn.init.normal_(module.weight, mean=0.0, std=0.01)
        nn.init.zeros_(module.bias)


def _vgg(
    config: str,
    batch_norm: bool,
    num_classes: int,
    in_channels: int,
    init_weights: bool,
    dropout: float,
) -> VGG:
    return VGG(
        CONFIGS[config],
        batch_norm=batch_norm,
        num_classes=num_classes,
        in_channels=in_channels,
        init_weights=init_weights,
        dropout=dropout,
    )


# Every VGG: 224x224 RGB, and five 2x2/2 pools, so 32x32 is the smallest input (VGG.__init__
# computes the same from the config; the tests compare the two).
_register = functools.partial(
    register_model, family="vgg", paper=SIMONYAN2014, input_size=(3, 224, 224), min_size=(32, 32)
)
# torchvision 0.28 documents params and "GFLOPS" (= MACs) for each; _bn adds only BN params.
# One row per variant (tests/data/published_numbers.md has the sources).
NUMBERS: dict[str, Numbers] = {
    "vgg11": numbers(
        132_863_336, 7_609_090_048, "torchvision 0.28 docs: 132,863,336 params, 7.609 GFLOPS"
    ),
    "vgg11_bn": numbers(
        132_868_840, 7_609_090_048, "torchvision 0.28 docs: 132,868,840 params, 7.609 GFLOPS"
    ),
    "vgg13": numbers(
        133_047_848, 11_308_466_176, "torchvision 0.28 docs: 133,047,848 params, 11.308 GFLOPS"
    ),
    "vgg13_bn": numbers(
        133_053_736, 11_308_466_176, "torchvision 0.28 docs: 133,053,736 params, 11.308 GFLOPS"
    ),
    "vgg16": numbers(
        138_357_544, 15_470_264_320, "torchvision 0.28 docs: 138,357,544 params, 15.470 GFLOPS"
    ),
    "vgg16_bn": numbers(
        138_365_992, 15_470_264_320, "torchvision 0.28 docs: 138,365,992 params, 15.470 GFLOPS"
    ),
    "vgg19": numbers(
        143_667_240, 19_632_062_464, "torchvision 0.28 docs: 143,667,240 params, 19.632 GFLOPS"
    ),
    "vgg19_bn": numbers(
        143_678_248, 19_632_062_464, "torchvision 0.28 docs: 143,678,248 params, 19.632 GFLOPS"
    ),
    "vgg16_c": numbers(
        133_638_952,
        11_770_888_192,
        "computed: params as in published_numbers.md (paper Table 2: 134M); "
        "MACs an exact count at 224x224",
    ),
}


@_register(**NUMBERS["vgg11"], torchvision=True)
def vgg11(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-11 (configuration A), as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column A. State_dict keys,
    initialisation and forward equal torchvision's ``vgg11``.
    """
    return _vgg("A", False, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg11_bn"], torchvision=True)
def vgg11_bn(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-11 (configuration A) with BatchNorm after every conv, as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column A. State_dict keys,
    initialisation and forward equal torchvision's ``vgg11_bn``.
    """
    return _vgg("A", True, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg13"], torchvision=True)
def vgg13(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-13 (configuration B), as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column B. State_dict keys,
    initialisation and forward equal torchvision's ``vgg13``.
    """
    return _vgg("B", False, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg13_bn"], torchvision=True)
def vgg13_bn(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-13 (configuration B) with BatchNorm after every conv, as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column B. State_dict keys,
    initialisation and forward equal torchvision's ``vgg13_bn``.
    """
    return _vgg("B", True, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg16"], torchvision=True)
def vgg16(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-16 (configuration D), as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column D. State_dict keys,
    initialisation and forward equal torchvision's ``vgg16``.
    """
    return _vgg("D", False, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg16_bn"], torchvision=True)
def vgg16_bn(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-16 (configuration D) with BatchNorm after every conv, as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column D. State_dict keys,
    initialisation and forward equal torchvision's ``vgg16_bn``.
    """
    return _vgg("D", True, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg19"], torchvision=True)
def vgg19(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-19 (configuration E), as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column E. State_dict keys,
    initialisation and forward equal torchvision's ``vgg19``.
    """
    return _vgg("E", False, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg19_bn"], torchvision=True)
def vgg19_bn(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-19 (configuration E) with BatchNorm after every conv, as in torchvision.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column E. State_dict keys,
    initialisation and forward equal torchvision's ``vgg19_bn``.
    """
    return _vgg("E", True, num_classes, in_channels, init_weights, dropout)


@_register(**NUMBERS["vgg16_c"])
def vgg16_c(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    init_weights: bool = True,
    dropout: float = 0.5,
) -> VGG:
    """VGG-16 configuration C: a 1x1 conv closes each of the last three stages.

    Simonyan & Zisserman (2014), arXiv:1409.1556, Table 1 column C (1x1 convs: "a way to
    increase the non-linearity of the decision function", sec. 2.3). Not in torchvision; built
    and initialised like the torchvision VGGs, keys ``features.N`` / ``classifier.0/3/6``.
    """
    return _vgg("C", False, num_classes, in_channels, init_weights, dropout)
