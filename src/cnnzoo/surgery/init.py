"""Re-initialising a model's weights by layer type, or with the model's own (paper) scheme."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any, Literal, TypeAlias

import torch
from torch import Tensor, nn

from cnnzoo.registry import create_model
from cnnzoo.surgery.layers import FrozenBatchNorm2d

__all__ = ["INIT_SCHEMES", "init_weights"]

FanMode: TypeAlias = Literal["fan_in", "fan_out"]
Nonlinearity: TypeAlias = Literal["linear", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]

# Weight initialisers for conv and linear layers; the keyword arguments each one takes.
INIT_SCHEMES = (
    "kaiming_normal",  # He et al. 2015 (arXiv:1502.01852): std = gain / sqrt(fan)
    "kaiming_uniform",  # the same std from a uniform distribution
    "xavier_normal",  # Glorot & Bengio 2010: std = gain * sqrt(2 / (fan_in + fan_out))
    "xavier_uniform",
    "normal",  # N(0, std^2), std 0.01 unless given: "normal(0.02)" or std=0.02
    "orthogonal",  # Saxe et al. 2013 (arXiv:1312.6120): (flattened) rows orthonormal, x gain
    "paper",  # whatever the model's builder does (the paper's or torchvision's scheme)
)

_SCHEME_PATTERN = re.compile(r"^\s*(\w+)\s*(?:\(\s*(?:std\s*=\s*)?([^)]*?)\s*\))?\s*$")

_NORMS = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm, FrozenBatchNorm2d)


def _parse_scheme(scheme: str, std: float | None) -> tuple[str, float | None]:
    """'normal(0.02)' / 'normal(std=0.02)' -> ('normal', 0.02); 'kaiming_normal' -> (.., std)."""
    match = _SCHEME_PATTERN.match(scheme)
    if match is None or match.group(1) not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    name, argument = match.group(1), match.group(2)
    if argument:
        if name != "normal":
            raise ValueError(f"init scheme {name!r} takes no argument, got {scheme!r}")
        try:
            std = float(argument)
        except ValueError:
            raise ValueError(f"cannot read the std in {scheme!r}") from None
    if std is not None and not (std > 0 and math.isfinite(std)):
        raise ValueError(f"std must be positive, got {std}")
    return name, std


def _weight_initialiser(
    name: str, std: float | None, mode: FanMode, nonlinearity: Nonlinearity, gain: float
) -> Callable[[Tensor], Any]:
    if name == "kaiming_normal":
        return lambda w: nn.init.kaiming_normal_(w, mode=mode, nonlinearity=nonlinearity)
    if name == "kaiming_uniform":
        return lambda w: nn.init.kaiming_uniform_(w, mode=mode, nonlinearity=nonlinearity)
    if name == "xavier_normal":
        return lambda w: nn.init.xavier_normal_(w, gain=gain)
    if name == "xavier_uniform":
        return lambda w: nn.init.xavier_uniform_(w, gain=gain)
    if name == "normal":
        return lambda w: nn.init.normal_(w, mean=0.0, std=0.01 if std is None else std)
    if name == "orthogonal":
        return lambda w: nn.init.orthogonal_(w, gain=gain)
    raise AssertionError(name)  # _parse_scheme admits only INIT_SCHEMES


def _reset_norm(module: nn.Module) -> None:
    """Norm layers start as the identity map: scale 1, shift 0, running statistics reset."""
    with torch.no_grad():
        if isinstance(module, nn.modules.batchnorm._NormBase):
            module.reset_running_stats()
        elif isinstance(module, FrozenBatchNorm2d):
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
        weight, bias = getattr(module, "weight", None), getattr(module, "bias", None)
        if isinstance(weight, Tensor):
            weight.fill_(1.0)
        if isinstance(bias, Tensor):
            bias.zero_()


def _paper_init(model: nn.Module) -> None:
    """Copy the initial state of a freshly built model of the same name and arguments."""
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError(
            f"init scheme 'paper' rebuilds the model from the registry, but this "
            f"{type(model).__name__} was not built by cnnzoo.create_model"
        )
    kwargs: dict[str, Any] = dict(getattr(model, "model_kwargs", {}))
    for attribute in ("num_classes", "in_channels"):
        if hasattr(model, attribute):
            kwargs[attribute] = getattr(model, attribute)
    fresh = create_model(name, **kwargs).state_dict()
    own = model.state_dict()
    if [(k, v.shape) for k, v in fresh.items()] != [(k, v.shape) for k, v in own.items()]:
        arguments = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise ValueError(
            f"init scheme 'paper': a fresh {name}({arguments}) has "
            "other layers than this model (built with other arguments, or changed since, e.g. "
            "by fuse_bn); re-create it with cnnzoo.create_model instead"
        )
    model.load_state_dict(fresh)


def init_weights(
    model: nn.Module,
    scheme: str,
    *,
    std: float | None = None,
    mode: FanMode = "fan_in",
    nonlinearity: Nonlinearity = "relu",
    gain: float = 1.0,
) -> list[str]:
    """Re-initialise ``model`` in place with ``scheme``, by layer type.

    Conv and linear weights get the scheme (``mode``/``nonlinearity`` for kaiming: fan_in and
    ReLU by default, std = sqrt(2 / fan_in); ``gain`` for xavier and orthogonal; ``std`` for
    normal, also written ``"normal(0.02)"``) and their biases zero. Norm layers (batch, group,
    layer, instance) become the identity: weight 1, bias 0, running statistics reset. Other
    layers with parameters of their own (e.g. LeNet-5's subsampling and C3) are reset by their
    own ``reset_parameters()`` where they have one and left alone otherwise; their names are
    returned. ``"paper"`` restores the model's own initialisation (that of a fresh
    ``create_model`` of the same name, classes and channels) and returns ``[]``.

    >>> init_weights(model, "kaiming_normal")
    >>> init_weights(model, "normal(0.02)")
    """
    name, std = _parse_scheme(scheme, std)
    if name == "paper":
        _paper_init(model)
        return []
    initialise = _weight_initialiser(name, std, mode, nonlinearity, gain)
    own_init: list[str] = []
    with torch.no_grad():
        for module_name, module in model.named_modules():
            if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)):
                initialise(module.weight)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, _NORMS):
                _reset_norm(module)
            elif any(True for _ in module.parameters(recurse=False)):
                reset = getattr(module, "reset_parameters", None)
                if callable(reset):
                    reset()
                own_init.append(module_name)
    return own_init
