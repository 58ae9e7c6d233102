"""AlexNet: torchvision's one-GPU variant and the two-GPU network of the 2012 paper.

``alexnet`` is torchvision's model (Krizhevsky 2014, "One weird trick", arXiv:1404.5997): one tower
of 64-192-384-256-256 filters, no LRN, an adaptive 6x6 average pool so any input from 63x63 up
works, and dropout *before* fc6 and fc7. Its state_dict equals torchvision's.

``alexnet_original`` is the network of Krizhevsky, Sutskever & Hinton (2012), sec. 3: two GPU
towers (grouped convolutions), local response normalisation, overlapping pooling, and the paper's
initialisation (sec. 5). Its classifier has fixed in-features, so it takes 227x227 inputs only.

``zfnet`` is Zeiler & Fergus (2013)'s refinement of it (sec. 4, Fig. 3): a 7x7/2 first layer
instead of 11x11/4, a stride-2 conv2, dense (single-GPU) conv3-5, and 384-384-256 filters.
"""

from __future__ import annotations

import functools
from collections import OrderedDict

import torch
from torch import Tensor, nn

from cnnzoo.models.base import ClassifierModel, FeatureInfo, new_linear_like, sequential_head
from cnnzoo.models.papers import KRIZHEVSKY2012, KRIZHEVSKY2014, ZEILER2013
from cnnzoo.registry import Numbers, numbers, register_model

__all__ = [
    "ZFNET_CONVS",
    "AlexNet",
    "AlexNetOriginal",
    "ZFNet",
    "alexnet",
    "alexnet_original",
    "zfnet",
]


# conv1 11/4 pad 2, then three 3x3/2 pools: 63 is the smallest side that leaves pool5 a 1x1 map
# (62 -> conv1 14 -> pool1 6 -> pool2 2 -> pool5 empty); torchvision's metadata also says 63.
TORCHVISION_MIN_SIZE = (63, 63)
# The paper's text says 224x224, but 11x11 filters at stride 4 need (H - 11) % 4 == 0 to give the
# 55x55 maps of Fig. 2: 227 does, 224 only with padding. fc6 fixes the input size.
PAPER_INPUT_SIZE = (227, 227)


class AlexNet(ClassifierModel):
    """torchvision's AlexNet: same submodule names and indices, same default (PyTorch) init."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, in_channels: int = 3) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = TORCHVISION_MIN_SIZE
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 64, kernel_size=11, stride=4, padding=2),  # 0
            nn.ReLU(inplace=True),  # 1
            nn.MaxPool2d(kernel_size=3, stride=2),  # 2
            nn.Conv2d(64, 192, kernel_size=5, padding=2),  # 3
            nn.ReLU(inplace=True),  # 4
            nn.MaxPool2d(kernel_size=3, stride=2),  # 5
            nn.Conv2d(192, 384, kernel_size=3, padding=1),  # 6
            nn.ReLU(inplace=True),  # 7
            nn.Conv2d(384, 256, kernel_size=3, padding=1),  # 8
            nn.ReLU(inplace=True),  # 9
            nn.Conv2d(256, 256, kernel_size=3, padding=1),  # 10
            nn.ReLU(inplace=True),  # 11
            nn.MaxPool2d(kernel_size=3, stride=2),  # 12
        )
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        # torchvision drops the *inputs* of fc6 and fc7, unlike the paper (see AlexNetOriginal).
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),  # 0
            nn.Linear(256 * 6 * 6, 4096),  # 1: fc6
            nn.ReLU(inplace=True),  # 2
            nn.Dropout(p=dropout),  # 3
            nn.Linear(4096, 4096),  # 4: fc7
            nn.ReLU(inplace=True),  # 5
            nn.Linear(4096, num_classes),  # 6: fc8
        )
        # A stage is one resolution; its output is the last map before the next downsampling.
        # The last entry is forward_features' output.
        self.feature_info = [
            FeatureInfo("features.1", 64, 4),
            FeatureInfo("features.4", 192, 8),
            FeatureInfo("features.11", 256, 16),
            FeatureInfo("features.12", 256, 32),
        ]

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return sequential_head(self.classifier, x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]

    def reset_classifier(self, num_classes: int) -> None:
        # PyTorch's default Linear init, as torchvision's AlexNet uses everywhere.
        self.classifier[-1] = new_linear_like(self.get_classifier(), num_classes)
        self.num_classes = num_classes


# The paper's layer table (sec. 3.5 and Fig. 2), both GPUs together:
# (name, out_channels, kernel, stride, padding, split across the two GPUs).
# conv3 reads the kernel maps of both GPUs; conv2, conv4 and conv5 only those of their own GPU.
_PAPER_CONVS: tuple[tuple[str, int, int, int, int, bool], ...] = (
    ("conv1", 96, 11, 4, 0, False),
    ("conv2", 256, 5, 1, 2, True),
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 384, 3, 1, 1, True),
    ("conv5", 256, 3, 1, 1, True),
)
# Sec. 3.3: k=2, n=5, alpha=1e-4, beta=0.75 with b = a / (k + alpha * sum_j a_j^2)^beta.
# Trap: PyTorch's LocalResponseNorm divides alpha by n (it averages the squares rather than
# summing them), so the paper's formula needs alpha = n * 1e-4 = 5e-4 here.
_LRN_SIZE, _LRN_ALPHA, _LRN_BETA, _LRN_K = 5, 5 * 1e-4, 0.75, 2.0
# Sec. 5: biases 1 in conv2, conv4, conv5 and the hidden fc layers (to give ReLUs positive
# inputs early on), 0 elsewhere.
_BIAS_ONE = frozenset({"conv2", "conv4", "conv5", "fc6", "fc7"})


class AlexNetOriginal(ClassifierModel):
    """The 2012 paper's AlexNet (sec. 3): grouped convs for the two GPUs, LRN, overlapping pools.

    Layer order per sec. 3.5: conv -> ReLU (every layer), LRN after the ReLUs of conv1 and conv2
    (sec. 3.3: "after applying the ReLU nonlinearity"), 3x3/2 max-pool after both LRNs and after
    conv5 (sec. 3.4). Dropout 0.5 on the outputs of fc6 and fc7 (sec. 4.2).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        in_channels: int = 3,
        groups: int = 2,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = PAPER_INPUT_SIZE
        self.fixed_input_size = PAPER_INPUT_SIZE

        layers: OrderedDict[str, nn.Module] = OrderedDict()
        channels = in_channels
        for name, out_channels, kernel, stride, padding, split in _PAPER_CONVS:
            index = name[-1]
            layers[name] = nn.Conv2d(
                channels,
                out_channels,
                kernel,
                stride=stride,
                padding=padding,
                groups=groups if split else 1,
            )
            layers[f"relu{index}"] = nn.ReLU(inplace=True)
            if name in ("conv1", "conv2"):
                layers[f"norm{index}"] = nn.LocalResponseNorm(
                    _LRN_SIZE, alpha=_LRN_ALPHA, beta=_LRN_BETA, k=_LRN_K
                )
            if name in ("conv1", "conv2", "conv5"):
                layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=3, stride=2)
            channels = out_channels
        self.features = nn.Sequential(layers)
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(256 * 6 * 6, 4096)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(p=dropout)),
                    ("fc7", nn.Linear(4096, 4096)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(p=dropout)),
                    ("fc8", nn.Linear(4096, num_classes)),
                ]
            )
        )
        self.feature_info = [
            FeatureInfo("features.norm1", 96, 4),
            FeatureInfo("features.norm2", 256, 8),
            FeatureInfo("features.relu5", 256, 16),
            FeatureInfo("features.pool5", 256, 32),
        ]
        self._init_weights()

    def _init_weights(self) -> None:
        # Sec. 5: every weight ~ N(0, 0.01).
        for module_name, module in (
            *self.features.named_children(),
            *self.classifier.named_children(),
        ):
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(module.weight, mean=0.0, std=0.01)
                assert module.bias is not None
                nn.init.constant_(module.bias, 1.0 if module_name in _BIAS_ONE else 0.0)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(x, 1)
        return sequential_head(self.classifier, x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]  # fc8

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = new_linear_like(self.get_classifier(), num_classes, _init_fc8)
        self.num_classes = num_classes


# Zeiler & Fergus (2013), Fig. 3: (name, out_channels, kernel, stride, padding, pool after).
# The paddings and ceil-mode pools are the ones that give Fig. 3's map sizes from a 224 crop:
# conv1 110, pool1 55, conv2 26, pool2 13, conv3-5 13, pool5 6 (floor-mode pools would give 54).
ZFNET_CONVS: tuple[tuple[str, int, int, int, int, bool], ...] = (
    ("conv1", 96, 7, 2, 1, True),  # sec. 4.1: 7x7 filters at stride 2, instead of 11x11 at 4
    ("conv2", 256, 5, 2, 0, True),  # stride 2, as AlexNet's conv1-pool1 no longer halves twice
    ("conv3", 384, 3, 1, 1, False),
    ("conv4", 384, 3, 1, 1, False),
    ("conv5", 256, 3, 1, 1, True),
)
# Fig. 3 at 224: pool5 is 6x6. 47 is the smallest side that still leaves it a map: 47 -> conv1
# 22 -> pool1 11 -> conv2 4 -> pool2 2 -> pool5 1; 46 -> 21 -> 10 -> 3 -> 1 -> pool5 empty.
ZFNET_MIN_SIZE = (47, 47)


class ZFNet(ClassifierModel):
    """ZFNet (Zeiler & Fergus 2013, sec. 3 and 4.1, Fig. 3): AlexNet with a 7x7/2 first layer.

    Each layer: conv -> ReLU -> [3x3/2 max pool -> contrast normalisation across feature maps]
    (Fig. 3: layers 1 and 2 pool, then normalise; layer 5 only pools). The paper gives no
    normalisation constants; AlexNet's LRN (sec. 3.3 of Krizhevsky et al., n=5, k=2, alpha=1e-4,
    beta=0.75) stands in, as ZFNet is AlexNet's network otherwise. Layers 3-5 are dense (one GPU).
    fc6 and fc7 have 4096 units with dropout 0.5 (sec. 3). Weights N(0, 0.01), biases 0 (sec. 3).
    Before fc6 an adaptive 6x6 average pool: the identity at 224 (pool5 is already 6x6, Fig. 3),
    and it lets smaller images (down to 47x47) through the paper's 9,216-input fc6.
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.min_input_size = ZFNET_MIN_SIZE
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        self.feature_info = []
        channels, reduction = in_channels, 1
        for name, out_channels, kernel, stride, padding, pool in ZFNET_CONVS:
            index = name[-1]
            layers[name] = nn.Conv2d(channels, out_channels, kernel, stride, padding)
            layers[f"relu{index}"] = nn.ReLU(inplace=True)
            reduction *= stride
            channels = out_channels
            if pool:
                self.feature_info.append(FeatureInfo(f"features.relu{index}", channels, reduction))
                layers[f"pool{index}"] = nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)
                reduction *= 2
                if name != "conv5":
                    layers[f"norm{index}"] = nn.LocalResponseNorm(
                        _LRN_SIZE, alpha=_LRN_ALPHA, beta=_LRN_BETA, k=_LRN_K
                    )
        self.feature_info.append(FeatureInfo("features.pool5", channels, reduction))
        self.features = nn.Sequential(layers)
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            OrderedDict(
                [
                    ("fc6", nn.Linear(256 * 6 * 6, 4096)),
                    ("relu6", nn.ReLU(inplace=True)),
                    ("drop6", nn.Dropout(p=dropout)),
                    ("fc7", nn.Linear(4096, 4096)),
                    ("relu7", nn.ReLU(inplace=True)),
                    ("drop7", nn.Dropout(p=dropout)),
                    ("fc8", nn.Linear(4096, num_classes)),
                ]
            )
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                _init_zfnet(module)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)  # type: ignore[no-any-return]

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        x = torch.flatten(self.avgpool(x), 1)
        return sequential_head(self.classifier, x, pre_logits)

    def get_classifier(self) -> nn.Module:
        return self.classifier[-1]  # fc8

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = new_linear_like(self.get_classifier(), num_classes, _init_zfnet)
        self.num_classes = num_classes


def _init_zfnet(layer: nn.Conv2d | nn.Linear) -> None:
    # Sec. 3: "All weights are initialized to 10^-2 and biases are set to 0", read as N(0, 0.01)
    # (a constant would make every filter the same).
    nn.init.normal_(layer.weight, mean=0.0, std=0.01)
    assert layer.bias is not None
    nn.init.zeros_(layer.bias)


def _init_fc8(layer: nn.Linear) -> None:
    # Sec. 5, as at construction: N(0, 0.01) weights, zero bias (fc8 is not in _BIAS_ONE).
    nn.init.normal_(layer.weight, mean=0.0, std=0.01)
    nn.init.zeros_(layer.bias)


# The variants differ in paper and input: only the family is shared.
_register = functools.partial(register_model, family="alexnet")
# Published numbers, one row per variant (tests/data/published_numbers.md has the sources).
NUMBERS: dict[str, Numbers] = {
    "alexnet": numbers(
        61_100_840,
        714_188_480,
        "torchvision 0.28 docs (AlexNet_Weights.IMAGENET1K_V1): 61,100,840 params, 0.714 GFLOPS",
    ),
    "alexnet_original": numbers(
        60_965_224,
        724_406_816,
        "computed: params as in published_numbers.md (paper: '60 million'); "
        "MACs an exact count at 227x227 (0.724G)",
    ),
    "zfnet": numbers(
        62_357_608,
        1_168_032_896,
        "computed from Fig. 3's layers (the paper gives no total); MACs an exact count at 224",
    ),
}


@_register(
    **NUMBERS["alexnet"],
    paper=KRIZHEVSKY2014,
    input_size=(3, 224, 224),
    min_size=TORCHVISION_MIN_SIZE,
    torchvision=True,
)
def alexnet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> AlexNet:
    """AlexNet as in torchvision: one-GPU variant, no LRN, adaptive 6x6 pool.

    Krizhevsky (2014), "One weird trick for parallelizing convolutional neural networks",
    arXiv:1404.5997. State_dict keys, initialisation and forward equal torchvision's ``alexnet``.
    """
    return AlexNet(num_classes=num_classes, dropout=dropout, in_channels=in_channels)


@_register(
    **NUMBERS["alexnet_original"],
    paper=KRIZHEVSKY2012,
    input_size=(3, *PAPER_INPUT_SIZE),
    fixed_size=True,
)
def alexnet_original(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    groups: int = 2,
    dropout: float = 0.5,
) -> AlexNetOriginal:
    """AlexNet as in the 2012 paper: two-GPU grouped convs, LRN, 227x227 input.

    Krizhevsky, Sutskever, Hinton (2012), "ImageNet Classification with Deep Convolutional Neural
    Networks", sec. 3 (architecture) and sec. 5 (initialisation). ``groups=2`` models the two GPUs
    of Fig. 2 (conv2, conv4, conv5 see only their own GPU's maps); ``groups=1`` connects every
    layer fully (62,378,344 parameters instead of 60,965,224).
    """
    return AlexNetOriginal(
        num_classes=num_classes, in_channels=in_channels, groups=groups, dropout=dropout
    )


@_register(**NUMBERS["zfnet"], paper=ZEILER2013, input_size=(3, 224, 224), min_size=ZFNET_MIN_SIZE)
def zfnet(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> ZFNet:
    """ZFNet: AlexNet with a 7x7/2 first layer, dense conv3-5, 96-256-384-384-256 filters.

    Zeiler & Fergus (2013), "Visualizing and Understanding Convolutional Networks", sec. 3 and
    4.1, Fig. 3 (the single model of Table 2: 16.5% top-5 error on ImageNet 2012 validation).
    """
    return ZFNet(num_classes=num_classes, in_channels=in_channels, dropout=dropout)
