"""The diagram as PNG through matplotlib's Agg canvas (pure Python + wheels, no system binary).

The same layout as the SVG, drawn in pixel coordinates: one figure pixel per layout unit at
``scale`` 1.
"""

from __future__ import annotations

import io

from cnnzoo._optional import require
from cnnzoo.draw.graph import DiagramGraph
from cnnzoo.draw.layout import Layout
from cnnzoo.draw.style import EDGE, FILL, FRAME_STROKE, STROKE

__all__ = ["to_png"]


def to_png(graph: DiagramGraph, layout: Layout, *, scale: float = 1.5) -> bytes:
    """PNG bytes of a laid-out diagram graph, ``scale`` pixels per layout unit."""
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "PNG diagrams").FigureCanvasAgg
    Figure = require("matplotlib.figure", "PNG diagrams").Figure
    patches = require("matplotlib.patches", "PNG diagrams")
    FancyArrowPatch, FancyBboxPatch, Rectangle = (
        patches.FancyArrowPatch,
        patches.FancyBboxPatch,
        patches.Rectangle,
    )
    MplPath = require("matplotlib.path", "PNG diagrams").Path

    dpi = 100 * scale
    figure = Figure(figsize=(layout.width / 100, layout.height / 100), dpi=dpi)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.set_xlim(0, layout.width)
    axes.set_ylim(layout.height, 0)
    axes.axis("off")
    points_per_unit = 72 / 100  # a layout unit is one pixel at 100 dpi

    groups = {g.name: g for g in graph.groups}
    for name, (x0, y0, x1, y1) in layout.frames.items():
        axes.add_patch(
            Rectangle(
                (x0, y0),
                x1 - x0,
                y1 - y0,
                fill=False,
                edgecolor=FRAME_STROKE,
                linestyle=(0, (4, 3)),
                linewidth=0.8,
            )
        )
        del groups[name]
        axes.text(x0 + 4, y0 + 9, name, fontsize=9 * points_per_unit, color="#5b6670")
    for points in layout.routes.values():
        codes = [MplPath.MOVETO] + [MplPath.LINETO] * (len(points) - 1)
        axes.add_patch(
            FancyArrowPatch(
                path=MplPath(points, codes),
                arrowstyle="-|>,head_length=4,head_width=2.5",
                color=EDGE,
                linewidth=1.0,
                shrinkA=0,
                shrinkB=0,
            )
        )
    for node in graph.nodes:
        box = layout.boxes[node.id]
        radius = box.height / 2 if node.kind == "join" else 4
        axes.add_patch(
            FancyBboxPatch(
                (box.left, box.top),
                box.width,
                box.height,
                boxstyle=f"round,pad=0,rounding_size={radius}",
                facecolor=FILL[node.style],
                edgecolor=STROKE[node.style],
                linewidth=1.0,
            )
        )
        if node.kind == "join":
            axes.text(
                box.x,
                box.y,
                node.title,
                ha="center",
                va="center",
                weight="bold",
                fontsize=12 * points_per_unit,
            )
            continue
        axes.text(
            box.x,
            box.y - 6,
            node.title,
            ha="center",
            va="center",
            weight="bold",
            fontsize=11 * points_per_unit,
        )
        axes.text(
            box.x,
            box.y + 9,
            node.shape,
            ha="center",
            va="center",
            color="#444444",
            fontsize=10 * points_per_unit,
        )
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()
