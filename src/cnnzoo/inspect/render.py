"""Render a layer table: pure functions of a :class:`~cnnzoo.inspect.rows.LayerTable`.

Formats: aligned text (narrowed to a width, 120 by default), Markdown, CSV, JSON, LaTeX
(``longtable`` + ``booktabs``) here; HTML (the table, a fragment for pages and Jupyter) in
``render_html.py``. Columns and shared pieces: ``columns.py``.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cnnzoo._format import text_table

if TYPE_CHECKING:
    from cnnzoo.inspect.rows import LayerTable

from cnnzoo.inspect.columns import (
    COLUMN_SETS,
    COLUMNS,
    TEXT_WIDTH,
    Column,
    ColumnsArg,
    _cell,
    _footer_lines,
    _title,
    _wrap,
    resolve_columns,
    shape_text,
)
from cnnzoo.inspect.render_html import html_document, html_fragment, to_html

__all__ = [
    "COLUMNS",
    "COLUMN_SETS",
    "ColumnsArg",
    "html_document",
    "html_fragment",
    "resolve_columns",
    "shape_text",
    "to_csv",
    "to_dict",
    "to_html",
    "to_json",
    "to_latex",
    "to_markdown",
    "to_text",
]

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
