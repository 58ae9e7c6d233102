"""Blocks shared by several model families.

Submodule names inside a block are part of the state_dict contract of every model that uses it:
rename nothing here without checking the torchvision-compatible models' keys.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "BasicConv2d", "imagenet_to_unit_range"]


class BasicConv2d(nn.Module):
    """Conv2d (no bias) → BatchNorm2d (eps 0.001) → ReLU: torchvision's GoogLeNet/Inception v3 unit.

    ``conv_kwargs`` go to ``nn.Conv2d`` (kernel_size, stride, padding, ...). The conv has no bias
    because the BatchNorm's shift would cancel it. eps 0.001 (not PyTorch's 1e-5) is the value of
    the TensorFlow models both torchvision networks were ported from; it matters for loading their
    weights. State-dict keys: ``conv.weight``, ``bn.{weight,bias,running_mean,running_var,...}``.
    """

    def __init__(self, in_channels: int, out_channels: int, **conv_kwargs: Any) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **conv_kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


# torchvision's ImageNet normalisation constants (per RGB channel).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def imagenet_to_unit_range(x: Tensor) -> Tensor:
    """Re-normalise ImageNet-normalised RGB, (v - mean) / std, to (v - 0.5) / 0.5 in [-1, 1].

    The ``transform_input`` of torchvision's GoogLeNet and Inception v3, whose weights were ported
    from TensorFlow models trained on [-1, 1] input. Per channel:
    x * (std / 0.5) + (mean - 0.5) / 0.5.
    """
    channels = [
        x[:, c : c + 1] * (std / 0.5) + (mean - 0.5) / 0.5
        for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD, strict=True))
    ]
    return torch.cat(channels, 1)
