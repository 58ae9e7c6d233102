"""What an aten op is: its name, its arguments by schema name, its sliding window if it has one.

Shared by the MAC rules (``macs.py``), the shape rules (``shapes.py``), the geometry rules
(``geometry.py``) and the tracer, which reads a conv or pool row's kernel, stride and padding
from the op that ran.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor


def _name(func: Any) -> str:
    """'relu_' -> 'relu', 'max_pool2d_with_indices' -> itself, for the rule tables."""
    name: str = func.overloadpacket.__name__
    return name[:-1] if name.endswith("_") and not name.endswith("__") else name


_SCHEMAS: dict[Any, dict[str, tuple[int, Any]]] = {}


def _arguments(func: Any) -> dict[str, tuple[int, Any]]:
    """Argument name -> (position, default) of an aten op, cached (schemas are slow to walk)."""
    found = _SCHEMAS.get(func)
    if found is None:
        found = {
            a.name: (i, a.default_value if a.has_default_value() else None)
            for i, a in enumerate(func._schema.arguments)
        }
        _SCHEMAS[func] = found
    return found


def _arg(func: Any, args: Sequence[Any], kwargs: dict[str, Any], name: str) -> Any:
    """An argument of an aten op by its schema name, positional or keyword or default."""
    if name in kwargs:
        return kwargs[name]
    position = _arguments(func).get(name)
    if position is None:
        return None
    index, default = position
    return args[index] if index < len(args) else default


_CONVOLUTIONS = {
    "convolution",
    "_convolution",
    "convolution_overrideable",
    "conv1d",
    "conv2d",
    "conv3d",
    "mkldnn_convolution",
    "cudnn_convolution",
    "_slow_conv2d_forward",
    "thnn_conv2d",
    "slow_conv3d_forward",
    "slow_conv_dilated2d",
    "slow_conv_dilated3d",
}


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _first_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    for item in value:
        if isinstance(item, Tensor):
            return item
    raise TypeError(f"no tensor in {type(value).__name__}")


@dataclass(frozen=True)
class Window:
    """A sliding window op's parameters, one entry per window axis."""

    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    groups: int | None  # convolutions only
    ceil_mode: bool | None  # pooling only
    transposed: bool = False

    @property
    def span(self) -> tuple[int, ...]:
        return tuple(d * (k - 1) + 1 for k, d in zip(self.kernel, self.dilation, strict=True))


_POOL = re.compile(r"^(max|avg)_pool([123])d(_with_indices)?$")


def _per_axis(value: Any, axes: int, default: int) -> tuple[int, ...]:
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return (default,) * axes
    if isinstance(value, int):
        return (value,) * axes
    values = tuple(int(v) for v in value)
    return values * axes if len(values) == 1 else values


def window_of(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Window | None:
    """The window parameters of a convolution or (non-adaptive) pooling op, else None."""
    name = _name(func)
    if name in _CONVOLUTIONS:
        weight = _arg(func, args, kwargs, "weight")
        axes = weight.dim() - 2
        kernel = tuple(int(k) for k in weight.shape[2:])
        dilation = _per_axis(_arg(func, args, kwargs, "dilation"), axes, 1)
        padding_arg = _arg(func, args, kwargs, "padding")
        if isinstance(padding_arg, str):  # conv2d(padding="same" | "valid")
            padding = tuple(
                (d * (k - 1)) // 2 if padding_arg == "same" else 0
                for k, d in zip(kernel, dilation, strict=True)
            )
        else:
            padding = _per_axis(padding_arg, axes, 0)
        return Window(
            kernel=kernel,
            stride=_per_axis(_arg(func, args, kwargs, "stride"), axes, 1),
            padding=padding,
            dilation=dilation,
            groups=int(_arg(func, args, kwargs, "groups") or 1),
            ceil_mode=None,
            transposed=bool(_arg(func, args, kwargs, "transposed")),
        )
    match = _POOL.match(name)
    if match:
        axes = int(match.group(2))
        kernel = _per_axis(_arg(func, args, kwargs, "kernel_size"), axes, 1)
        stride = _arg(func, args, kwargs, "stride")
        return Window(
            kernel=kernel,
            stride=kernel if not stride else _per_axis(stride, axes, 1),
            padding=_per_axis(_arg(func, args, kwargs, "padding"), axes, 0),
            dilation=_per_axis(_arg(func, args, kwargs, "dilation"), axes, 1),
            groups=None,
            ceil_mode=bool(_arg(func, args, kwargs, "ceil_mode")),
        )
    return None


def _dims(value: Any, ndim: int) -> set[int] | None:
    """Normalised reduction dims; None means all."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    values = [value] if isinstance(value, int) else list(value)
    return {int(v) % ndim for v in values}


# ---- op families the geometry rules tell apart ---------------------------------------------

# Rearrangements: each output element is one input element, so one unit's window is unchanged;
# the grid survives only if the spatial dims are untouched.
_REARRANGE = {
    "clone",
    "contiguous",
    "_to_copy",
    "copy",
    "_unsafe_view",
    "reshape",
    "cat",
    "stack",
    "index",
    "index_select",
    "gather",
    "repeat",
    "flip",
    "roll",
    "lift_fresh",
    "lift_fresh_copy",
    "pixel_shuffle",
    "pixel_unshuffle",
    "channel_shuffle",
    "native_channel_shuffle",
    "masked_select",
}
_MIXING_DIM = {
    "softmax",
    "_softmax",
    "_safe_softmax",
    "log_softmax",
    "_log_softmax",
    "cumsum",
    "sort",
    "topk",
}
_REDUCTIONS = {
    "mean",
    "sum",
    "nansum",
    "nanmean",
    "amax",
    "amin",
    "max",
    "min",
    "aminmax",
    "var",
    "std",
    "var_mean",
    "std_mean",
    "prod",
    "norm",
    "linalg_vector_norm",
    "logsumexp",
    "argmax",
    "argmin",
    "any",
    "all",
    "count_nonzero",
}
_CONTRACTIONS = {"mm", "addmm", "bmm", "baddbmm", "mv", "addmv", "dot", "vdot", "addr", "outer"}
