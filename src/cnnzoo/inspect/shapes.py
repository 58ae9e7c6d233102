"""Fast shape rules: the meta output of common ops, computed here instead of by torch.

The meta kernels of matrix products, batch norm and most pointwise ops are Python references
whose first call imports torch._dynamo (seconds, once per process); those of convolution and
pooling import sympy through ``torch._check``. These rules give the same shapes and errors.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from cnnzoo.inspect.arithmetic import GeometryError, conv_output_size, pool_output_size
from cnnzoo.inspect.ops import _POOL, Window, _arg, _arguments, _dims, _per_axis, window_of


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
