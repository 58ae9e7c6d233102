"""``summary``: the exact layer table of a model at an input, collected on the meta device.

The pieces: ``meta.py`` (the model to trace), ``trace.py`` (one forward pass, watched),
``geometry.py`` / ``macs.py`` / ``shapes.py`` (per-op rules), ``rows.py`` (the facts).
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo.inspect.facts import flow_of, not_run_of, rows_of
from cnnzoo.inspect.macs import MacRule, register_mac_rule
from cnnzoo.inspect.meta import build_meta, meta_copy
from cnnzoo.inspect.rows import (
    MACS_CONVENTION,
    DataFlow,
    Join,
    LayerRow,
    LayerTable,
    NotRun,
    UncountedOp,
)
from cnnzoo.inspect.trace import TraceError, Tracer, run_trace
from cnnzoo.models.base import ClassifierModel
from cnnzoo.registry import model_info

__all__ = [
    "MACS_CONVENTION",
    "DataFlow",
    "InputData",
    "Join",
    "LayerRow",
    "LayerTable",
    "MacRule",
    "NotRun",
    "TraceError",
    "UncountedOp",
    "build_meta",
    "meta_copy",
    "register_mac_rule",
    "summary",
    "total_macs",
    "trace_rows",
]

# ---- the public entry points ----------------------------------------------------------------


def _prepare(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, str, tuple[int, ...]]:
    """The meta model to trace, its display name and the (C, H, W) input size."""
    if isinstance(model_or_name, str):
        info = model_info(model_or_name)
        size = tuple(info.input_size if input_size is None else input_size)
        if len(size) == 2:  # (H, W): the model's own channels
            size = (model_kwargs.get("in_channels") or info.input_size[0], *size)
        if size and size[0] != info.input_size[0] and model_kwargs.get("in_channels") is None:
            model_kwargs = {**model_kwargs, "in_channels": size[0]}
        return build_meta(model_or_name, **model_kwargs), info.name, size
    if not isinstance(model_or_name, nn.Module):
        raise TypeError(f"expected a model name or an nn.Module, got {type(model_or_name)}")
    if model_kwargs:
        raise TypeError(
            f"model keyword arguments ({', '.join(model_kwargs)}) apply to registered names only"
        )
    name = getattr(model_or_name, "model_name", None) or type(model_or_name).__name__
    if input_size is None:
        registered = getattr(model_or_name, "model_name", None)
        if registered is None:
            raise ValueError(f"give input_size for {name}: it is not a registered model")
        input_size = model_info(registered).input_size
    return meta_copy(model_or_name), name, tuple(input_size)


def _input_tensors(args: Sequence[Any], kwargs: Mapping[str, Any]) -> list[Tensor]:
    found: list[Tensor] = []
    stack: list[Any] = [list(args), list(kwargs.values())]
    while stack:
        item = stack.pop(0)
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            stack[:0] = list(item)
        elif isinstance(item, Mapping):
            stack[:0] = list(item.values())
    return found


def _validate_size(size: tuple[int, ...], batch_size: int) -> None:
    if not size or any(not isinstance(s, int) or s <= 0 for s in size):
        raise ValueError(f"input size must be positive integers (C, H, W), got {size}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch size must be a positive integer, got {batch_size}")


def _dtype(model: nn.Module) -> torch.dtype:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


InputData = Tensor | Sequence[Any] | Mapping[str, Any]


def _meta_inputs(value: Any) -> Any:
    """Example inputs with every tensor replaced by an empty meta tensor of its shape and
    dtype (nested lists, tuples and dicts kept; anything else passed as it is)."""
    if isinstance(value, Tensor):
        return torch.empty(value.shape, dtype=value.dtype, device="meta")
    if isinstance(value, Mapping):
        return {k: _meta_inputs(v) for k, v in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # a namedtuple
        return type(value)(*(_meta_inputs(v) for v in value))
    if isinstance(value, (list, tuple)):
        return type(value)(_meta_inputs(v) for v in value)
    return value


def _call_arguments(
    input_data: InputData, forward_kwargs: Mapping[str, Any] | None
) -> tuple[list[Any], dict[str, Any]]:
    """torchinfo's ``input_data`` convention: a tensor is the one input, a list or tuple the
    positional inputs, a dict the keyword inputs; ``forward_kwargs`` adds keyword inputs."""
    if isinstance(input_data, Tensor):
        args: list[Any] = [input_data]
        kwargs: dict[str, Any] = {}
    elif isinstance(input_data, Mapping):
        args, kwargs = [], dict(input_data)
    elif isinstance(input_data, (list, tuple)):
        args, kwargs = list(input_data), {}
    else:
        raise TypeError(
            "input_data must be a tensor, a list/tuple of positional inputs or a dict of "
            f"keyword inputs, got {type(input_data).__name__}"
        )
    kwargs.update(forward_kwargs or {})
    return _meta_inputs(args), _meta_inputs(kwargs)


def summary(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    input_data: InputData | None = None,
    forward_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 1,
    depth: int | None = None,
    **model_kwargs: Any,
) -> LayerTable:
    """The exact layer table of a model at an input size: shapes, parameters, MACs, receptive
    fields, per module call in execution order, with totals.

    ``model_or_name`` is a registered name (built on the meta device with ``model_kwargs``; an
    ``input_size`` whose C differs from the model's default builds it with ``in_channels=C``)
    or any ``nn.Module`` (traced on a meta copy: the model itself is left as it was).
    ``input_size`` is (C, H, W) without the batch (default: the registered model's), or (H, W)
    for a registered name. The model is traced in eval mode. ``depth`` limits the rows shown
    (0: the model only; 1: its children; None: everything).

    Instead of a size, ``input_data`` gives example inputs, as torchinfo takes them: a tensor;
    a list or tuple of positional inputs; a dict of keyword inputs. ``forward_kwargs`` adds
    keyword inputs to either. Only their shapes and dtypes matter (the trace copies them to
    the meta device); the batch is their first dim. Models may return tensors, tuples, dicts
    or None.

    Raises ``ValueError`` (a one-line message naming the layer) if the forward pass fails at
    this input, e.g. an input too small for some layer.

    >>> table = summary("resnet18")
    >>> table.total_params, table.total_macs
    (11689512, 1814073344)
    >>> table.row("layer4").output_hwc
    [7, 7, 512]
    """
    if input_data is not None or forward_kwargs is not None:
        if input_size is not None:
            raise ValueError("give input_size or input_data, not both")
        if input_data is None:
            input_data = {}
        args, kwargs = _call_arguments(input_data, forward_kwargs)
        inputs = _input_tensors(args, kwargs)
        if not inputs:
            raise ValueError("input_data holds no tensor: give at least one example input")
        first = inputs[0]
        input_size = tuple(int(s) for s in first.shape[1:]) or (1,)
        batch_size = int(first.shape[0]) if first.dim() else 1
        meta_model, name, size = _prepare(model_or_name, input_size, dict(model_kwargs))
        meta_model.eval()
        dtype = first.dtype if first.is_floating_point() else _dtype(meta_model)
    else:
        meta_model, name, size = _prepare(model_or_name, input_size, dict(model_kwargs))
        _validate_size(size, batch_size)
        meta_model.eval()
        dtype = _dtype(meta_model)
        args, kwargs = [torch.empty((batch_size, *size), device="meta", dtype=dtype)], {}
        inputs = args
    tracer = Tracer(meta_model)
    run_trace(tracer, args, kwargs)
    rows = rows_of(tracer)
    flow = flow_of(tracer)
    root = next(c for c in tracer.calls if c.depth == 0)
    not_run = not_run_of(meta_model, tracer)
    uncounted = Counter[tuple[str, str]]()
    for layer, op, count in root.all_uncounted():
        uncounted[(layer, op)] += count
    parameters = list(meta_model.parameters())
    buffers = list(meta_model.buffers())
    return LayerTable(
        model=name,
        input_size=size,
        batch_size=batch_size,
        depth=depth,
        all_rows=tuple(rows),
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        total_macs=root.total_macs(),
        uncounted=tuple(UncountedOp(layer, op, n) for (layer, op), n in uncounted.items()),
        not_run=tuple(not_run),
        param_bytes=sum(p.numel() * p.element_size() for p in parameters),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        input_bytes=sum(t.numel() * t.element_size() for t in inputs),
        activation_bytes=sum(r.output_bytes for r in rows if r.is_leaf),
        dtype=str(dtype).removeprefix("torch."),
        flow=flow,
    )


def total_macs(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    input_data: InputData | None = None,
    batch_size: int = 1,
    **model_kwargs: Any,
) -> int:
    """The MACs of one forward pass, batch included: the layer table's total (the one counter
    of the package; ``MACS_CONVENTION``), for callers that want the number only, such as
    ``cnnzoo bench``. Same arguments as :func:`summary`; the trace runs on the meta device."""
    table = summary(
        model_or_name, input_size, input_data=input_data, batch_size=batch_size, **model_kwargs
    )
    return table.total_macs


def trace_rows(
    model_or_name: str | nn.Module, input_size: Sequence[int] | None = None, **model_kwargs: Any
) -> tuple[list[LayerRow], tuple[str, str, str] | None]:
    """Rows of a trace that bypasses the model's own input check and stops at the first failing
    layer: (rows so far, (layer, type, message) of the failure or None). For check_geometry."""
    meta_model, _, size = _prepare(model_or_name, input_size, dict(model_kwargs))
    _validate_size(size, 1)
    meta_model.eval()
    if isinstance(meta_model, ClassifierModel):
        # Our copy only: let the layers themselves show where the arithmetic goes wrong.
        object.__setattr__(meta_model, "check_input", lambda x: None)
    tracer = Tracer(meta_model)
    failure = None
    x = torch.empty((1, *size), device="meta", dtype=_dtype(meta_model))
    try:
        run_trace(tracer, [x], {})
    except TraceError as error:
        failure = (error.layer, error.layer_type, str(error))
    return rows_of(tracer), failure
