"""``summary``: the exact layer table of a model at an input, collected on the meta device.

The pieces: ``meta.py`` (the model to trace), ``trace.py`` (one forward pass, watched),
``geometry.py`` / ``macs.py`` / ``shapes.py`` (per-op rules), ``rows.py`` (the facts).
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

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
from cnnzoo.inspect.trace import TraceError, Tracer, flow_of, not_run_of, rows_of, run_trace
from cnnzoo.models.base import ClassifierModel
from cnnzoo.registry import model_info

__all__ = [
    "MACS_CONVENTION",
    "DataFlow",
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


def summary(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
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

    Raises ``ValueError`` (a one-line message naming the layer) if the forward pass fails at
    this input, e.g. an input too small for some layer.

    >>> table = summary("resnet18")
    >>> table.total_params, table.total_macs
    (11689512, 1814073344)
    >>> table.row("layer4").output_hwc
    [7, 7, 512]
    """
    meta_model, name, size = _prepare(model_or_name, input_size, dict(model_kwargs))
    _validate_size(size, batch_size)
    meta_model.eval()
    dtype = _dtype(meta_model)
    shape = (batch_size, *size)
    tracer = Tracer(meta_model)
    run_trace(tracer, shape, dtype)
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
        input_bytes=math.prod(shape) * torch.empty((), dtype=dtype).element_size(),
        activation_bytes=sum(r.output_bytes for r in rows if r.is_leaf),
        dtype=str(dtype).removeprefix("torch."),
        flow=flow,
    )


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
    try:
        run_trace(tracer, (1, *size), _dtype(meta_model))
    except TraceError as error:
        failure = (error.layer, error.layer_type, str(error))
    return rows_of(tracer), failure
