"""The facts of a finished trace: its calls as table rows, its data-flow graph, and the
modules that never ran."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

from torch import Tensor, nn

from cnnzoo.inspect.geometry import Geo
from cnnzoo.inspect.rows import (
    INPUT_NODE,
    DataFlow,
    FlowNode,
    Join,
    LayerRow,
    NotRun,
    Numbers,
    Shape,
)
from cnnzoo.inspect.trace import Tracer

__all__ = ["flow_of", "not_run_of", "rows_of"]


def _hwc(tensor: Tensor | None) -> Shape | None:
    if tensor is None:
        return None
    shape = [int(s) for s in tensor.shape]
    if len(shape) == 4:
        return [shape[2], shape[3], shape[1]]
    return shape[1:]


def _number(value: float) -> int | float:
    rounded = round(value)
    return int(rounded) if abs(value - rounded) < 1e-9 else round(value, 4)


def _numbers(values: Sequence[float] | None) -> Numbers | None:
    return None if values is None else [_number(v) for v in values]


def _pixels(intervals: Sequence[tuple[float, float]]) -> tuple[tuple[int, int], ...]:
    return tuple((round(low), round(high)) for low, high in intervals)


def _windows(geo: Geo) -> tuple[tuple[tuple[int, int], ...], ...] | None:
    windows = geo.windows()
    return None if windows is None else tuple(_pixels(axis) for axis in windows)


def rows_of(tracer: Tracer) -> list[LayerRow]:
    params: dict[int, int] = {}
    rows = []
    for call in sorted(tracer.calls, key=lambda c: c.order):
        if call.module is not None and id(call.module) not in params:
            params[id(call.module)] = sum(p.numel() for p in call.module.parameters())
        window = (
            call.window
            if call.windows == 1 and (call.kind == "function" or not call.children)
            else None
        )
        # Vectors in, vectors out: no spatial axes, no receptive field.
        geo = call.output_geo if call.output_geo is not None and call.output_geo.axes else None
        rows.append(
            LayerRow(
                name=call.name,
                type=call.type,
                kind=call.kind,
                depth=call.depth,
                call_index=call.call_index,
                is_leaf=not call.children,
                input_hwc=_hwc(call.input),
                output_hwc=_hwc(call.output),
                kernel=None if window is None else list(window.kernel),
                stride=None if window is None else list(window.stride),
                padding=None if window is None else list(window.padding),
                dilation=None if window is None else list(window.dilation),
                groups=None if window is None else window.groups,
                ceil_mode=None if window is None else window.ceil_mode,
                params=0 if call.module is None else params[id(call.module)],
                macs=call.total_macs(),
                receptive_field=None if geo is None else _numbers(geo.rf),
                jump=None if geo is None else _numbers(geo.jump),
                rf_start=None if geo is None else _numbers(geo.start),
                rf_uneven=geo is not None and geo.uneven,
                rf_windows=None if geo is None else _windows(geo),
                rf_reach=None if geo is None else _pixels(geo.reach),
                output_bytes=call.output_bytes,
                uncounted_ops=tuple(sorted(op for _, op, _ in call.all_uncounted())),
            )
        )
    return rows


def flow_of(tracer: Tracer) -> DataFlow:
    """The data-flow graph of the trace, its nodes numbered like the rows and joins."""
    calls = sorted(tracer.calls, key=lambda c: c.order)
    row_of = {id(call): i for i, call in enumerate(calls)}
    parents = [-1] * len(calls)
    for call in calls:
        for child in call.children:
            parents[row_of[id(child)]] = row_of[id(call)]
    join_of = {order: k for k, (order, *_rest) in enumerate(tracer.joins)}
    names: Counter[str] = Counter()
    joins = []
    for _, name, kind, owner, output in tracer.joins:
        suffix = f"#{names[name]}" if names[name] else ""
        names[name] += 1
        joins.append(Join(name + suffix, kind, row_of[id(owner)], _hwc(output)))

    def node(source: Any) -> FlowNode:
        if source is None:
            return INPUT_NODE
        if isinstance(source, int):
            return ("join", join_of[source])
        return ("row", row_of[id(source)])

    edges = tuple((node(s), node(t)) for s, t in tracer.edges)
    return DataFlow(joins=tuple(joins), edges=edges, parents=tuple(parents))


def not_run_of(model: nn.Module, tracer: Tracer) -> list[NotRun]:
    """The outermost modules of which nothing ran (a Sequential whose children were called one
    by one did run, in effect)."""
    touched = {""}
    for call in tracer.calls:
        if call.module is not None:
            parts = call.name.split(".")
            touched.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [
        NotRun(name, type(module).__name__, sum(p.numel() for p in module.parameters()))
        for name, module in model.named_modules()
        if name not in touched and name.rpartition(".")[0] in touched
    ]
