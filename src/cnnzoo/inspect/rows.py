"""The facts of a layer table as plain frozen dataclasses: rows, the data flow, the table.

Collected by the tracer (``trace.py``), rendered by pure functions (``render.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cnnzoo.inspect.columns import ColumnsArg

MACS_CONVENTION = (
    "MACs = multiply-accumulates of conv and linear weights (and other matrix products) at the "
    'given batch size; no bias adds, norms, activations or pooling: torchvision\'s "GFLOPS". '
    "FLOPs = 2 x MACs."
)

Shape = list[int]
Pair = list[int]
Numbers = list[int | float]


@dataclass(frozen=True)
class LayerRow:
    """One module call (or one shape-changing functional op) of the traced forward pass.

    Shapes leave out the batch: ``[H, W, C]`` for 4-D tensors, ``[F]`` for 2-D ones, the
    non-batch dims as they are otherwise. Window fields (``kernel`` .. ``ceil_mode``) are per
    spatial axis, set for convolutions and pooling (module or functional), else None.
    ``params`` counts the parameters of the module and its descendants once each; ``macs``
    counts the whole call including its children (see ``MACS_CONVENTION``).
    ``receptive_field`` is the input pixels one output unit sees, ``jump`` the input pixels
    between neighbouring output units (None once the spatial grid is flattened away) and
    ``rf_start`` the centre of output unit (0, 0)'s window in input pixel coordinates.
    ``rf_uneven`` marks a non-uniform grid (an adaptive pool whose windows differ in width or
    spacing, torch's rule): ``receptive_field`` is then the widest window, and no single
    ``jump`` or ``rf_start`` exists (both None). ``rf_reach`` is, per spatial axis, the first and
    last input pixel any unit reads: ``receptive_field`` is nominal (it counts padding, and the
    positions a ceil-mode window hangs past its input), a unit reads its window clipped to it.
    """

    name: str  # dotted path as in named_modules() ("" is the model); "parent.op" for functions
    type: str  # class name, or "torch.cat" / "F.max_pool2d" / "Tensor.add" for functions
    kind: str  # "module" or "function"
    depth: int  # 0 for the model itself
    call_index: int  # 0, or n for the n+1-th call of the same module / same op in a parent
    is_leaf: bool  # no child rows
    input_hwc: Shape | None
    output_hwc: Shape | None
    kernel: Pair | None
    stride: Pair | None
    padding: Pair | None
    dilation: Pair | None
    groups: int | None
    ceil_mode: bool | None
    params: int
    macs: int
    receptive_field: Numbers | None
    jump: Numbers | None
    rf_start: Numbers | None
    output_bytes: int
    uncounted_ops: tuple[str, ...] = ()  # ops with arithmetic but no counting rule
    rf_uneven: bool = False  # a non-uniform grid: see the class docstring
    # With rf_uneven: per spatial axis, every unit's (first, last) input pixel, clipped to the
    # input: the exact region each unit reads.
    rf_windows: tuple[tuple[tuple[int, int], ...], ...] | None = None
    rf_reach: tuple[tuple[int, int], ...] | None = None  # see the class docstring

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def display_name(self) -> str:
        return self.name or "(model)"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["uncounted_ops"] = list(self.uncounted_ops)
        if self.rf_windows is not None:
            data["rf_windows"] = [[list(w) for w in axis] for axis in self.rf_windows]
        if self.rf_reach is not None:
            data["rf_reach"] = [list(axis) for axis in self.rf_reach]
        data["flops"] = self.flops
        return data


@dataclass(frozen=True)
class UncountedOp:
    """An op that does arithmetic the convention has no rule for: MACs unknown, total partial."""

    layer: str
    op: str
    count: int


@dataclass(frozen=True)
class NotRun:
    """A module the forward pass did not call (e.g. auxiliary heads in eval mode)."""

    name: str
    type: str
    params: int


# ---- data-flow graph (issue 8: diagrams are drawn from these facts) --------------------------

# A node of the data-flow graph: ("row", index into all_rows), ("join", index into joins) or
# ("input", 0), the model's input.
FlowNode = tuple[str, int]
INPUT_NODE: FlowNode = ("input", 0)


@dataclass(frozen=True)
class Join:
    """A shape-keeping op on several tensors (a residual ``out + identity``, a gate ``x * s``).

    Not a row of the table (it changes no shape and does no counted arithmetic) but a node of
    the data flow: the place where branches meet. ``owner`` is the row index of the module
    whose forward ran it.
    """

    name: str  # "layer1.0.add"
    type: str  # "Tensor.add", "Tensor.__iadd__", "torch.mul"
    owner: int
    output_hwc: Shape | None


@dataclass(frozen=True)
class DataFlow:
    """Which node's output feeds which node, at the finest level of the trace.

    Nodes are the leaf rows (module calls without children and functional rows), the joins and
    the input. ``parents[i]`` is the row index of row i's parent (-1 for the model). Coarser
    graphs (one node per block) are contractions of this one: see :meth:`at_depth`.
    """

    joins: tuple[Join, ...]
    edges: tuple[tuple[FlowNode, FlowNode], ...]  # (source, target), in trace order
    parents: tuple[int, ...]

    def ancestor(self, index: int, depth: int, depths: Sequence[int]) -> int:
        """Row index of row ``index``'s ancestor at ``depth`` (itself if not deeper)."""
        while depths[index] > depth:
            index = self.parents[index]
        return index

    def at_depth(
        self, rows: Sequence[LayerRow], depth: int
    ) -> tuple[list[FlowNode], list[tuple[FlowNode, FlowNode]]]:
        """Nodes and edges with every row deeper than ``depth`` merged into its ancestor there.

        Visible rows: those at ``depth`` and the leaves above it (the model itself only at
        depth 0). Joins stay visible when their owner is above ``depth``.
        """
        depths = [row.depth for row in rows]
        floor = max(depth, 1) if len(rows) > 1 else 0

        def visible(node: FlowNode) -> FlowNode:
            kind, index = node
            if kind == "row":
                return ("row", self.ancestor(index, floor, depths))
            if kind == "join":
                owner = self.joins[index].owner
                if depths[owner] + 1 > floor:
                    return ("row", self.ancestor(owner, floor, depths))
            return node

        nodes: list[FlowNode] = [INPUT_NODE]
        nodes += [
            ("row", i)
            for i, row in enumerate(rows)
            if row.depth == floor or (row.is_leaf and row.depth < floor)
        ]
        nodes += [
            ("join", k) for k, join in enumerate(self.joins) if depths[join.owner] + 1 <= floor
        ]
        edges: dict[tuple[FlowNode, FlowNode], None] = {}  # ordered, O(1) membership
        for source, target in self.edges:
            edge = (visible(source), visible(target))
            if edge[0] != edge[1]:
                edges[edge] = None
        return nodes, list(edges)


@dataclass(frozen=True)
class LayerTable:
    """The result of :func:`summary`: rows, totals and renderers.

    ``rows`` are the rows down to ``depth`` (all of them when it is None); ``all_rows`` keeps
    every row regardless. Totals are the whole model's.
    """

    model: str
    input_size: tuple[int, ...]
    batch_size: int
    depth: int | None
    all_rows: tuple[LayerRow, ...]
    total_params: int
    trainable_params: int
    total_macs: int
    uncounted: tuple[UncountedOp, ...]
    not_run: tuple[NotRun, ...]
    param_bytes: int
    buffer_bytes: int
    input_bytes: int
    activation_bytes: int  # outputs of every leaf row: what a forward pass holds for backward
    dtype: str
    convention: str = MACS_CONVENTION
    flow: DataFlow | None = None  # the data-flow graph (issue 8)

    @property
    def rows(self) -> tuple[LayerRow, ...]:
        if self.depth is None:
            return self.all_rows
        return tuple(row for row in self.all_rows if row.depth <= self.depth)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    @property
    def total_flops(self) -> int:
        return 2 * self.total_macs

    @property
    def macs_partial(self) -> bool:
        """True when some op's arithmetic could not be counted: ``total_macs`` is a lower bound."""
        return bool(self.uncounted)

    def row(self, name: str, call_index: int = 0) -> LayerRow:
        """The row of a module (or functional op) by its dotted name; KeyError if absent."""
        for row in self.all_rows:
            if row.name == name and row.call_index == call_index:
                return row
        raise KeyError(f"no row named {name!r} (call {call_index}) in the table of {self.model}")

    def with_depth(self, depth: int | None) -> LayerTable:
        """The same table showing rows down to another depth."""
        return LayerTable(**{**self._fields(), "depth": depth})

    def _fields(self) -> dict[str, Any]:
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def to_dict(self) -> dict[str, Any]:
        from cnnzoo.inspect.render import to_dict

        return to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        from cnnzoo.inspect.render import to_json

        return to_json(self, indent=indent)

    def to_text(self, columns: ColumnsArg = None, *, width: int | None = None) -> str:
        from cnnzoo.inspect.render import to_text

        return to_text(self, columns=columns, width=width)

    def to_markdown(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect.render import to_markdown

        return to_markdown(self, columns=columns)

    def to_csv(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect.render import to_csv

        return to_csv(self, columns=columns)

    def to_latex(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect.render import to_latex

        return to_latex(self, columns=columns)

    def to_html(self, columns: ColumnsArg = None, *, diagram_depth: int | None = None) -> str:
        from cnnzoo.inspect.render_html import to_html

        return to_html(self, columns=columns, diagram_depth=diagram_depth)

    def __str__(self) -> str:
        return self.to_text()

    def _repr_html_(self) -> str:
        """Jupyter shows a table as HTML: the rows with collapsible blocks and the totals."""
        from cnnzoo.inspect.render_html import html_fragment

        return html_fragment(self)
