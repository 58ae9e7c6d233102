"""The interface every cnnzoo model shares (as timm does): features, head, classifier reset,
stage descriptions for backbones, and an input check that fails early and clearly.

The base class adds no parameters, buffers or submodules, so torchvision-compatible models keep
torchvision's state_dict exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor, nn

__all__ = ["ClassifierModel", "FeatureInfo", "new_linear_like", "sequential_head"]


def new_linear_like(
    old: nn.Module, out_features: int, init: Callable[[nn.Linear], None] | None = None
) -> nn.Linear:
    """A fresh Linear for ``reset_classifier``: ``old``'s in-features, bias, device and dtype.

    Built directly on ``old``'s device and dtype (no float32 CPU detour): a ``.double()`` model
    keeps a float64 head, a CUDA model a CUDA head, a meta-device model a meta head. ``init``
    re-applies the family's own initialisation; without it PyTorch's default Linear init stays.
    """
    if not isinstance(old, nn.Linear):
        raise TypeError(f"expected the old classifier to be nn.Linear, got {type(old).__name__}")
    new = nn.Linear(
        old.in_features,
        out_features,
        bias=old.bias is not None,
        device=old.weight.device,
        dtype=old.weight.dtype,
    )
    if init is not None:
        init(new)
    return new


def sequential_head(classifier: nn.Module, x: Tensor, pre_logits: bool = False) -> Tensor:
    """A Sequential classifier's logits, or (``pre_logits``) what its last layer reads. Logits
    call the whole Sequential, not its layers one by one, so that layer tables show the
    classifier as one module with its layers under it."""
    assert isinstance(classifier, nn.Sequential)
    out: Tensor = classifier[:-1](x) if pre_logits else classifier(x)
    return out


@dataclass(frozen=True)
class FeatureInfo:
    """One stage output a backbone user may tap: its module name, channels and total stride."""

    module: str  # dotted name in named_modules(); its output is the feature map
    channels: int
    reduction: int  # input pixels per feature-map pixel along each axis


class ClassifierModel(nn.Module):
    """Base of all cnnzoo models.

    Subclasses set, in ``__init__``: ``num_classes``, ``in_channels``, ``min_input_size`` (the
    smallest (H, W) for which every layer has a non-empty output), ``fixed_input_size`` ((H, W)
    when the head has fixed in-features, else None) and ``feature_info``; and implement
    ``forward_features``, ``forward_head`` and ``get_classifier``/``reset_classifier``.
    """

    # Declared here for type checkers; set by each subclass's __init__.
    num_classes: int
    in_channels: int
    min_input_size: tuple[int, int]
    fixed_input_size: tuple[int, int] | None = None
    model_name: str  # the registered name, set by the registry's builders
    feature_info: list[FeatureInfo]

    def check_input(self, x: Tensor) -> None:
        """Raise a clear ``ValueError`` for an input no layer can handle, before any layer runs."""
        if isinstance(cast(object, x), torch.fx.Proxy):
            return  # symbolic tracing (FX): shapes are not concrete here
        name = getattr(self, "model_name", type(self).__name__)
        if x.dim() != 4:
            raise ValueError(f"{name} expects a 4-D input (N, C, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(
                f"{name} was built for {self.in_channels} input channels, "
                f"got {x.shape[1]} (input shape {tuple(x.shape)}); "
                f"build it with in_channels={x.shape[1]}"
            )
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if self.fixed_input_size is not None and (h, w) != self.fixed_input_size:
            fh, fw = self.fixed_input_size
            raise ValueError(
                f"{name} takes exactly {fh}x{fw} inputs (its classifier has fixed in-features), "
                f"got {h}x{w}"
            )
        min_h, min_w = self.min_input_size
        if h < min_h or w < min_w:
            raise ValueError(
                f"{name} needs an input of at least {min_h}x{min_w}, got {h}x{w}: "
                "a smaller one leaves some layer with an empty output"
            )

    def forward_features(self, x: Tensor) -> Tensor:
        """The feature maps before global pooling / the classifier."""
        raise NotImplementedError

    def forward_head(self, x: Tensor, pre_logits: bool = False) -> Tensor:
        """From ``forward_features``' output to logits (or the pooled vector if ``pre_logits``)."""
        raise NotImplementedError

    def get_classifier(self) -> nn.Module:
        """The final layer that maps features to ``num_classes`` logits."""
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the final layer with a freshly initialised one for ``num_classes`` classes."""
        raise NotImplementedError

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.forward_head(self.forward_features(x))
