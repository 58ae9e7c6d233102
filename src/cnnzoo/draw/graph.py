"""The diagram's graph: boxes and arrows read from a traced layer table, never drawn per model.

Nodes are the rows visible at the chosen depth (block or layer level), the joins where
branches meet (a residual add) and the input; edges are the data flow of the trace
(:class:`cnnzoo.inspect.rows.DataFlow`) contracted to that depth. Groups are the containers
above the visible rows (ResNet's ``layer1``, an Inception module), drawn as frames.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from cnnzoo.inspect.rows import LayerRow, LayerTable

__all__ = ["DiagramGraph", "Group", "Node", "build_graph", "node_style"]


@dataclass(frozen=True)
class Node:
    """One box (or join circle) of the diagram."""

    id: str  # "n3": stable within one diagram, used by the SVG and the HTML page
    name: str  # the row's dotted name, "input", or the join's name
    type: str  # class name, function type, "Input" or the join's op
    kind: str  # "input", "row" or "join"
    title: str  # first label line: type and window, e.g. "Conv2d 3x3/2"
    shape: str  # second label line: output H x W x C
    group: str | None  # innermost frame's name, None outside every frame
    style: str  # colour class: conv, linear, norm, act, pool, concat, join, input, block, other


@dataclass(frozen=True)
class Group:
    """A frame around the nodes of a container (a stage, a block)."""

    name: str
    type: str
    depth: int
    parent: str | None


@dataclass(frozen=True)
class DiagramGraph:
    model: str
    depth: int
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]  # (source id, target id)
    groups: tuple[Group, ...]


def node_style(row_type: str, is_leaf: bool) -> str:
    """A colour class for a layer type (the legend of the diagram)."""
    lowered = row_type.lower()
    if not is_leaf:
        return "block"
    if "conv" in lowered:
        return "conv"
    if "linear" in lowered or "rbf" in lowered:
        return "linear"
    if "norm" in lowered or "lrn" in lowered:
        return "norm"
    if "pool" in lowered or "subsampl" in lowered:
        return "pool"
    if "cat" in lowered:
        return "concat"
    if any(a in lowered for a in ("relu", "tanh", "sigmoid", "act", "softmax", "gelu")):
        return "act"
    return "other"


def _dims(values: list[int]) -> str:
    return "x".join(map(str, values))


def _window(row: LayerRow) -> str:
    if row.kernel is None:
        return ""
    kernel = str(row.kernel[0]) if len(set(row.kernel)) == 1 else _dims(row.kernel)
    text = f" {kernel}x{kernel}" if len(set(row.kernel)) == 1 else f" {kernel}"
    if row.stride and any(s != 1 for s in row.stride):
        stride = row.stride[0] if len(set(row.stride)) == 1 else _dims(row.stride)
        text += f"/{stride}"
    return text


def _short_type(row_type: str) -> str:
    return {"torch.cat": "concat", "torch.flatten": "flatten"}.get(row_type, row_type)


def _shape(hwc: list[int] | None) -> str:
    return "" if not hwc else "\u00d7".join(map(str, hwc))


_ABBREVIATIONS = {
    "BatchNorm2d": "BN",
    "BatchNorm1d": "BN",
    "LocalResponseNorm": "LRN",
    "Dropout": "Dropout",
}
# Single-input, shape-keeping layers drawn inside the box before them ("Conv2d 3x3 + BN + ReLU").
_FOLDED_STYLES = ("norm", "act")
MAX_FRAME_DEPTH = 2


def _fold(
    nodes: list[Node], edges: list[tuple[str, str]]
) -> tuple[list[Node], list[tuple[str, str]]]:
    # Edges indexed by their ends: scanning the edge list for every node made the diagram of
    # resnet1202 quadratic (20 s).
    by_id = {n.id: n for n in nodes}
    ends = [list(edge) for edge in edges]  # [source, target], rewired in place
    alive = [True] * len(ends)
    into: dict[str, list[int]] = {n.id: [] for n in nodes}
    out_of: dict[str, list[int]] = {n.id: [] for n in nodes}
    for i, (s, t) in enumerate(edges):
        out_of[s].append(i)
        into[t].append(i)
    removed: set[str] = set()
    for node in nodes:
        if node.kind != "row" or not (node.style in _FOLDED_STYLES or "Dropout" in node.type):
            continue
        incoming = [i for i in into[node.id] if alive[i]]
        if len(incoming) != 1 or by_id[ends[incoming[0]][0]].kind == "input":
            continue
        source = by_id[ends[incoming[0]][0]]
        outgoing = [i for i in out_of[source.id] if alive[i]]
        if [ends[i][1] for i in outgoing] != [node.id] or source.shape != node.shape:
            continue
        short = _ABBREVIATIONS.get(node.type, node.title)
        joiner = " " if source.kind == "join" else " + "  # "+ ReLU" after a residual add
        by_id[source.id] = replace(source, title=f"{source.title}{joiner}{short}")
        removed.add(node.id)
        alive[incoming[0]] = False
        out_of[source.id] = [i for i in out_of[node.id] if alive[i]]
        for i in out_of[source.id]:
            ends[i][0] = source.id  # the folded node's edges now leave its source
    kept_nodes = [by_id[n.id] for n in nodes if n.id not in removed]
    kept_edges = [(s, t) for (s, t), keep in zip(ends, alive, strict=True) if keep]
    return kept_nodes, kept_edges


def build_graph(table: LayerTable, depth: int | None = None, *, fold: bool = True) -> DiagramGraph:
    """The diagram graph of ``table`` at ``depth`` (None: every layer; 1: the model's children).

    With ``fold``, a norm or activation layer right after a single layer is drawn in that
    layer's box ("Conv2d 3x3 + BN + ReLU") instead of a box of its own.

    Raises ValueError if the table has no data-flow facts (a table built before issue 8).
    """
    if table.flow is None:
        raise ValueError("this layer table carries no data-flow graph: collect it with summary()")
    rows = table.all_rows
    deepest = max(row.depth for row in rows)
    level = deepest if depth is None else max(1, min(depth, deepest))
    flow_nodes, flow_edges = table.flow.at_depth(rows, level)
    parents = table.flow.parents

    def group_of(index: int) -> str | None:
        parent = parents[index]
        return rows[parent].name if parent > 0 else None

    ids: dict[tuple[str, int], str] = {}
    nodes = []
    for count, (kind, index) in enumerate(flow_nodes):
        node_id = f"n{count}"
        ids[(kind, index)] = node_id
        if kind == "input":
            c, *spatial = table.input_size
            shape = _shape([*spatial, c])
            nodes.append(Node(node_id, "input", "Input", "input", "Input", shape, None, "input"))
        elif kind == "join":
            join = table.flow.joins[index]
            op = join.type.rsplit(".", 1)[-1].strip("_").removeprefix("i")
            owner = join.owner
            nodes.append(
                Node(
                    node_id,
                    join.name,
                    join.type,
                    "join",
                    {"add": "+", "mul": "\u00d7"}.get(op, op),
                    _shape(join.output_hwc),
                    rows[owner].name if owner > 0 else None,
                    "join",
                )
            )
        else:
            row = rows[index]
            title = _short_type(row.type) + _window(row)
            nodes.append(
                Node(
                    node_id,
                    row.name,
                    row.type,
                    "row",
                    title,
                    _shape(row.output_hwc),
                    group_of(index),
                    node_style(row.type, row.is_leaf),
                )
            )
    edges = [(ids[s], ids[t]) for s, t in flow_edges]
    if fold:
        nodes, edges = _fold(nodes, edges)
    # Frames for stages and blocks (depth 1 and 2) around at least two boxes: deeper wrappers
    # (GoogLeNet's BasicConv2d around one conv) would only add noise.
    members: dict[int, int] = {}
    index_of = {row.name: i for i, row in enumerate(rows)}
    for node in nodes:
        index = index_of.get(node.group or "", 0)
        while index > 0:
            members[index] = members.get(index, 0) + 1
            index = parents[index]
    framed = {i for i, n in members.items() if n >= 2 and rows[i].depth <= MAX_FRAME_DEPTH}

    def framed_parent(index: int) -> str | None:
        index = parents[index]
        while index > 0 and index not in framed:
            index = parents[index]
        return rows[index].name if index > 0 else None

    def framed_group(name: str | None) -> str | None:
        index = index_of.get(name or "", 0)
        while index > 0 and index not in framed:
            index = parents[index]
        return rows[index].name if index > 0 else None

    nodes = [replace(n, group=framed_group(n.group)) for n in nodes]
    groups = tuple(
        Group(rows[i].name, rows[i].type, rows[i].depth, framed_parent(i)) for i in sorted(framed)
    )
    return DiagramGraph(table.model, level, tuple(nodes), tuple(edges), groups)
