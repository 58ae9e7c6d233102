"""Render a layer table: pure functions of a :class:`~cnnzoo.inspect.rows.LayerTable`.

Formats: aligned text (fits 120 columns with the default columns), Markdown, CSV, JSON, LaTeX
(``longtable`` + ``booktabs``) and a self-contained HTML page. Columns are chosen by name or by
set: ``"default"``, ``"wide"``, ``"all"``, or a list / comma-separated string of column keys
(see ``COLUMNS``).
"""

from __future__ import annotations

import csv
import html
import io
import json
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cnnzoo._format import human_count, text_table

if TYPE_CHECKING:
    from cnnzoo.inspect.rows import LayerRow, LayerTable

__all__ = [
    "COLUMNS",
    "COLUMN_SETS",
    "ColumnsArg",
    "html_document",
    "html_fragment",
    "resolve_columns",
    "to_csv",
    "to_dict",
    "to_html",
    "to_json",
    "to_latex",
    "to_markdown",
    "to_text",
]

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


# ---- formats ------------------------------------------------------------------------------------


# Default text columns dropped or shortened, in this order, until the table fits the width.
_NARROWING = ("window", "type:12", "type")
_MIN_LAYER = 12  # a layer name is never cut shorter than this


def _shorten(text: str, limit: int) -> str:
    """Keep the end of a dotted name (the part that differs between rows): '~h3x3dbl_3b.conv'."""
    return text if len(text) <= limit else "~" + text[len(text) - limit + 1 :]


def _text_cells(
    table: LayerTable, chosen: Sequence[Column], type_limit: int | None, layer_limit: int | None
) -> list[list[str]]:
    rows = []
    for row in table.rows:
        cells = []
        for column in chosen:
            cell = _cell(table, row, column)
            if column.key == "type" and type_limit is not None:
                cell = _shorten(cell, type_limit)
            if column.key == "layer":
                indent = "  " * max(row.depth - 1, 0)
                if layer_limit is not None:
                    cell = _shorten(cell, max(layer_limit - len(indent), _MIN_LAYER))
                cell = indent + cell
            cells.append(cell)
        rows.append(cells)
    return rows


def _fitted_body(table: LayerTable, chosen: list[Column], width: int, explicit: bool) -> str:
    """The aligned table; for the default columns, narrowed step by step to ``width``."""

    def body(columns: list[Column], type_limit: int | None, layer_limit: int | None) -> str:
        cells = _text_cells(table, columns, type_limit, layer_limit)
        return text_table([c.header for c in columns], cells, right=[c.right for c in columns])

    def widest(text: str) -> int:
        return max(len(line) for line in text.splitlines())

    text = body(chosen, None, None)
    if explicit or widest(text) <= width:
        return text
    type_limit: int | None = None
    for step in _NARROWING:
        key, _, limit = step.partition(":")
        if limit:
            type_limit = int(limit)
        else:
            chosen = [c for c in chosen if c.key != key]
        text = body(chosen, type_limit, None)
        if widest(text) <= width:
            return text
    # Still too wide: cut the layer names (from the left, keeping the distinctive end).
    keys = [c.key for c in chosen]
    if "layer" not in keys:
        return text
    cells = _text_cells(table, chosen, type_limit, None)
    layer_width = max(len(row[keys.index("layer")]) for row in cells)
    excess = widest(text) - width
    return body(chosen, type_limit, max(layer_width - excess, _MIN_LAYER))


def to_text(table: LayerTable, columns: ColumnsArg = None, *, width: int | None = None) -> str:
    """An aligned plain-text table with a title and totals, ``width`` characters wide at most
    (default 120). With the default columns the table narrows itself to fit: below 120 it
    drops the window column, shortens then drops the type column, then shortens layer names
    (keeping their end); footnotes wrap. Columns given explicitly are all shown."""
    width = TEXT_WIDTH if width is None else width
    if width < 40:
        raise ValueError(f"a text table needs at least 40 columns, got width={width}")
    chosen = resolve_columns(columns)
    body = _fitted_body(table, chosen, width, explicit=columns is not None)
    footer = [wrapped for line in _footer_lines(table) for wrapped in _wrap(line, width)]
    return "\n".join([*_wrap(_title(table), width), "", body, "", *footer]) + "\n"


def _markdown_escape(text: str) -> str:
    return text.replace("|", "\\|")


def to_markdown(table: LayerTable, columns: ColumnsArg = None) -> str:
    """A GitHub-flavoured Markdown table with a title and the totals as a list."""
    chosen = resolve_columns(columns)
    lines = [
        f"**{_markdown_escape(_title(table))}**",
        "",
        "| " + " | ".join(c.header for c in chosen) + " |",
        "|" + "|".join("---:" if c.right else "---" for c in chosen) + "|",
    ]
    for row in table.rows:
        cells = []
        for column in chosen:
            cell = _markdown_escape(_cell(table, row, column))
            cells.append(f"`{cell}`" if column.key == "layer" else cell)
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.extend(f"- {_markdown_escape(line)}" for line in _footer_lines(table))
    return "\n".join(lines) + "\n"


def to_csv(table: LayerTable, columns: ColumnsArg = None) -> str:
    """One line per row, raw numbers (no separators), every column unless asked otherwise."""
    chosen = resolve_columns(columns, default="all")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([c.key for c in chosen])
    for row in table.rows:
        writer.writerow([c.value(row) for c in chosen])
    return buffer.getvalue()


def to_dict(table: LayerTable) -> dict[str, Any]:
    """Everything in the table as plain Python data (what ``to_json`` writes)."""
    return {
        "model": table.model,
        "input_size": list(table.input_size),
        "batch_size": table.batch_size,
        "dtype": table.dtype,
        "depth": table.depth,
        "convention": table.convention,
        "total_params": table.total_params,
        "trainable_params": table.trainable_params,
        "non_trainable_params": table.non_trainable_params,
        "total_macs": table.total_macs,
        "total_flops": table.total_flops,
        "macs_partial": table.macs_partial,
        "memory_bytes": {
            "input": table.input_bytes,
            "params": table.param_bytes,
            "buffers": table.buffer_bytes,
            "activations": table.activation_bytes,
        },
        "not_run": [{"name": n.name, "type": n.type, "params": n.params} for n in table.not_run],
        "uncounted": [{"layer": u.layer, "op": u.op, "count": u.count} for u in table.uncounted],
        "rows": [row.to_dict() for row in table.rows],
    }


def to_json(table: LayerTable, indent: int | None = 2) -> str:
    return json.dumps(to_dict(table), indent=indent) + "\n"


_LATEX_SPECIALS = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _latex(text: str) -> str:
    return "".join(_LATEX_SPECIALS.get(ch, ch) for ch in text)


def to_latex(table: LayerTable, columns: ColumnsArg = None) -> str:
    """A ``longtable`` (needs ``\\usepackage{booktabs,longtable}``) with the totals below."""
    chosen = resolve_columns(columns)
    spec = "".join("r" if c.right else "l" for c in chosen)
    header = " & ".join(_latex(c.header) for c in chosen) + r" \\"
    lines = [
        r"% Requires \usepackage{booktabs,longtable}",
        rf"\begin{{longtable}}{{{spec}}}",
        rf"\caption{{{_latex(_title(table))}}}\\",
        r"\toprule",
        header,
        r"\midrule",
        r"\endhead",
    ]
    for row in table.rows:
        cells = []
        for column in chosen:
            cell = _latex(_cell(table, row, column))
            if column.key == "layer":
                indent = max(row.depth - 1, 0)
                cell = (rf"\hspace{{{indent}em}}" if indent else "") + rf"\texttt{{{cell}}}"
            cells.append(cell)
        lines.append(" & ".join(cells) + r" \\")
    lines.append(r"\bottomrule")
    lines.append(r"\end{longtable}")
    lines.append("")
    lines.extend(_latex(line) + r"\\" for line in _footer_lines(table))
    return "\n".join(lines) + "\n"


# Scoped to ``.cnnzoo-table`` so the same markup sits in a page or in a Jupyter output cell.
TABLE_STYLE = """
.cnnzoo-table { font-family: system-ui, sans-serif; color: #222; }
.cnnzoo-table table { border-collapse: collapse; font-size: 0.9em; }
.cnnzoo-table th, .cnnzoo-table td { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd;
  white-space: nowrap; }
.cnnzoo-table th { text-align: left; border-bottom: 2px solid #444; }
.cnnzoo-table td.num, .cnnzoo-table th.num { text-align: right;
  font-variant-numeric: tabular-nums; }
.cnnzoo-table td.layer { font-family: ui-monospace, monospace; }
.cnnzoo-table tr.container td { font-weight: 600; }
.cnnzoo-table tr.function td.layer { font-style: italic; }
.cnnzoo-table ul { line-height: 1.5; }
.cnnzoo-table button.toggle { border: none; background: none; cursor: pointer; font: inherit;
  padding: 0 0.3em 0 0; width: 1.3em; }
.cnnzoo-table tr.hidden { display: none; }
""".strip()

# Collapsing a block hides every row below it; expanding shows them again unless another
# collapsed block above them still hides them. No network, no libraries. Rows are found
# within their own table, so several tables (Jupyter cells) on one page do not interfere.
TABLE_SCRIPT = """
document.querySelectorAll(".cnnzoo-table button.toggle").forEach(function (button) {
  if (button.dataset.bound) { return; }
  button.dataset.bound = "1";
  button.addEventListener("click", function () {
    var row = button.closest("tr");
    var table = button.closest("table");
    var collapsed = row.classList.toggle("collapsed");
    button.textContent = collapsed ? "\u25b8" : "\u25be";
    button.setAttribute("aria-expanded", String(!collapsed));
    table.querySelectorAll("tr[data-path]").forEach(function (other) {
      var path = other.getAttribute("data-path").split(" ");
      var hidden = path.some(function (id) {
        var above = table.querySelector("tr[data-row='" + id + "']");
        return above !== null && above.classList.contains("collapsed");
      });
      other.classList.toggle("hidden", hidden);
    });
  });
});
""".strip()


def html_fragment(table: LayerTable, columns: ColumnsArg = None, *, script: bool = True) -> str:
    """The table as an HTML fragment (a ``div.cnnzoo-table`` with its own style, caption, rows
    with collapsible blocks, totals): what a page embeds and Jupyter shows."""
    chosen = resolve_columns(columns)
    head = "".join(
        f'<th class="num">{html.escape(c.header)}</th>'
        if c.right
        else f"<th>{html.escape(c.header)}</th>"
        for c in chosen
    )
    index_of = {id(row): i for i, row in enumerate(table.all_rows)}
    parents = table.flow.parents if table.flow is not None else None
    body = []
    for row in table.rows:
        classes = ["container" if not row.is_leaf else "leaf", row.kind]
        index = index_of[id(row)]
        path = []
        if parents is not None:
            above = parents[index]
            while above > 0:
                path.append(f"row{above}")
                above = parents[above]
        cells = []
        for column in chosen:
            text = html.escape(_cell(table, row, column))
            if column.key == "layer":
                indent = max(row.depth - 1, 0)
                if not row.is_leaf and row.depth > 0:
                    text = (
                        '<button class="toggle" type="button" aria-expanded="true" '
                        f'title="collapse or expand this block">\u25be</button>{text}'
                    )
                cells.append(
                    f'<td class="layer" style="padding-left: {indent + 0.8}em">{text}</td>'
                )
            else:
                cells.append(f'<td class="num">{text}</td>' if column.right else f"<td>{text}</td>")
        data_path = f' data-path="{" ".join(path)}"' if path else ""
        body.append(
            f'<tr id="row{index}" data-row="row{index}" class="{" ".join(classes)}"{data_path}>'
            + "".join(cells)
            + "</tr>"
        )
    footer = "\n".join(f"<li>{html.escape(line)}</li>" for line in _footer_lines(table))
    return (
        f'<div class="cnnzoo-table">\n<style>\n{TABLE_STYLE}\n</style>\n'
        f"<table>\n<caption>{html.escape(_title(table))}</caption>\n"
        f"<thead><tr>{head}</tr></thead>\n<tbody>\n"
        + "\n".join(body)
        + f"\n</tbody>\n</table>\n<ul>\n{footer}\n</ul>\n"
        + (f"<script>\n{TABLE_SCRIPT}\n</script>\n" if script else "")
        + "</div>\n"
    )


def html_document(title: str, body: str) -> str:
    """A self-contained HTML page around ``body``: no external resources."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }</style>\n"
        f"</head>\n<body>\n{body}</body>\n</html>\n"
    )


def to_html(
    table: LayerTable, columns: ColumnsArg = None, *, diagram_depth: int | None = None
) -> str:
    """A self-contained HTML page of the table: title, rows with collapsible blocks, totals.

    The table only; the model page (metadata, diagram and table) is
    :func:`cnnzoo.draw.model_page`. ``diagram_depth`` is accepted for compatibility with
    callers from before that split, and ignored."""
    del diagram_depth
    title = _title(table)
    return html_document(title, f"<h1>{html.escape(title)}</h1>\n" + html_fragment(table, columns))
