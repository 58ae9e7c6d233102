"""Architecture diagrams drawn from the traced data flow of a model (issue 8).

>>> svg = draw("lenet5")                        # an SVG string
>>> png = draw("resnet50", format="png")        # PNG bytes
>>> page = draw("googlenet", format="html")     # a self-contained model page
>>> page = model_page(summary("googlenet"))     # the same, from a collected table

The boxes, arrows and frames come from :func:`cnnzoo.summary`'s facts (rows and their data
flow), so every registered model, and any ``nn.Module``, gets a diagram without drawing code
of its own.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from cnnzoo.draw.graph import DiagramGraph, Group, Node, build_graph
from cnnzoo.draw.layout import Layout, layout
from cnnzoo.draw.page import Diagram, ModelPage, diagram_svg, model_page
from cnnzoo.draw.png import to_png
from cnnzoo.draw.svg import to_svg
from cnnzoo.inspect.collect import summary
from cnnzoo.inspect.rows import LayerTable

__all__ = [
    "FORMATS",
    "Diagram",
    "DiagramGraph",
    "Group",
    "Layout",
    "ModelPage",
    "Node",
    "build_graph",
    "diagram_svg",
    "draw",
    "layout",
    "model_page",
    "to_png",
    "to_svg",
    "write_atomically",
]

FORMATS = ("svg", "png", "html")


def draw(
    model_or_name: str | nn.Module | LayerTable,
    input_size: Sequence[int] | None = None,
    *,
    depth: int | None = None,
    format: str = "svg",
    output: str | Path | None = None,
    **model_kwargs: Any,
) -> str | bytes:
    """The architecture diagram of a model: SVG text (a :class:`Diagram`), PNG bytes or the
    HTML model page (a :class:`ModelPage`: metadata, diagram and layer table). The two
    strings show themselves in Jupyter.

    ``model_or_name`` is a registered name, an ``nn.Module`` or a collected ``LayerTable``;
    ``input_size`` (C, H, W) defaults to the registered model's. ``depth`` picks the level:
    None draws every layer, 1 the model's children, 2 their children (ResNet blocks, Inception
    branches). With ``output`` the result is also written to that file.
    """
    if format not in FORMATS:
        raise ValueError(f"unknown diagram format {format!r}; choose from {', '.join(FORMATS)}")
    if depth is not None and depth < 1:
        raise ValueError(f"depth must be at least 1, got {depth}")
    if isinstance(model_or_name, LayerTable):
        table = model_or_name
    else:
        table = summary(model_or_name, input_size, **model_kwargs)
    result: str | bytes
    if format == "html":
        result = model_page(table, diagram_depth=depth)
    else:
        graph = build_graph(table, depth)
        placed = layout(graph)
        result = Diagram(to_svg(graph, placed)) if format == "svg" else to_png(graph, placed)
    if output is not None:
        write_atomically(output, result)
    return result


def write_atomically(path: str | Path, content: str | bytes) -> None:
    """Write a file so that it is either its old self or complete, never half written: a
    temporary file beside it, then a rename (atomic on POSIX and Windows)."""
    path = Path(path)
    data = content.encode("utf-8") if isinstance(content, str) else content
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent or ".")
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
