"""The model page: metadata, the architecture diagram and the layer table, composed (issue 11).

The table renders itself (``cnnzoo.inspect.render``), the diagram draws itself (``svg.py``);
this module only puts them on one page. ``ModelPage`` and ``Diagram`` are the strings the
functions return, with the methods Jupyter looks for (``_repr_html_``, ``_repr_svg_``), so a
page or a diagram as the last expression of a cell shows itself.
"""

from __future__ import annotations

import html

from cnnzoo.draw.graph import build_graph
from cnnzoo.draw.layout import layout
from cnnzoo.draw.svg import to_svg
from cnnzoo.inspect.columns import ColumnsArg, shape_text
from cnnzoo.inspect.render_html import html_document, html_fragment
from cnnzoo.inspect.rows import LayerTable

__all__ = ["Diagram", "ModelPage", "diagram_svg", "model_page"]

PAGE_STYLE = """
.cnnzoo-page section { margin: 1.5em 0; }
.cnnzoo-page dl.meta { display: grid; grid-template-columns: max-content auto; gap: 0.2em 1em; }
.cnnzoo-page dl.meta dt { font-weight: 600; }
.cnnzoo-page dl.meta dd { margin: 0; }
.cnnzoo-page .diagram { overflow: auto; max-height: 80vh; border: 1px solid #ddd;
  padding: 0.5em; }
""".strip()


class Diagram(str):
    """An SVG diagram (the SVG text itself); Jupyter shows it as a picture."""

    def _repr_svg_(self) -> str:
        return str(self)


class ModelPage(str):
    """A self-contained HTML model page (the document itself); Jupyter shows its body."""

    fragment: str

    def __new__(cls, document: str, fragment: str) -> ModelPage:
        page = super().__new__(cls, document)
        page.fragment = fragment
        return page

    def _repr_html_(self) -> str:
        return self.fragment


def diagram_svg(table: LayerTable, depth: int | None = None) -> Diagram:
    """The SVG diagram of an already collected layer table."""
    graph = build_graph(table, depth)
    return Diagram(to_svg(graph, layout(graph)))


def _metadata(table: LayerTable) -> list[tuple[str, str]]:
    from cnnzoo.registry import model_info

    facts = []
    try:
        info = model_info(table.model)
    except (KeyError, ValueError):
        info = None
    if info is not None:
        facts.append(("Paper", f"{info.paper.authors} ({info.paper.year}), {info.paper.title}"))
        facts.append(("Link", info.paper.link))
        facts.append(("Year", str(info.paper.year)))
        facts.append(("Summary", info.summary))
    facts.append(("Input", f"{shape_text(table)}, batch {table.batch_size}"))
    facts.append(("Parameters", f"{table.total_params:,}"))
    partial = " (lower bound)" if table.macs_partial else ""
    facts.append(("MACs", f"{table.total_macs:,}{partial}"))
    return facts


def model_page(
    table: LayerTable, columns: ColumnsArg = None, *, diagram_depth: int | None = None
) -> ModelPage:
    """One self-contained HTML page: the model's metadata, its diagram (at ``diagram_depth``;
    None draws every layer) and its layer table with collapsible blocks. No external
    resources: it opens offline."""
    title = html.escape(f"{table.model}: architecture and layers")
    meta = "\n".join(
        f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in _metadata(table)
    )
    diagram = ""
    if table.flow is not None:
        diagram = (
            '<section id="diagram"><h2>Diagram</h2>\n<div class="diagram">\n'
            + diagram_svg(table, diagram_depth)
            + "</div></section>\n"
        )
    fragment = (
        f'<div class="cnnzoo-page">\n<style>\n{PAGE_STYLE}\n</style>\n<h1>{title}</h1>\n'
        f'<section id="metadata"><dl class="meta">\n{meta}\n</dl></section>\n'
        + diagram
        + '<section id="layers"><h2>Layers</h2>\n'
        + html_fragment(table, columns)
        + "</section>\n</div>\n"
    )
    return ModelPage(html_document(f"{table.model}: architecture and layers", fragment), fragment)
