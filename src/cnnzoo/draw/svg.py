"""The diagram as SVG, written by hand: well-formed XML, no fonts or files outside it.

Every node is a ``<g class="node ...">`` with ``data-name``, ``data-type`` and ``data-kind``;
every edge a ``<path class="edge">`` with ``data-source`` and ``data-target`` (node ids): the
browser tests and anyone scripting the page can count them.
"""

from __future__ import annotations

from xml.sax.saxutils import escape, quoteattr

from cnnzoo.draw.graph import DiagramGraph
from cnnzoo.draw.layout import Layout
from cnnzoo.draw.style import EDGE, FILL, FRAME_STROKE, STROKE

__all__ = ["to_svg"]

FONT = "font-family: DejaVu Sans, Helvetica, Arial, sans-serif"


def _points(points: list[tuple[float, float]]) -> str:
    head, *rest = points
    if len(points) == 2:
        return f"M{head[0]:.1f},{head[1]:.1f} L{rest[0][0]:.1f},{rest[0][1]:.1f}"
    # A smooth path through the dummy points of a long edge.
    parts = [f"M{head[0]:.1f},{head[1]:.1f}"]
    previous = head
    for x, y in rest:
        middle = (previous[1] + y) / 2
        parts.append(f"C{previous[0]:.1f},{middle:.1f} {x:.1f},{middle:.1f} {x:.1f},{y:.1f}")
        previous = (x, y)
    return " ".join(parts)


def to_svg(graph: DiagramGraph, layout: Layout) -> str:
    """The SVG document of a laid-out diagram graph."""
    width, height = layout.width, layout.height
    out = [
        '<svg xmlns="http://www.w3.org/2000/svg" class="cnnzoo-diagram" '
        f'width="{width:.0f}" height="{height:.0f}" viewBox="0 0 {width:.0f} {height:.0f}" '
        f'data-model={quoteattr(graph.model)} data-depth="{graph.depth}">',
        f"<title>{escape(graph.model)}: architecture diagram</title>",
        '<defs><marker id="cnnzoo-arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        f'<path d="M0,0 L10,5 L0,10 z" fill="{EDGE}"/></marker></defs>',
        '<rect width="100%" height="100%" fill="#ffffff"/>',
        '<g class="frames">',
    ]
    groups = {g.name: g for g in graph.groups}
    for name, (x0, y0, x1, y1) in sorted(layout.frames.items(), key=lambda f: groups[f[0]].depth):
        group = groups[name]
        out.append(
            f'<g class="frame" data-group={quoteattr(name)} data-type={quoteattr(group.type)}>'
            f'<rect x="{x0:.1f}" y="{y0:.1f}" width="{x1 - x0:.1f}" height="{y1 - y0:.1f}" '
            f'rx="6" fill="none" stroke="{FRAME_STROKE}" stroke-dasharray="4 3"/>'
            f'<text x="{x0 + 4:.1f}" y="{y0 + 9:.1f}" style="{FONT}; font-size: 9px" '
            f'fill="#5b6670">{escape(name)}</text></g>'
        )
    out.append("</g>")
    out.append('<g class="edges">')
    for (source, target), points in layout.routes.items():
        out.append(
            f'<path class="edge" data-source="{source}" data-target="{target}" '
            f'd="{_points(points)}" fill="none" stroke="{EDGE}" stroke-width="1.2" '
            'marker-end="url(#cnnzoo-arrow)"/>'
        )
    out.append("</g>")
    out.append('<g class="nodes">')
    for node in graph.nodes:
        box = layout.boxes[node.id]
        fill, stroke = FILL[node.style], STROKE[node.style]
        attributes = (
            f'class="node {node.style}" id="{node.id}" data-name={quoteattr(node.name)} '
            f"data-type={quoteattr(node.type)} data-kind={quoteattr(node.kind)}"
        )
        tip = escape(f"{node.name}: {node.type} {node.shape}".strip())
        if node.kind == "join":
            out.append(
                f"<g {attributes}><title>{tip}</title>"
                f'<rect x="{box.left:.1f}" y="{box.top:.1f}" width="{box.width:.1f}" '
                f'height="{box.height:.1f}" rx="{box.height / 2:.1f}" fill="{fill}" '
                f'stroke="{stroke}"/>'
                f'<text x="{box.x:.1f}" y="{box.y + 4:.1f}" text-anchor="middle" '
                f'style="{FONT}; font-size: 12px; font-weight: bold">{escape(node.title)}</text>'
                "</g>"
            )
            continue
        out.append(
            f"<g {attributes}><title>{tip}</title>"
            f'<rect x="{box.left:.1f}" y="{box.top:.1f}" width="{box.width:.1f}" '
            f'height="{box.height:.1f}" rx="4" fill="{fill}" stroke="{stroke}"/>'
            f'<text x="{box.x:.1f}" y="{box.y - 3:.1f}" text-anchor="middle" '
            f'style="{FONT}; font-size: 11px; font-weight: 600">{escape(node.title)}</text>'
            f'<text x="{box.x:.1f}" y="{box.y + 12:.1f}" text-anchor="middle" '
            f'style="{FONT}; font-size: 10px" fill="#444444">{escape(node.shape)}</text>'
            "</g>"
        )
    out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"
