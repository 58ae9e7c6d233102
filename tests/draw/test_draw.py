"""Diagrams are drawn from the traced data flow: every layer a node, joins with the right inputs."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import summary
from cnnzoo.cli import main
from cnnzoo.draw import build_graph, draw

SVG = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> tuple[list[ET.Element], list[ET.Element]]:
    root = ET.fromstring(svg)  # raises on malformed XML
    nodes = [g for g in root.iter(f"{SVG}g") if "node" in g.get("class", "").split()]
    edges = [p for p in root.iter(f"{SVG}path") if p.get("class") == "edge"]
    return nodes, edges


@pytest.mark.parametrize("name", ["lenet5", "vgg16", "googlenet", "resnet50"])
def test_every_conv_and_linear_layer_is_a_node_at_layer_depth(name: str) -> None:
    table = summary(name)
    nodes, edges = _parse(draw(table))  # type: ignore[arg-type]
    drawn = Counter(n.get("data-name") for n in nodes)
    wanted = Counter(
        row.name
        for row in table.all_rows
        if row.is_leaf and any(k in row.type for k in ("Conv", "Linear", "RBF"))
    )
    assert wanted and all(drawn[k] >= v for k, v in wanted.items())
    ids = {n.get("id") for n in nodes}
    assert all(e.get("data-source") in ids and e.get("data-target") in ids for e in edges)


def test_googlenet_concats_have_four_inputs() -> None:
    graph = build_graph(summary("googlenet"))
    into = Counter(t for _, t in graph.edges)
    concats = [n for n in graph.nodes if n.type == "torch.cat"]
    assert len(concats) == 9  # 3a, 3b, 4a..4e, 5a, 5b
    assert all(into[n.id] == 4 for n in concats)


def test_resnet50_residual_adds_have_two_inputs() -> None:
    graph = build_graph(summary("resnet50"))
    into = Counter(t for _, t in graph.edges)
    joins = [n for n in graph.nodes if n.kind == "join"]
    assert len(joins) == 3 + 4 + 6 + 3
    assert all(into[n.id] == 2 for n in joins)
    # The first block's add: its projection shortcut and its main path.
    sources = {s for s, t in graph.edges if t == joins[0].id}
    names = {n.id: n.name for n in graph.nodes}
    assert {names[s] for s in sources} == {"layer1.0.downsample.0", "layer1.0.conv3"}


def test_depth_two_draws_blocks_as_single_boxes() -> None:
    graph = build_graph(summary("resnet18"), depth=2)
    blocks = [n.name for n in graph.nodes if n.style == "block"]
    assert blocks == [f"layer{s}.{b}" for s in range(1, 5) for b in range(2)]
    assert not [n for n in graph.nodes if n.kind == "join"]  # the adds are inside the blocks
    # A chain: input, stem, 8 blocks, head, each feeding the next.
    assert len(graph.edges) == len(graph.nodes) - 1


def test_data_flow_of_a_small_custom_model() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Conv2d(3, 4, 3, padding=1)
            self.b = nn.Conv2d(3, 4, 1)
            self.c = nn.Conv2d(8, 8, 1)

        def forward(self, x: Tensor) -> Tensor:
            y = torch.cat([self.a(x), self.b(x)], 1)
            return self.c(y) + y

    table = summary(Net(), (3, 8, 8))
    graph = build_graph(table, fold=False)
    names = {n.id: n.name for n in graph.nodes}
    edges = {(names[s], names[t]) for s, t in graph.edges}
    assert edges == {
        ("input", "a"),
        ("input", "b"),
        ("a", "cat"),
        ("b", "cat"),
        ("cat", "c"),
        ("c", "add"),
        ("cat", "add"),
    }


def test_png_and_cli(tmp_path: Path) -> None:
    png = draw("lenet5", format="png")
    assert isinstance(png, bytes) and png.startswith(b"\x89PNG\r\n\x1a\n")
    out = tmp_path / "g.svg"
    assert main(["draw", "googlenet", "--depth", "2", "--output", str(out)]) == 0
    nodes, _ = _parse(out.read_text())
    assert any(n.get("data-name") == "inception3a.branch2" for n in nodes)
    page = tmp_path / "r.html"
    assert main(["draw", "resnet18", "-o", str(page)]) == 0
    assert page.read_text().count("<svg") == 1
    with pytest.raises(ValueError, match="format"):
        draw("lenet5", format="gif")


def test_jupyter_reprs_of_diagram_and_model_page() -> None:
    """Issue 11: a diagram and a model page show themselves in Jupyter; both stay strings."""
    from cnnzoo.draw import Diagram, ModelPage, model_page

    table = summary("lenet5")
    svg = draw(table)
    assert isinstance(svg, Diagram) and svg._repr_svg_() == svg and svg.startswith("<svg")
    page = model_page(table)
    assert isinstance(page, ModelPage) and page == draw(table, format="html")
    assert page.startswith("<!DOCTYPE html>") and "<svg" in page and 'id="metadata"' in page
    fragment = page._repr_html_()
    assert "<html" not in fragment and "<svg" in fragment and "cnnzoo-table" in fragment
    assert fragment in page  # the document is the fragment in a page


def test_the_table_page_is_the_table_only() -> None:
    table = summary("lenet5")
    page = table.to_html()
    assert "<svg" not in page and 'id="metadata"' not in page
    assert page.count("<tr ") == len(table.rows)
    assert table._repr_html_().count("<tr ") == len(table.rows)


def test_the_same_model_draws_the_same_svg() -> None:
    """Edges follow trace order, not the ids of the objects of one trace."""
    assert draw("googlenet", depth=1) == draw("googlenet", depth=1)
