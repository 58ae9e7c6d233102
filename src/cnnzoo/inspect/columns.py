"""The columns of a layer table and the pieces every format shares (title, cells, footnotes).

Columns are chosen by name or by set: ``"default"``, ``"wide"``, ``"all"``, or a list /
comma-separated string of column keys (see ``COLUMNS``).
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnzoo._format import human_count

if TYPE_CHECKING:
    from cnnzoo.inspect.rows import LayerRow, LayerTable

__all__ = ["COLUMNS", "COLUMN_SETS", "Column", "ColumnsArg", "resolve_columns", "shape_text"]

ColumnsArg = str | Sequence[str] | None
# A non-uniform grid (adaptive pooling with uneven windows): no single jump or start.
UNEVEN = "uneven"
UNEVEN_MARK = "*"
UNEVEN_NOTE = (
    f"{UNEVEN_MARK} uneven grid (adaptive pooling, torch's windows floor(i*n/o)..ceil((i+1)*n/o)):"
    " windows differ in width or spacing; RF is the widest, no single jump"
)
TEXT_WIDTH = 120  # a terminal the default text table must fit


def _dims(values: Sequence[int | float] | None) -> str:
    if values is None:
        return "-"
    return "x".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def _count(n: int) -> str:
    return f"{n:,}" if n else "-"


def _window(row: LayerRow) -> str:
    """'3x3 s2 p1', plus ' d2' (dilation), ' g32' (groups), ' ceil' (ceil_mode) when set."""
    if row.kernel is None or row.stride is None or row.padding is None:
        return "-"

    def compact(values: Sequence[int]) -> str:
        return str(values[0]) if len(set(values)) == 1 else _dims(values)

    parts = [_dims(row.kernel), f"s{compact(row.stride)}", f"p{compact(row.padding)}"]
    if row.dilation is not None and any(d != 1 for d in row.dilation):
        parts.append(f"d{compact(row.dilation)}")
    if row.groups is not None and row.groups != 1:
        parts.append(f"g{row.groups}")
    if row.ceil_mode:
        parts.append("ceil")
    return " ".join(parts)


def _bytes(n: int) -> str:
    """Decimal units, as disk and memory tools print them: '602.11 KB', '46.76 MB'."""
    for scale, unit in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{n} B"


@dataclass(frozen=True)
class Column:
    """A column: its header, alignment and how a row shows in text and in data formats."""

    key: str
    header: str
    right: bool
    text: Callable[[LayerRow], str]
    value: Callable[[LayerRow], Any]


def _reach(row: LayerRow) -> str:
    """First-last input pixel the row's units read, per axis ("0-222x0-222")."""
    if row.rf_reach is None:
        return ""
    return "x".join(f"{first}-{last}" for first, last in row.rf_reach)


def _list_value(values: Sequence[int | float] | None) -> str:
    return "" if values is None else _dims(values)


COLUMNS: dict[str, Column] = {
    c.key: c
    for c in (
        Column("layer", "layer", False, lambda r: r.name, lambda r: r.name),
        Column("type", "type", False, lambda r: r.type, lambda r: r.type),
        Column("kind", "kind", False, lambda r: r.kind, lambda r: r.kind),
        Column("depth", "depth", True, lambda r: str(r.depth), lambda r: r.depth),
        Column("call", "call", True, lambda r: str(r.call_index), lambda r: r.call_index),
        Column(
            "input",
            "input",
            True,
            lambda r: _dims(r.input_hwc),
            lambda r: _list_value(r.input_hwc),
        ),
        Column(
            "output",
            "output",
            True,
            lambda r: _dims(r.output_hwc),
            lambda r: _list_value(r.output_hwc),
        ),
        Column(
            "window", "window", False, _window, lambda r: "" if r.kernel is None else _window(r)
        ),
        Column(
            "kernel", "kernel", True, lambda r: _dims(r.kernel), lambda r: _list_value(r.kernel)
        ),
        Column(
            "stride", "stride", True, lambda r: _dims(r.stride), lambda r: _list_value(r.stride)
        ),
        Column(
            "padding",
            "padding",
            True,
            lambda r: _dims(r.padding),
            lambda r: _list_value(r.padding),
        ),
        Column(
            "dilation",
            "dilation",
            True,
            lambda r: _dims(r.dilation),
            lambda r: _list_value(r.dilation),
        ),
        Column(
            "groups",
            "groups",
            True,
            lambda r: "-" if r.groups is None else str(r.groups),
            lambda r: "" if r.groups is None else r.groups,
        ),
        Column(
            "ceil_mode",
            "ceil",
            False,
            lambda r: "-" if r.ceil_mode is None else str(r.ceil_mode).lower(),
            lambda r: "" if r.ceil_mode is None else r.ceil_mode,
        ),
        Column("params", "params", True, lambda r: _count(r.params), lambda r: r.params),
        Column("macs", "MACs", True, lambda r: _count(r.macs), lambda r: r.macs),
        Column("flops", "FLOPs", True, lambda r: _count(r.flops), lambda r: r.flops),
        Column(
            "rf",
            "RF",
            True,
            lambda r: _dims(r.receptive_field) + (UNEVEN_MARK if r.rf_uneven else ""),
            lambda r: _list_value(r.receptive_field),
        ),
        Column(
            "jump",
            "jump",
            True,
            lambda r: UNEVEN if r.rf_uneven else _dims(r.jump),
            lambda r: UNEVEN if r.rf_uneven else _list_value(r.jump),
        ),
        Column(
            "rf_start",
            "RF start",
            True,
            lambda r: UNEVEN if r.rf_uneven else _dims(r.rf_start),
            lambda r: UNEVEN if r.rf_uneven else _list_value(r.rf_start),
        ),
        Column("rf_reach", "pixels read", True, lambda r: _reach(r), lambda r: _reach(r)),
        Column(
            "memory",
            "output bytes",
            True,
            lambda r: _bytes(r.output_bytes) if r.output_bytes else "-",
            lambda r: r.output_bytes,
        ),
    )
}

COLUMN_SETS: dict[str, tuple[str, ...]] = {
    "default": ("layer", "type", "output", "window", "params", "macs", "rf"),
    "wide": ("layer", "type", "input", "output", "window", "params", "macs", "flops", "rf", "jump"),
    "all": tuple(COLUMNS),
}


def resolve_columns(columns: ColumnsArg, default: str = "default") -> list[Column]:
    """Column objects for a set name, a comma-separated string or a list of keys."""
    if columns is None:
        columns = default
    if isinstance(columns, str):
        if columns in COLUMN_SETS:
            return [COLUMNS[k] for k in COLUMN_SETS[columns]]
        columns = [c.strip() for c in columns.split(",") if c.strip()]
    unknown = [c for c in columns if c not in COLUMNS]
    if unknown or not columns:
        raise ValueError(
            f"unknown columns {', '.join(map(repr, unknown)) or '(none given)'}; choose from "
            f"{', '.join(COLUMNS)} or a set: {', '.join(COLUMN_SETS)}"
        )
    return [COLUMNS[k] for k in columns]


# ---- shared pieces ----------------------------------------------------------------------------


def shape_text(table: LayerTable) -> str:
    """The input as the rows show shapes: H x W x C for images (one orientation everywhere)."""
    size = table.input_size
    hwc = (*size[1:], size[0]) if len(size) == 3 else size
    return "x".join(map(str, hwc))


def _title(table: LayerTable) -> str:
    return (
        f"{table.model} at input {shape_text(table)}, batch {table.batch_size} "
        f"({table.dtype}, eval mode)"
    )


def _layer_label(table: LayerTable, row: LayerRow) -> str:
    label = row.name or table.model
    if row.call_index and row.kind == "module":
        label += f" (call {row.call_index + 1})"
    return label


def _cell(table: LayerTable, row: LayerRow, column: Column) -> str:
    return _layer_label(table, row) if column.key == "layer" else column.text(row)


def _short(n: int) -> str:
    """Three decimals, as torchvision documents GFLOPS: '1.814G', '326.520K'."""
    return human_count(n, digits=3)


def _footer_lines(table: LayerTable) -> list[str]:
    """Totals, the MAC convention, memory, what was not run or not counted: one fact a line."""
    lines = [
        f"Total params: {table.total_params:,} (trainable {table.trainable_params:,}, "
        f"non-trainable {table.non_trainable_params:,})",
        f"Total MACs: {table.total_macs:,} ({_short(table.total_macs)}); "
        f"FLOPs: {table.total_flops:,} ({_short(table.total_flops)})"
        + (
            " -- PARTIAL: some arithmetic has no counting rule, see below"
            if table.macs_partial
            else ""
        ),
        "MACs are multiply-accumulates of conv and linear weights (and other matrix products) "
        f"at batch {table.batch_size}; no bias adds, norms, activations or pooling "
        '(torchvision\'s "GFLOPS"). FLOPs = 2 x MACs.',
        f"Memory: input {_bytes(table.input_bytes)}, params "
        f"{_bytes(table.param_bytes)}, buffers {_bytes(table.buffer_bytes)}, "
        f"activations {_bytes(table.activation_bytes)} (leaf outputs of one forward pass)",
    ]
    if table.not_run:
        lines.append(
            "Not run at this input in eval mode (their params are in the total): "
            + "; ".join(f"{n.name} ({n.type}, {n.params:,} params)" for n in table.not_run)
        )
    if any(row.rf_uneven for row in table.rows):
        lines.append(UNEVEN_NOTE)
    if table.uncounted:
        lines.append(
            "Not counted (arithmetic without a counting rule): "
            + "; ".join(f"{u.op} x{u.count} in {u.layer or table.model}" for u in table.uncounted)
        )
    return lines


def _wrap(line: str, width: int = TEXT_WIDTH) -> list[str]:
    return textwrap.wrap(line, width=width, subsequent_indent="  ", break_on_hyphens=False)
