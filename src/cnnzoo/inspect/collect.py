"""Collect the facts of a layer table: one frozen row per module call, in execution order.

How it works. The model runs once on the **meta device**: tensors there have shapes and dtypes
but no storage, so ResNet-50 at 8x3x1024x1024 costs what it costs at 1x3x224x224 (nothing). A
registered name is built directly under ``torch.device("meta")`` with the random initialisation
skipped; a user's ``nn.Module`` is deep-copied with every parameter, buffer and tensor attribute
replaced by an empty meta twin (shared weights stay shared), so the user's model is never
modified, moved or hooked, whatever happens during the trace.

Three observers watch that one forward pass:

- forward pre-/post-hooks on every submodule of the copy give the module calls (a module
  applied twice is two calls) and their nesting;
- a ``TorchFunctionMode`` sees every torch function called directly in a container's forward
  (``torch.cat``, ``torch.flatten``, ``x + y``, ``F.max_pool2d``); those that change the shape,
  slide a window or do arithmetic become rows of their own;
- a ``TorchDispatchMode`` sees every aten op, whoever called it, and attributes its MACs to the
  innermost running module or function (rules in ``_rules.py``), and carries receptive-field
  facts from tensor to tensor, so branches and joins are right by construction.

Totals (parameters, trainable parameters) come from the model, not from summing rows, so shared
weights count once.
"""

from __future__ import annotations

import copy
import itertools
import math
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from cnnzoo.inspect._rules import (
    Geo,
    Window,
    count_macs,
    input_geo,
    propagate,
    shape_only,
    window_of,
)
from cnnzoo.models.base import ClassifierModel
from cnnzoo.models.lenet import ConnectionTableConv2d, EuclideanRBF
from cnnzoo.registry import create_model, model_info

if TYPE_CHECKING:
    from cnnzoo.inspect.render import ColumnsArg

__all__ = [
    "MACS_CONVENTION",
    "DataFlow",
    "Join",
    "LayerRow",
    "LayerTable",
    "NotRun",
    "UncountedOp",
    "register_mac_rule",
    "summary",
    "trace_rows",
]

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

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def display_name(self) -> str:
        return self.name or "(model)"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["uncounted_ops"] = list(self.uncounted_ops)
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
        from cnnzoo.inspect import render

        return render.to_dict(self)

    def to_json(self, indent: int | None = 2) -> str:
        from cnnzoo.inspect import render

        return render.to_json(self, indent=indent)

    def to_text(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect import render

        return render.to_text(self, columns=columns)

    def to_markdown(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect import render

        return render.to_markdown(self, columns=columns)

    def to_csv(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect import render

        return render.to_csv(self, columns=columns)

    def to_latex(self, columns: ColumnsArg = None) -> str:
        from cnnzoo.inspect import render

        return render.to_latex(self, columns=columns)

    def to_html(self, columns: ColumnsArg = None, *, diagram_depth: int | None = None) -> str:
        from cnnzoo.inspect import render

        return render.to_html(self, columns=columns, diagram_depth=diagram_depth)

    def __str__(self) -> str:
        return self.to_text()


# ---- MAC rules for modules whose dense computation overstates the model's arithmetic --------

MacRule = Callable[[nn.Module, Tensor, Tensor], int]
_MAC_RULES: dict[type[nn.Module], MacRule] = {}


def register_mac_rule(module_type: type[nn.Module], rule: MacRule) -> None:
    """Count a module type's MACs with ``rule(module, input, output)`` instead of its ops.

    For modules whose forward runs more arithmetic than the model defines, e.g. a sparse
    connection table run as a dense convolution with zero weights.
    """
    _MAC_RULES[module_type] = rule


def _connection_table_macs(module: nn.Module, _input: Tensor, output: Tensor) -> int:
    # LeNet-5's C3 (LeCun et al. 1998, Table I): only the 60 kernels of the table exist; the
    # dense conv that runs them multiplies 36 more by constant zeros.
    assert isinstance(module, ConnectionTableConv2d)
    return int(output.shape[0]) * math.prod(output.shape[2:]) * module.weight.numel()


def _rbf_macs(module: nn.Module, input: Tensor, _output: Tensor) -> int:
    # LeNet-5's output (eq. 7): one squared-difference accumulation per input and class.
    assert isinstance(module, EuclideanRBF)
    return int(input.shape[0]) * module.in_features * module.num_classes


register_mac_rule(ConnectionTableConv2d, _connection_table_macs)
register_mac_rule(EuclideanRBF, _rbf_macs)


def _mac_rule(module: nn.Module) -> MacRule | None:
    for cls in type(module).__mro__:
        if cls in _MAC_RULES:
            return _MAC_RULES[cls]
    return None


# ---- preparing a meta model -------------------------------------------------------------------

# In-place methods that change a tensor's metadata, not just its values: never skipped.
_METADATA_INPLACE = {
    "requires_grad_",
    "resize_",
    "resize_as_",
    "set_",
    "as_strided_",
    "squeeze_",
    "unsqueeze_",
    "t_",
    "transpose_",
    "swapdims_",
    "swapaxes_",
    "share_memory_",
    "detach_",
    "rename_",
    "retain_grad",
}


class _SkipMetaInit(TorchFunctionMode):
    """While building on meta, value-only in-place ops (``normal_``, ``uniform_``, ``fill_``,
    ``mul_``...) have nothing to write: skip them. Besides time, this avoids the first meta
    ``normal_`` importing torch._dynamo (several seconds) through its Python reference kernel."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        # nn.init functions arrive with everything in kwargs (``tensor=``), methods in args.
        target = args[0] if args else kwargs.get("tensor")
        if (
            name.endswith("_")
            and not name.startswith("_")
            and name not in _METADATA_INPLACE
            and isinstance(target, Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **kwargs)


def build_meta(name: str, **model_kwargs: Any) -> nn.Module:
    """A registered model on the meta device, without running its initialisation."""
    with torch.device("meta"), _SkipMetaInit():
        return create_model(name, **model_kwargs)


def _meta_twin(tensor: Tensor) -> Tensor:
    twin = torch.empty_like(tensor, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(twin, requires_grad=tensor.requires_grad)
    return twin


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose tensors are empty meta twins; the model is not touched.

    Seeding deepcopy's memo with the twins means no tensor data is ever copied, and a tensor
    reached twice (shared weights, tied modules) maps to the same twin.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        tensors = itertools.chain(
            module._parameters.values(),
            module._buffers.values(),
            (v for v in vars(module).values() if isinstance(v, Tensor)),
        )
        for tensor in tensors:
            if tensor is not None and id(tensor) not in memo:
                memo[id(tensor)] = _meta_twin(tensor)
    try:
        return copy.deepcopy(model, memo)
    except Exception as error:
        raise ValueError(
            f"cannot copy {type(model).__name__} to trace it on the meta device: "
            f"{type(error).__name__}: {error}"
        ) from error


# ---- the trace ----------------------------------------------------------------------------------


@dataclass(eq=False)
class _Call:
    """A module call or a functional op, while the trace runs."""

    order: int
    name: str
    type: str
    kind: str
    depth: int
    call_index: int
    module: nn.Module | None
    input: Tensor | None = None
    output: Tensor | None = None
    output_geo: Geo | None = None
    output_bytes: int = 0
    own_macs: int = 0
    rule_macs: int | None = None
    window: Window | None = None
    windows: int = 0
    children: list[_Call] = field(default_factory=list)
    uncounted: Counter[str] = field(default_factory=Counter)
    inputs: list[Tensor] = field(default_factory=list)  # data tensors in, for the data flow

    def total_macs(self) -> int:
        if self.rule_macs is not None:
            return self.rule_macs
        return self.own_macs + sum(child.total_macs() for child in self.children)

    def all_uncounted(self) -> Iterator[tuple[str, str, int]]:
        if self.rule_macs is not None:
            return
        for op, count in self.uncounted.items():
            yield self.name, op, count
        for child in self.children:
            yield from child.all_uncounted()


def _tensors(value: Any) -> list[Tensor]:
    """The tensors in nested args (tuples, lists, dicts, namedtuples), in order.

    A hand-written walk: pytree's is several times slower, and runs for every op.
    """
    if isinstance(value, Tensor):
        return [value]
    found: list[Tensor] = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Tensor):
            found.append(item)
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            stack.extend(reversed(list(item.values())))
    return found


def _function_label(func: Any) -> tuple[str, str]:
    """(short name for the row's name, qualified name for its type) of a torch function."""
    name = getattr(func, "__name__", None) or str(func)
    qualname = getattr(func, "__qualname__", "") or ""
    module = getattr(func, "__module__", None) or ""
    short = name.strip("_") or name
    if qualname.startswith(("TensorBase.", "Tensor.")) or module.startswith("torch._tensor"):
        return short, f"Tensor.{name}"
    if module.startswith(("torch.nn.functional", "torch._C._nn")):
        return short, f"F.{name}"
    for namespace in ("fft", "linalg", "special"):  # torch.fft.fft2 is torch._C._fft.fft_fft2
        if module in (f"torch.{namespace}", f"torch._C._{namespace}"):
            short = short.removeprefix(f"{namespace}_")
            return short, f"torch.{namespace}.{short}"
    return short, f"torch.{name}"


class _Tracer:
    """Watches one forward pass: module hooks, a function mode and a dispatch mode."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.names = {id(m): n for n, m in model.named_modules()}
        self.leaves = {id(m) for m in model.modules() if next(m.children(), None) is None}
        self.geo: dict[int, tuple[Tensor, Geo]] = {}
        self.stack: list[_Call] = []
        self.calls: list[_Call] = []
        self.function: _Call | None = None
        self.order = itertools.count()
        self.module_calls: Counter[int] = Counter()
        self.function_calls: Counter[tuple[int, str]] = Counter()
        # Data flow (issue 8): the finest nodes whose outputs a tensor is made of.
        self.producers: dict[int, tuple[Tensor, frozenset[Any]]] = {}
        self.joins: list[tuple[int, str, str, _Call, Tensor]] = []  # order, name, type, owner
        # (source, target): _Call, join order or None; a dict keeps trace order and finds an
        # edge in O(1) (a list made resnet1202's trace quadratic).
        self.edges: dict[tuple[Any, Any], None] = {}

    # -- data flow: keyed by id like geo
    def producers_of(self, tensors: Sequence[Tensor]) -> frozenset[Any]:
        found: set[Any] = set()
        for tensor in tensors:
            entry = self.producers.get(id(tensor))
            if entry is not None and entry[0] is tensor:
                found |= entry[1]
            elif self.geo_of(tensor) is not None:
                found.add(None)  # the model's input
        return frozenset(found)

    def produce(self, node: Any, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> None:
        for source in self.producers_of(inputs):
            self.edges[(source, node)] = None
        for tensor in outputs:
            self.producers[id(tensor)] = (tensor, frozenset([node]))

    # -- geometry store: keyed by id, holding the tensor so the id cannot be reused meanwhile
    def geo_of(self, tensor: Tensor | None) -> Geo | None:
        if tensor is None:
            return None
        entry = self.geo.get(id(tensor))
        return entry[1] if entry is not None and entry[0] is tensor else None

    def set_geo(self, tensor: Tensor, geo: Geo) -> None:
        self.geo[id(tensor)] = (tensor, geo)

    # -- module hooks
    def pre_hook(self, module: nn.Module, args: Any, kwargs: Any) -> None:
        parent = self.stack[-1] if self.stack else None
        index = self.module_calls[id(module)]
        self.module_calls[id(module)] += 1
        call = _Call(
            order=next(self.order),
            name=self.names[id(module)],
            type=type(module).__name__,
            kind="module",
            depth=0 if parent is None else parent.depth + 1,
            call_index=index,
            module=module,
        )
        inputs = _tensors((args, kwargs))
        call.inputs = [t for t in inputs if self.geo_of(t) is not None]
        if inputs:
            call.input = inputs[0]
        if parent is not None:
            parent.children.append(call)
        self.calls.append(call)
        self.stack.append(call)

    def post_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        call = self.stack.pop()
        assert call.module is module, "module calls must nest"
        outputs = _tensors(output)
        if not call.children and call.depth > 0:
            self.produce(call, call.inputs, outputs)
        if outputs:
            call.output = outputs[0]
            call.output_geo = self.geo_of(outputs[0])
            call.output_bytes = sum(t.numel() * t.element_size() for t in outputs)
        rule = _mac_rule(module)
        if rule is not None and call.input is not None and call.output is not None:
            call.rule_macs = int(rule(module, call.input, call.output))

    def is_leaf_call(self, call: _Call) -> bool:
        return call.module is not None and id(call.module) in self.leaves and call.depth > 0

    # -- torch functions called in a container's forward
    def on_function(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        owner = self.stack[-1] if self.stack else None
        if owner is None or self.function is not None or self.is_leaf_call(owner):
            return func(*args, **kwargs)
        data = [t for t in _tensors((args, kwargs)) if self.geo_of(t) is not None]
        if not data:
            return func(*args, **kwargs)
        short, qualified = _function_label(func)
        call = _Call(
            order=next(self.order),
            name=f"{owner.name}.{short}" if owner.name else short,
            type=qualified,
            kind="function",
            depth=owner.depth + 1,
            call_index=0,
            module=None,
            input=data[0],
        )
        self.function = call
        try:
            result = func(*args, **kwargs)
        finally:
            self.function = None
        outputs = _tensors(result)
        if not outputs:  # e.g. x.size(): anything it counted belongs to its owner
            owner.own_macs += call.own_macs
            owner.uncounted.update(call.uncounted)
            return result
        call.output = outputs[0]
        call.output_geo = self.geo_of(outputs[0])
        call.output_bytes = sum(t.numel() * t.element_size() for t in outputs)
        assert call.input is not None
        reshaped = tuple(call.output.shape) != tuple(call.input.shape)
        if reshaped or call.own_macs or call.uncounted or call.window is not None:
            key = (id(owner), call.name)
            call.call_index = self.function_calls[key]
            self.function_calls[key] += 1
            owner.children.append(call)
            self.calls.append(call)
            self.produce(call, data, outputs)
        else:  # a shape-keeping op (residual add, activation): its owner's arithmetic
            owner.own_macs += call.own_macs
            if len({id(t) for t in data}) > 1:  # branches meet here: a join of the data flow
                order = next(self.order)
                self.joins.append((order, f"{call.name}", qualified, owner, outputs[0]))
                self.produce(order, data, outputs)
        return result

    # -- every aten op
    def on_op(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        out = shape_only(func, args, kwargs)
        if out is None:
            out = func(*args, **kwargs)
        target = self.function or (self.stack[-1] if self.stack else None)
        if target is None:
            return out
        macs = count_macs(func, args, kwargs, out)
        if macs is None:
            target.uncounted[str(func.overloadpacket)] += 1
        else:
            target.own_macs += macs
        inputs = [(t, g) for t in _tensors((args, kwargs)) if (g := self.geo_of(t)) is not None]
        outputs = _tensors(out)
        if inputs and outputs:
            sources = self.producers_of([t for t, _ in inputs])
            for tensor in outputs:
                self.producers[id(tensor)] = (tensor, sources)
            geo = propagate(func, args, kwargs, inputs, outputs)
            for tensor in outputs:
                self.set_geo(tensor, geo)
            window = window_of(func, args, kwargs)
            if window is not None and len(window.kernel) == inputs[0][1].axes:
                target.windows += 1
                target.window = target.window or window
        return out


class _FunctionMode(TorchFunctionMode):
    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()
        self.tracer = tracer

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        return self.tracer.on_function(func, args, kwargs or {})


class _DispatchMode(TorchDispatchMode):  # type: ignore[no-untyped-call]
    @classmethod
    def _should_skip_dynamo(cls) -> bool:
        # By default torch wraps every dispatch mode's handler in torch._dynamo.disable, whose
        # first call imports torch._dynamo: seconds of import for a trace that never compiles.
        return False

    def __init__(self, tracer: _Tracer) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.tracer = tracer

    def __torch_dispatch__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        return self.tracer.on_op(func, args, kwargs or {})


@contextmanager
def _hooked(tracer: _Tracer) -> Iterator[None]:
    handles = []
    try:
        for module in tracer.model.modules():
            handles.append(module.register_forward_pre_hook(tracer.pre_hook, with_kwargs=True))
            handles.append(module.register_forward_hook(tracer.post_hook, with_kwargs=True))
        yield
    finally:
        for handle in handles:
            handle.remove()


class TraceError(ValueError):
    """The forward pass failed in a layer; ``layer`` and ``layer_type`` say where."""

    def __init__(self, message: str, layer: str, layer_type: str) -> None:
        super().__init__(message)
        self.layer = layer
        self.layer_type = layer_type


def _run(tracer: _Tracer, shape: tuple[int, ...], dtype: torch.dtype) -> None:
    """One forward pass of ``tracer.model`` on a meta input, every observer attached."""
    model = tracer.model
    x = torch.empty(shape, device="meta", dtype=dtype)
    tracer.set_geo(x, input_geo(shape))
    try:
        with (
            _hooked(tracer),
            torch.no_grad(),
            torch.device("meta"),
            _FunctionMode(tracer),
            _DispatchMode(tracer),
        ):
            model(x)
    except Exception as error:
        innermost = tracer.function or (tracer.stack[-1] if tracer.stack else None)
        layer = innermost.name if innermost is not None else ""
        layer_type = innermost.type if innermost is not None else type(model).__name__
        tracer.stack.clear()
        if isinstance(error, ValueError) and (innermost is None or innermost.depth == 0):
            # The model's own input check: its message is the clearest there is.
            raise TraceError(str(error), layer, layer_type) from error
        message = " ".join(str(error).split()) or type(error).__name__
        if "meta" in message:
            message += " (the trace runs on the meta device, which has shapes but no values)"
        where = f"layer {layer!r} ({layer_type})" if layer else type(model).__name__
        shape_text = "x".join(map(str, shape))
        raise TraceError(
            f"input {shape_text} fails in {where}: {message}", layer, layer_type
        ) from error


def _hwc(tensor: Tensor | None) -> Shape | None:
    if tensor is None:
        return None
    shape = [int(s) for s in tensor.shape]
    if len(shape) == 4:
        return [shape[2], shape[3], shape[1]]
    return shape[1:]


def _number(value: float) -> int | float:
    rounded = round(value)
    return int(rounded) if abs(value - rounded) < 1e-9 else round(value, 4)


def _numbers(values: Sequence[float] | None) -> Numbers | None:
    return None if values is None else [_number(v) for v in values]


def _rows(tracer: _Tracer) -> list[LayerRow]:
    params: dict[int, int] = {}
    rows = []
    for call in sorted(tracer.calls, key=lambda c: c.order):
        if call.module is not None and id(call.module) not in params:
            params[id(call.module)] = sum(p.numel() for p in call.module.parameters())
        window = (
            call.window
            if call.windows == 1 and (call.kind == "function" or not call.children)
            else None
        )
        # Vectors in, vectors out: no spatial axes, no receptive field.
        geo = call.output_geo if call.output_geo is not None and call.output_geo.axes else None
        rows.append(
            LayerRow(
                name=call.name,
                type=call.type,
                kind=call.kind,
                depth=call.depth,
                call_index=call.call_index,
                is_leaf=not call.children,
                input_hwc=_hwc(call.input),
                output_hwc=_hwc(call.output),
                kernel=None if window is None else list(window.kernel),
                stride=None if window is None else list(window.stride),
                padding=None if window is None else list(window.padding),
                dilation=None if window is None else list(window.dilation),
                groups=None if window is None else window.groups,
                ceil_mode=None if window is None else window.ceil_mode,
                params=0 if call.module is None else params[id(call.module)],
                macs=call.total_macs(),
                receptive_field=None if geo is None else _numbers(geo.rf),
                jump=None if geo is None else _numbers(geo.jump),
                rf_start=None if geo is None else _numbers(geo.start),
                output_bytes=call.output_bytes,
                uncounted_ops=tuple(sorted(op for _, op, _ in call.all_uncounted())),
            )
        )
    return rows


# ---- the public entry points ----------------------------------------------------------------


def _prepare(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None,
    model_kwargs: dict[str, Any],
) -> tuple[nn.Module, str, tuple[int, ...]]:
    """The meta model to trace, its display name and the (C, H, W) input size."""
    if isinstance(model_or_name, str):
        info = model_info(model_or_name)
        size = tuple(info.input_size if input_size is None else input_size)
        if len(size) == 2:  # (H, W): the model's own channels
            size = (model_kwargs.get("in_channels") or info.input_size[0], *size)
        if size and size[0] != info.input_size[0] and model_kwargs.get("in_channels") is None:
            model_kwargs = {**model_kwargs, "in_channels": size[0]}
        return build_meta(model_or_name, **model_kwargs), info.name, size
    if not isinstance(model_or_name, nn.Module):
        raise TypeError(f"expected a model name or an nn.Module, got {type(model_or_name)}")
    if model_kwargs:
        raise TypeError(
            f"model keyword arguments ({', '.join(model_kwargs)}) apply to registered names only"
        )
    name = getattr(model_or_name, "model_name", None) or type(model_or_name).__name__
    if input_size is None:
        registered = getattr(model_or_name, "model_name", None)
        if registered is None:
            raise ValueError(f"give input_size for {name}: it is not a registered model")
        input_size = model_info(registered).input_size
    return meta_copy(model_or_name), name, tuple(input_size)


def _validate_size(size: tuple[int, ...], batch_size: int) -> None:
    if not size or any(not isinstance(s, int) or s <= 0 for s in size):
        raise ValueError(f"input size must be positive integers (C, H, W), got {size}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch size must be a positive integer, got {batch_size}")


def _dtype(model: nn.Module) -> torch.dtype:
    for tensor in itertools.chain(model.parameters(), model.buffers()):
        if tensor.is_floating_point():
            return tensor.dtype
    return torch.get_default_dtype()


def summary(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    batch_size: int = 1,
    depth: int | None = None,
    **model_kwargs: Any,
) -> LayerTable:
    """The exact layer table of a model at an input size: shapes, parameters, MACs, receptive
    fields, per module call in execution order, with totals.

    ``model_or_name`` is a registered name (built on the meta device with ``model_kwargs``; an
    ``input_size`` whose C differs from the model's default builds it with ``in_channels=C``)
    or any ``nn.Module`` (traced on a meta copy: the model itself is left as it was).
    ``input_size`` is (C, H, W) without the batch (default: the registered model's), or (H, W)
    for a registered name. The model is traced in eval mode. ``depth`` limits the rows shown
    (0: the model only; 1: its children; None: everything).

    Raises ``ValueError`` (a one-line message naming the layer) if the forward pass fails at
    this input, e.g. an input too small for some layer.

    >>> table = summary("resnet18")
    >>> table.total_params, table.total_macs
    (11689512, 1814073344)
    >>> table.row("layer4").output_hwc
    [7, 7, 512]
    """
    meta_model, name, size = _prepare(model_or_name, input_size, dict(model_kwargs))
    _validate_size(size, batch_size)
    meta_model.eval()
    dtype = _dtype(meta_model)
    shape = (batch_size, *size)
    tracer = _Tracer(meta_model)
    _run(tracer, shape, dtype)
    rows = _rows(tracer)
    flow = _flow(tracer)
    root = next(c for c in tracer.calls if c.depth == 0)
    not_run = _not_run(meta_model, tracer)
    uncounted = Counter[tuple[str, str]]()
    for layer, op, count in root.all_uncounted():
        uncounted[(layer, op)] += count
    parameters = list(meta_model.parameters())
    buffers = list(meta_model.buffers())
    return LayerTable(
        model=name,
        input_size=size,
        batch_size=batch_size,
        depth=depth,
        all_rows=tuple(rows),
        total_params=sum(p.numel() for p in parameters),
        trainable_params=sum(p.numel() for p in parameters if p.requires_grad),
        total_macs=root.total_macs(),
        uncounted=tuple(UncountedOp(layer, op, n) for (layer, op), n in uncounted.items()),
        not_run=tuple(not_run),
        param_bytes=sum(p.numel() * p.element_size() for p in parameters),
        buffer_bytes=sum(b.numel() * b.element_size() for b in buffers),
        input_bytes=math.prod(shape) * torch.empty((), dtype=dtype).element_size(),
        activation_bytes=sum(r.output_bytes for r in rows if r.is_leaf),
        dtype=str(dtype).removeprefix("torch."),
        flow=flow,
    )


def _flow(tracer: _Tracer) -> DataFlow:
    """The data-flow graph of the trace, its nodes numbered like the rows and joins."""
    calls = sorted(tracer.calls, key=lambda c: c.order)
    row_of = {id(call): i for i, call in enumerate(calls)}
    parents = [-1] * len(calls)
    for call in calls:
        for child in call.children:
            parents[row_of[id(child)]] = row_of[id(call)]
    join_of = {order: k for k, (order, *_rest) in enumerate(tracer.joins)}
    names: Counter[str] = Counter()
    joins = []
    for _, name, kind, owner, output in tracer.joins:
        suffix = f"#{names[name]}" if names[name] else ""
        names[name] += 1
        joins.append(Join(name + suffix, kind, row_of[id(owner)], _hwc(output)))

    def node(source: Any) -> FlowNode:
        if source is None:
            return INPUT_NODE
        if isinstance(source, int):
            return ("join", join_of[source])
        return ("row", row_of[id(source)])

    edges = tuple((node(s), node(t)) for s, t in tracer.edges)
    return DataFlow(joins=tuple(joins), edges=edges, parents=tuple(parents))


def _not_run(model: nn.Module, tracer: _Tracer) -> list[NotRun]:
    """The outermost modules of which nothing ran (a Sequential whose children were called one
    by one did run, in effect)."""
    touched = {""}
    for call in tracer.calls:
        if call.module is not None:
            parts = call.name.split(".")
            touched.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
    return [
        NotRun(name, type(module).__name__, sum(p.numel() for p in module.parameters()))
        for name, module in model.named_modules()
        if name not in touched and name.rpartition(".")[0] in touched
    ]


def trace_rows(
    model_or_name: str | nn.Module, input_size: Sequence[int] | None = None, **model_kwargs: Any
) -> tuple[list[LayerRow], tuple[str, str, str] | None]:
    """Rows of a trace that bypasses the model's own input check and stops at the first failing
    layer: (rows so far, (layer, type, message) of the failure or None). For check_geometry."""
    meta_model, _, size = _prepare(model_or_name, input_size, dict(model_kwargs))
    _validate_size(size, 1)
    meta_model.eval()
    if isinstance(meta_model, ClassifierModel):
        # Our copy only: let the layers themselves show where the arithmetic goes wrong.
        object.__setattr__(meta_model, "check_input", lambda x: None)
    tracer = _Tracer(meta_model)
    failure = None
    try:
        _run(tracer, (1, *size), _dtype(meta_model))
    except TraceError as error:
        failure = (error.layer, error.layer_type, str(error))
    return _rows(tracer), failure
