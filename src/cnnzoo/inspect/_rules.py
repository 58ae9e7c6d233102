"""Per-operation rules for the layer table: MACs and receptive-field geometry of one aten op.

The tracer in ``collect.py`` sees every aten op a forward pass runs (on meta tensors) and asks
these rules two things: how many multiply-accumulates the op costs under the table's convention,
and what the receptive-field facts of its outputs are, given those of its inputs.

Receptive fields follow the usual recurrence (Araujo, Norris & Sim 2019, "Computing Receptive
Fields of Convolutional Neural Networks", Distill, eqs. 1-2): for a window of effective size
``E = D(F - 1) + 1``, stride ``S`` and padding ``P`` on an input whose units see ``r`` pixels, step
``j`` pixels apart, with unit 0 centred at ``c``, the output has ``r + (E - 1) j``, ``j S`` and
``c + ((E - 1) / 2 - P) j``. Geometry lives on tensors, not on layers, so branches keep their own
values and a join (residual add, concatenation) takes the union of its inputs' windows: the
maximum over branches, never a product of strides along a path the data did not take.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

__all__ = [
    "Geo",
    "Window",
    "count_macs",
    "input_geo",
    "propagate",
    "shape_only",
    "window_of",
]

Axes = tuple[float, ...]


@dataclass(frozen=True)
class Geo:
    """Receptive-field facts of one tensor, per spatial axis (its last ``len(rf)`` dims).

    ``rf``: input pixels one unit sees; ``span``: input pixels all units together see;
    ``jump``: input pixels between neighbouring units (None once the grid is gone: flattened,
    reshaped or mixed across positions); ``start``: centre of unit 0's window, in input pixel
    coordinates (None with ``jump``).
    """

    rf: Axes
    span: Axes
    jump: Axes | None
    start: Axes | None

    @property
    def axes(self) -> int:
        return len(self.rf)


def input_geo(shape: Sequence[int]) -> Geo:
    """The model input: every unit is one pixel. Spatial axes are the dims after (N, C);
    (N, F) vectors have none (the data path is still followed, the receptive field is empty)."""
    sizes = tuple(float(s) for s in shape[2:])
    ones = tuple(1.0 for _ in sizes)
    return Geo(rf=ones, span=sizes, jump=ones, start=tuple(0.0 for _ in sizes))


def _grid(rf: Axes, jump: Axes, start: Axes, sizes: Sequence[int]) -> Geo:
    span = tuple(r + (n - 1) * j for r, n, j in zip(rf, sizes, jump, strict=True))
    return Geo(rf=rf, span=span, jump=jump, start=start)


def _flat(rf: Axes, span: Axes) -> Geo:
    return Geo(rf=rf, span=span, jump=None, start=None)


def _global(geo: Geo) -> Geo:
    """Every output unit sees everything the input saw."""
    return _flat(geo.span, geo.span)


# ---- MACs ---------------------------------------------------------------------------------------


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

# Ops that are free under the convention (no weight multiply-accumulates): norms, pooling,
# reductions, copies, joins, shape changes, creation. Pointwise ops (activations, residual adds,
# bias adds, scaling) and views are recognised by their aten tags instead.
_FREE = {
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "batch_norm",
    "_batch_norm_impl_index",
    "native_layer_norm",
    "layer_norm",
    "native_group_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "_fused_rms_norm",
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
    "softmax",
    "_softmax",
    "_safe_softmax",
    "log_softmax",
    "_log_softmax",
    "cumsum",
    "argmax",
    "argmin",
    "any",
    "all",
    "count_nonzero",
    "sort",
    "topk",
    "clone",
    "contiguous",
    "_to_copy",
    "copy",
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_empty_strided",
    "new_full",
    "scalar_tensor",
    "arange",
    "linspace",
    "eye",
    "fill",
    "zero",
    "cat",
    "stack",
    "constant_pad_nd",
    "pad",
    "index",
    "index_select",
    "index_copy",
    "index_put",
    "index_fill",
    "gather",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "masked_fill",
    "masked_scatter",
    "masked_select",
    "_unsafe_view",
    "reshape",
    "repeat",
    "repeat_interleave",
    "flip",
    "roll",
    "tril",
    "triu",
    "native_dropout",
    "dropout",
    "feature_dropout",
    "alpha_dropout",
    "bernoulli",
    "rand",
    "rand_like",
    "randn",
    "randn_like",
    "randint",
    "uniform",
    "normal",
    "lift_fresh",
    "lift_fresh_copy",
    "resize",
    "set",
    "im2col",
    "col2im",
    "pixel_shuffle",
    "pixel_unshuffle",
    "channel_shuffle",
    "native_channel_shuffle",
    "embedding",
    "one_hot",
    "split_with_sizes_copy",
    "unbind_copy",
    "view_copy",
    "expand_copy",
    "permute_copy",
    "slice_copy",
    "select_copy",
    "unsqueeze_copy",
    "squeeze_copy",
    "t_copy",
    "transpose_copy",
    "detach_copy",
    "alias_copy",
    "_local_scalar_dense",
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
    "_assert_async",
    "_assert_scalar",
    "_functional_assert_async",
}
_FREE_PATTERN = re.compile(
    r"^(max_pool|avg_pool|_adaptive_avg_pool|adaptive_avg_pool|adaptive_max_pool|"
    r"fractional_max_pool|lp_pool|upsample_|_upsample_|reflection_pad|replication_pad|"
    r"_pad_|_reshape)"
)


def _is_free(func: Any) -> bool:
    if torch.Tag.pointwise in func.tags or func.is_view:
        return True
    name = _name(func)
    return name in _FREE or bool(_FREE_PATTERN.match(name))


def _numel(shape: Sequence[int]) -> int:
    return math.prod(int(s) for s in shape)


def _attention_macs(query: Tensor, key: Tensor, value: Tensor) -> int:
    # softmax(Q K^T) V: L x S scores of E-long dot products, then L x Ev outputs of S-long sums.
    batch = _numel(query.shape[:-2])
    length, embed = int(query.shape[-2]), int(query.shape[-1])
    source = int(key.shape[-2])
    return batch * length * source * (embed + int(value.shape[-1]))


def count_macs(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int | None:
    """Multiply-accumulates of one aten op under the table's convention; None if it carries
    arithmetic that no rule (ours or torch's flop counter) can count."""
    name = _name(func)
    if name in _CONVOLUTIONS:
        weight = _arg(func, args, kwargs, "weight")
        batch_input = args[0]
        transposed = bool(_arg(func, args, kwargs, "transposed"))
        # Each output unit (or, transposed, each input unit) meets every weight of its group.
        positions = batch_input.shape if transposed else _first_tensor(out).shape
        return int(positions[0]) * _numel(positions[2:]) * int(weight.numel())
    if name in ("mm", "addmm"):
        a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
        return int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])
    if name in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
        return int(a.shape[0]) * int(a.shape[1]) * int(a.shape[2]) * int(b.shape[2])
    if name in ("mv", "addmv"):
        a = args[0] if name == "mv" else args[1]
        return int(a.shape[0]) * int(a.shape[1])
    if name in ("dot", "vdot"):
        return int(args[0].numel())
    if name in ("addr", "outer", "ger"):
        a, b = (args[1], args[2]) if name == "addr" else (args[0], args[1])
        return int(a.numel()) * int(b.numel())
    if name.startswith("_scaled_dot_product") and "backward" not in name:
        return _attention_macs(args[0], args[1], args[2])
    from torch.utils.flop_counter import flop_registry

    packet = func.overloadpacket
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2
    if _is_free(func):
        return 0
    return None


def shape_only(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    """The output of a common op on meta tensors, computed here; None to let torch do it.

    The meta kernels of matrix products, batch norm and most pointwise ops are Python
    references whose first call imports torch._dynamo (seconds, once per process); those of
    convolution and pooling import sympy through ``torch._check`` (most of a second). For the
    cases where the output is plainly determined (same floating dtype throughout, no ``out=``)
    a shape check and an empty tensor do the same, with the errors torch would raise.
    """
    if "out" in kwargs:
        return None
    tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, Tensor)]
    if args and isinstance(args[0], (list, tuple)):  # cat, stack
        tensors += [t for t in args[0] if isinstance(t, Tensor)]
    if not tensors or not all(t.is_meta for t in tensors):
        return None
    name = func.overloadpacket.__name__
    if name == "convolution":
        return _convolution_shape(func, args, kwargs)
    if _POOL.match(name) and not name.endswith("_"):
        return _pool_shape(func, args, kwargs)
    adaptive = _ADAPTIVE.match(name)
    if adaptive:
        return _adaptive_pool_shape(args, kwargs, int(adaptive.group(2)), adaptive.group(1))
    if name in ("mm", "addmm", "bmm", "baddbmm"):
        return _matmul_shape(name, args)
    if name in ("native_batch_norm", "_native_batch_norm_legit_no_training"):
        return _batch_norm_shape(name, args)
    if name == "cat":
        return _cat_shape(args, kwargs)
    if name == "index_copy":  # LeNet-5's C3 scatters its kernels with it
        x, dim, index, source = args[:4]
        dim = int(dim) % max(x.dim(), 1)
        fits = (
            index.dim() <= 1
            and source.dtype == x.dtype
            and source.dim() == x.dim()
            and int(source.shape[dim]) == index.numel()
            and all(source.shape[d] == x.shape[d] for d in range(x.dim()) if d != dim)
        )
        # Anything irregular goes to torch, for its own error message.
        return torch.empty(x.shape, dtype=x.dtype, device="meta") if fits else None
    if name in ("mean", "sum", "amax", "amin"):
        return _reduction_shape(func, args, kwargs)
    if torch.Tag.pointwise in func.tags:
        return _pointwise_shape(func, args, kwargs, tensors)
    return None


def _window_sizes(
    x: Tensor, window: Window, pooling: bool, output_padding: Sequence[int] = ()
) -> list[int]:
    """Output sizes of a window op over the last axes of ``x``, or RuntimeError as torch."""
    from cnnzoo.inspect.arithmetic import GeometryError, conv_output_size, pool_output_size

    sizes = [int(s) for s in x.shape[x.dim() - len(window.kernel) :]]
    if window.transposed:
        out = [
            (n - 1) * s - 2 * p + d * (k - 1) + op + 1
            for n, k, s, p, d, op in zip(
                sizes,
                window.kernel,
                window.stride,
                window.padding,
                window.dilation,
                output_padding or [0] * len(sizes),
                strict=True,
            )
        ]
        if min(out) < 1:
            raise RuntimeError(f"Given input size {list(x.shape)}, the output size is too small")
        return out
    try:
        if pooling:
            sizes_out = pool_output_size(
                sizes,
                list(window.kernel),
                list(window.stride),
                list(window.padding),
                list(window.dilation),
                ceil_mode=bool(window.ceil_mode),
            )
        else:
            sizes_out = conv_output_size(
                sizes,
                list(window.kernel),
                list(window.stride),
                list(window.padding),
                list(window.dilation),
            )
    except GeometryError as error:
        raise RuntimeError(
            f"Given input size {list(x.shape)}, the output size is too small: {error}"
        ) from None
    assert isinstance(sizes_out, tuple)
    return list(sizes_out)


def _convolution_shape(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor | None:
    x, weight = args[0], _arg(func, args, kwargs, "weight")
    bias = _arg(func, args, kwargs, "bias")
    if x.dtype != weight.dtype or not x.dtype.is_floating_point:
        return None
    window = window_of(func, args, kwargs)
    assert window is not None
    groups = window.groups or 1
    if weight.dim() != x.dim() or x.dim() < 3:
        raise RuntimeError(
            f"Expected {weight.dim()}-dimensional input for {weight.dim()}-dimensional weight "
            f"{list(weight.shape)}, but got {x.dim()}-dimensional input of size {list(x.shape)}"
        )
    expected = int(weight.shape[0]) if window.transposed else int(weight.shape[1]) * groups
    if int(x.shape[1]) != expected:
        raise RuntimeError(
            f"Given groups={groups}, weight of size {list(weight.shape)}, expected "
            f"input{list(x.shape)} to have {expected} channels, but got {int(x.shape[1])} "
            "channels instead"
        )
    channels = int(weight.shape[1]) * groups if window.transposed else int(weight.shape[0])
    if bias is not None and bias.numel() != channels:
        raise RuntimeError(f"bias of {bias.numel()} elements for {channels} output channels")
    output_padding = _per_axis(_arg(func, args, kwargs, "output_padding"), len(window.kernel), 0)
    sizes = _window_sizes(x, window, pooling=False, output_padding=output_padding)
    return torch.empty((int(x.shape[0]), channels, *sizes), dtype=x.dtype, device="meta")


def _pool_shape(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0]
    window = window_of(func, args, kwargs)
    if window is None or not x.dtype.is_floating_point or x.dim() < len(window.kernel) + 1:
        return None
    if _arg(func, args, kwargs, "divisor_override") == 0:
        return None  # torch's own error
    sizes = _window_sizes(x, window, pooling=True)
    out = torch.empty((*x.shape[: x.dim() - len(sizes)], *sizes), dtype=x.dtype, device="meta")
    if func.overloadpacket.__name__.endswith("_with_indices"):
        return out, torch.empty(out.shape, dtype=torch.int64, device="meta")
    return out


_ADAPTIVE = re.compile(r"^_?adaptive_(avg|max)_pool([123])d$")


def _adaptive_pool_shape(args: Sequence[Any], kwargs: dict[str, Any], axes: int, kind: str) -> Any:
    x = args[0]
    output_size = args[1] if len(args) > 1 else kwargs["output_size"]
    sizes = _per_axis(output_size, axes, 1)
    if not x.dtype.is_floating_point or x.dim() not in (axes + 1, axes + 2):
        return None
    if any(int(s) == 0 for s in x.shape[1:]) or any(s < 0 for s in sizes):
        return None  # torch's own error
    out = torch.empty((*x.shape[: x.dim() - axes], *sizes), dtype=x.dtype, device="meta")
    if kind == "max":
        return out, torch.empty(out.shape, dtype=torch.int64, device="meta")
    return out


def _cat_shape(args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor | None:
    tensors = list(args[0])
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    tensors = [t for t in tensors if not (t.dim() == 1 and t.numel() == 0)]  # legacy empties
    if not tensors or any(t.dtype != tensors[0].dtype for t in tensors):
        return None
    ndim = tensors[0].dim()
    dim = int(dim) % ndim
    for t in tensors[1:]:
        same = t.dim() == ndim and all(
            t.shape[d] == tensors[0].shape[d] for d in range(ndim) if d != dim
        )
        if not same:
            raise RuntimeError(
                f"Sizes of tensors must match except in dimension {dim}. Expected "
                f"{list(tensors[0].shape)} but got {list(t.shape)}"
            )
    shape = list(tensors[0].shape)
    shape[dim] = sum(int(t.shape[dim]) for t in tensors)
    return torch.empty(shape, dtype=tensors[0].dtype, device="meta")


def _reduction_shape(func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Tensor | None:
    x = args[0]
    if not x.dtype.is_floating_point or _arg(func, args, kwargs, "dtype") is not None:
        return None
    names = _arguments(func)
    dims = _dims(_arg(func, args, kwargs, "dim"), max(x.dim(), 1)) if "dim" in names else None
    keepdim = bool(_arg(func, args, kwargs, "keepdim")) if "keepdim" in names else False
    reduced = set(range(x.dim())) if dims is None else dims
    if keepdim:
        shape = [1 if d in reduced else int(s) for d, s in enumerate(x.shape)]
    else:
        shape = [int(s) for d, s in enumerate(x.shape) if d not in reduced]
    return torch.empty(shape, dtype=x.dtype, device="meta")


def _matmul_shape(name: str, args: Sequence[Any]) -> Tensor:
    bias, a, b = (None, args[0], args[1]) if name in ("mm", "bmm") else args[:3]
    dims = 3 if name in ("bmm", "baddbmm") else 2
    if a.dim() != dims or b.dim() != dims:
        raise RuntimeError(f"{name}: expected {dims}-D operands, got {a.dim()}-D and {b.dim()}-D")
    if a.shape[-1] != b.shape[-2] or (dims == 3 and a.shape[0] != b.shape[0]):
        shapes = " and ".join("x".join(str(int(s)) for s in t.shape) for t in (a, b))
        raise RuntimeError(f"mat1 and mat2 shapes cannot be multiplied ({shapes})")
    if a.dtype != b.dtype or (bias is not None and bias.dtype != a.dtype):
        raise RuntimeError(
            f"expected mat1 and mat2 to have the same dtype, got {a.dtype}, {b.dtype}"
        )
    shape = torch.Size((*a.shape[:-1], b.shape[-1]))
    if bias is not None and _broadcast(bias.shape, shape) != shape:
        raise RuntimeError(f"{name}: bias of shape {tuple(bias.shape)} does not fit {tuple(shape)}")
    return torch.empty(shape, dtype=a.dtype, device="meta")


def _batch_norm_shape(name: str, args: Sequence[Any]) -> tuple[Tensor, Tensor, Tensor]:
    x, weight, bias, running_mean, running_var = args[:5]
    training = bool(args[5]) if name == "native_batch_norm" else False
    channels = int(x.shape[1]) if x.dim() > 1 else 1
    for label, tensor in (
        ("weight", weight),
        ("bias", bias),
        ("running_mean", running_mean),
        ("running_var", running_var),
    ):
        if tensor is not None and tensor.numel() != channels:
            raise RuntimeError(f"{label} should contain {channels} elements not {tensor.numel()}")
    if training and x.numel() // channels <= 1:
        raise ValueError(
            f"Expected more than 1 value per channel when training, got input size {list(x.shape)}"
        )
    stats = (channels,)  # the meta kernel gives (C,) statistics in eval mode too
    return (
        torch.empty(x.shape, dtype=x.dtype, device="meta"),
        torch.empty(stats, dtype=x.dtype, device="meta"),
        torch.empty(stats, dtype=x.dtype, device="meta"),
    )


_BOOLEAN = {"eq", "ne", "lt", "le", "gt", "ge", "greater", "less", "signbit"}
_BOOLEAN_PREFIX = ("logical_", "is", "bitwise_", "__")


def _pointwise_shape(
    func: Any, args: Sequence[Any], kwargs: dict[str, Any], tensors: Sequence[Tensor]
) -> Tensor | None:
    schema = func._schema
    dtype = tensors[0].dtype
    if (
        len(schema.returns) != 1
        or str(schema.returns[0].type) != "Tensor"
        or not dtype.is_floating_point
        or any(t.dtype != dtype for t in tensors)
        or any(isinstance(a, complex) for a in (*args, *kwargs.values()))
        or func.overloadpacket.__name__ in _BOOLEAN
        or func.overloadpacket.__name__.startswith(_BOOLEAN_PREFIX)
    ):
        return None
    shape = _broadcast(*(t.shape for t in tensors))
    if schema.is_mutable:  # in place: the result is written into the first argument
        target: Tensor = args[0]
        if shape != target.shape:
            raise RuntimeError(
                f"output with shape {list(target.shape)} doesn't match the broadcast shape "
                f"{list(shape)}"
            )
        return target
    return torch.empty(shape, dtype=dtype, device="meta")


def _broadcast(*shapes: Sequence[int]) -> torch.Size:
    """NumPy broadcasting of shapes. Written out because torch.broadcast_shapes imports sympy
    (most of a second) on first use."""
    ndim = max((len(shape) for shape in shapes), default=0)
    result = [1] * ndim
    for shape in shapes:
        for axis, size in enumerate(shape, start=ndim - len(shape)):
            size = int(size)
            if size != 1 and result[axis] not in (1, size):
                raise RuntimeError(
                    f"The size of tensor a ({result[axis]}) must match the size of tensor b "
                    f"({size}) at non-singleton dimension {axis}"
                )
            if size != 1:
                result[axis] = size
    return torch.Size(result)


def _first_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value
    for item in value:
        if isinstance(item, Tensor):
            return item
    raise TypeError(f"no tensor in {type(value).__name__}")


# ---- windows: convolutions and pooling ----------------------------------------------------------


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


# ---- geometry propagation -----------------------------------------------------------------------


def _spatial_sizes(tensor: Tensor, axes: int) -> tuple[int, ...]:
    return tuple(int(s) for s in tensor.shape[tensor.dim() - axes :]) if axes else ()


def _through_window(geo: Geo, window: Window, out: Tensor) -> Geo:
    if geo.jump is None or geo.start is None:
        return _global(geo)
    # A window with fewer axes than the grid acts on the last ones (a 1-d pool on an unsqueezed
    # 1-d signal); with more (LRN's 3-d pool across channels) only the last ones are spatial.
    used = min(geo.axes, len(window.kernel))
    skip = geo.axes - used
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    for axis in range(skip, geo.axes):
        w = axis - skip + len(window.kernel) - used
        span, stride, padding = window.span[w], window.stride[w], window.padding[w]
        if window.transposed:
            # Each output unit gathers from ceil(E / S) neighbouring input units.
            reach = math.ceil(span / stride) - 1
            start[axis] = start[axis] + jump[axis] * (padding - (span - 1) / 2) / stride
            rf[axis] = rf[axis] + reach * jump[axis]
            jump[axis] = jump[axis] / stride
        else:
            start[axis] = start[axis] + ((span - 1) / 2 - padding) * jump[axis]
            rf[axis] = rf[axis] + (span - 1) * jump[axis]
            jump[axis] = jump[axis] * stride
    return _grid(tuple(rf), tuple(jump), tuple(start), _spatial_sizes(out, geo.axes))


def _through_adaptive(geo: Geo, source: Tensor, out: Tensor) -> Geo:
    """Adaptive pooling: window i covers [floor(i n / o), ceil((i + 1) n / o)) of n inputs."""
    if geo.jump is None or geo.start is None:
        return _global(geo)
    sizes_in = _spatial_sizes(source, geo.axes)
    sizes_out = _spatial_sizes(out, geo.axes)
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    for axis, (n, o) in enumerate(zip(sizes_in, sizes_out, strict=True)):
        widest = max(math.ceil((i + 1) * n / o) - (i * n) // o for i in range(o))
        first = math.ceil(n / o)
        start[axis] += (first - 1) / 2 * jump[axis]
        rf[axis] += (widest - 1) * jump[axis]
        jump[axis] *= n / o
    return _grid(tuple(rf), tuple(jump), tuple(start), sizes_out)


def _dims(value: Any, ndim: int) -> set[int] | None:
    """Normalised reduction dims; None means all."""
    if value is None or (isinstance(value, (list, tuple)) and len(value) == 0):
        return None
    values = [value] if isinstance(value, int) else list(value)
    return {int(v) % ndim for v in values}


def _through_reduction(geo: Geo, source: Tensor, out: Tensor, dims: set[int] | None) -> Geo:
    """A mean / sum / max over some dims: a window as large as the axis on each spatial one."""
    first_spatial = source.dim() - geo.axes
    reduced = set(range(source.dim())) if dims is None else dims
    spatial_reduced = reduced & set(range(first_spatial, source.dim()))
    if not spatial_reduced:
        # Only channels (or batch) reduced: the grid is intact if the spatial dims stay last.
        same = _spatial_sizes(out, geo.axes) == _spatial_sizes(source, geo.axes)
        return geo if same else _flat(geo.rf, geo.span)
    if geo.jump is None or geo.start is None:
        return _global(geo)
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    sizes = _spatial_sizes(source, geo.axes)
    for axis in range(geo.axes):
        if first_spatial + axis in spatial_reduced:
            n = sizes[axis]
            start[axis] += (n - 1) / 2 * jump[axis]
            rf[axis] += (n - 1) * jump[axis]
            jump[axis] *= n
    kept = tuple(1 if first_spatial + a in spatial_reduced else s for a, s in enumerate(sizes))
    if out.dim() == source.dim() and _spatial_sizes(out, geo.axes) == kept:
        return _grid(tuple(rf), tuple(jump), tuple(start), kept)  # keepdim: a 1-wide grid
    return _flat(tuple(rf), _grid(tuple(rf), tuple(jump), tuple(start), kept).span)


def _union(geos: Sequence[Geo], out: Tensor) -> Geo:
    """A join (add, mul, concatenation, ...): the union of the inputs' windows, per unit.

    Inputs on the same grid as the output contribute their windows around the same unit;
    broadcast or flattened inputs (a squeeze-and-excitation scale, a global vector) contribute
    everything they saw.
    """
    axes = geos[0].axes
    geos = [g for g in geos if g.axes == axes]
    sizes = _spatial_sizes(out, axes)
    grids = [
        g
        for g in geos
        if g.jump is not None
        and g.start is not None
        and tuple(round(s) for s in _unit_count(g)) == sizes
    ]
    if not grids:
        rf = tuple(max(g.rf[a] for g in geos) for a in range(axes))
        span = tuple(max(g.span[a] for g in geos) for a in range(axes))
        return _flat(rf, span)
    rf_list, start_list = [], []
    for a in range(axes):
        low = min(g.start[a] - (g.rf[a] - 1) / 2 for g in grids)  # type: ignore[index]
        high = max(g.start[a] + (g.rf[a] - 1) / 2 for g in grids)  # type: ignore[index]
        others = max((g.rf[a] for g in geos if g not in grids), default=0.0)
        rf_list.append(max(high - low + 1, others))
        start_list.append((low + high) / 2)
    jump = tuple(max(g.jump[a] for g in grids) for a in range(axes))  # type: ignore[index]
    return _grid(tuple(rf_list), jump, tuple(start_list), sizes)


def _unit_count(geo: Geo) -> Axes:
    """Units per axis on a grid: (span - rf) / jump + 1."""
    assert geo.jump is not None
    return tuple((s - r) / j + 1 for s, r, j in zip(geo.span, geo.rf, geo.jump, strict=True))


def _through_slice(geo: Geo, source: Tensor, out: Tensor, dim: int, begin: Any, step: int) -> Geo:
    """``x[:, :, ::2]``: every step-th unit from ``begin`` (option-A ResNet shortcuts)."""
    first_spatial = source.dim() - geo.axes
    if dim < first_spatial:
        return _union([geo], out) if geo.jump is not None else geo
    if geo.jump is None or geo.start is None:
        return geo
    axis = dim - first_spatial
    n = int(source.shape[dim])
    offset = 0 if begin is None else int(begin)
    offset = min(max(offset + n if offset < 0 else offset, 0), n)
    jump, start = list(geo.jump), list(geo.start)
    start[axis] += offset * jump[axis]
    jump[axis] *= step
    return _grid(geo.rf, tuple(jump), tuple(start), _spatial_sizes(out, geo.axes))


def _through_pad(geo: Geo, out: Tensor, pad: Sequence[int]) -> Geo:
    """Padding shifts unit 0 left by the left padding of each spatial axis (pad lists the last
    dim first, as F.pad does)."""
    if geo.jump is None or geo.start is None:
        return geo
    start = list(geo.start)
    for a in range(min(geo.axes, len(pad) // 2)):
        axis = geo.axes - 1 - a
        start[axis] -= int(pad[2 * a]) * geo.jump[axis]
    return _grid(geo.rf, geo.jump, tuple(start), _spatial_sizes(out, geo.axes))


_UPSAMPLE = re.compile(r"^_?upsample_(nearest|bilinear|linear|trilinear|bicubic)")
# Input units on each side an interpolated output unit reads beyond its nearest one.
_INTERPOLATION_REACH = {"nearest": 0, "linear": 1, "bilinear": 1, "trilinear": 1, "bicubic": 3}


def _through_upsample(geo: Geo, source: Tensor, out: Tensor, mode: str) -> Geo:
    if geo.jump is None or geo.start is None:
        return geo
    sizes_in = _spatial_sizes(source, geo.axes)
    sizes_out = _spatial_sizes(out, geo.axes)
    reach = _INTERPOLATION_REACH[mode]
    rf, jump = list(geo.rf), list(geo.jump)
    for axis, (n, o) in enumerate(zip(sizes_in, sizes_out, strict=True)):
        rf[axis] += reach * jump[axis]
        jump[axis] *= n / o
    return _grid(tuple(rf), tuple(jump), geo.start, sizes_out)


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


def propagate(
    func: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    inputs: Sequence[tuple[Tensor, Geo]],
    outputs: Sequence[Tensor],
) -> Geo:
    """The geometry of the op's outputs, from its data inputs' (those derived from the model
    input; parameters and constants have none). All outputs of one op share it."""
    name = _name(func)
    source, geo = inputs[0]
    out = outputs[0]
    window = window_of(func, args, kwargs)
    if window is not None:
        return _through_window(geo, window, out)
    if "adaptive" in name and "pool" in name:
        return _through_adaptive(geo, source, out)
    if name in _REDUCTIONS:
        overload_dims = "dim" in _arguments(func)
        dims = _dims(_arg(func, args, kwargs, "dim"), source.dim()) if overload_dims else None
        if name in ("max", "min") and not overload_dims:
            dims = None
        return _through_reduction(geo, source, out, dims)
    if name in _MIXING_DIM:
        dim = int(_arg(func, args, kwargs, "dim") or 0) % source.dim()
        return _global(geo) if dim >= source.dim() - geo.axes else _union([geo], out)
    if name in _CONTRACTIONS or name.startswith("_scaled_dot_product"):
        # A matrix product mixes whole rows: without knowing which dims hold positions, every
        # output unit is taken to see everything its operands saw (an upper bound).
        return _flat(
            tuple(max(g.span[a] for _, g in inputs) for a in range(geo.axes)),
            tuple(max(g.span[a] for _, g in inputs) for a in range(geo.axes)),
        )
    if name == "slice":
        dim = int(_arg(func, args, kwargs, "dim") or 0) % source.dim()
        step = int(_arg(func, args, kwargs, "step") or 1)
        return _through_slice(geo, source, out, dim, _arg(func, args, kwargs, "start"), step)
    if name == "constant_pad_nd" or name.startswith(("reflection_pad", "replication_pad")):
        pad = _arg(func, args, kwargs, "pad") or _arg(func, args, kwargs, "padding")
        return _through_pad(geo, out, pad)
    upsample = _UPSAMPLE.match(name)
    if upsample:
        return _through_upsample(geo, source, out, upsample.group(1))
    known = _is_free(func)
    same_grid = out.dim() == source.dim() and _spatial_sizes(out, geo.axes) == _spatial_sizes(
        source, geo.axes
    )
    if same_grid and known:
        return _union([g for _, g in inputs], out)
    if known and (name in _REARRANGE or func.is_view):
        rf = tuple(max(g.rf[a] for _, g in inputs) for a in range(geo.axes))
        span = tuple(max(g.span[a] for _, g in inputs) for a in range(geo.axes))
        return _flat(rf, span)
    # Anything else (an op we know nothing about, or a free op that changes the shape in ways
    # not modelled here) may mix positions: assume it does (an upper bound).
    return _global(geo)
