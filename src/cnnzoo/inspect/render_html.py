"""The layer table as HTML: a fragment (``div.cnnzoo-table``: its own scoped style, rows with
collapsible blocks, totals) that a page embeds and Jupyter shows, and a page of it alone.

The model page (metadata, diagram and table) is composed in :mod:`cnnzoo.draw.page`.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnzoo.inspect.rows import LayerTable

from cnnzoo.inspect.columns import ColumnsArg, _cell, _footer_lines, _title, resolve_columns

__all__ = ["TABLE_SCRIPT", "TABLE_STYLE", "html_document", "html_fragment", "to_html"]

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
