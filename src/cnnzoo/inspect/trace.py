"""The tracer: one forward pass of a meta model (``meta.py``), watched call by call.

The model runs once on the **meta device**: tensors there have shapes and dtypes but no
storage, so ResNet-50 at 8x3x1024x1024 costs what it costs at 1x3x224x224 (nothing).

Three observers watch that one forward pass:

- forward pre-/post-hooks on every submodule of the copy give the module calls (a module
  applied twice is two calls) and their nesting;
- a ``TorchFunctionMode`` sees every torch function called directly in a container's forward
  (``torch.cat``, ``torch.flatten``, ``x + y``, ``F.max_pool2d``); those that change the shape,
  slide a window or do arithmetic become rows of their own;
- a ``TorchDispatchMode`` sees every aten op, whoever called it, and attributes its MACs to the
  innermost running module or function (rules in ``macs.py``), and carries receptive-field
  facts from tensor to tensor (rules in ``geometry.py``), so branches and joins are right by
  construction.

Everything is kept in dicts keyed by identity, so the cost is linear in the number of ops
(resnet1202 costs per block what resnet110 does). ``facts.py`` turns a finished trace into rows.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from cnnzoo.inspect.geometry import SPATIALLY_POINTWISE, Geo, input_geo, propagate
from cnnzoo.inspect.macs import count_macs, module_macs
from cnnzoo.inspect.ops import Window, window_of
from cnnzoo.inspect.shapes import shape_only

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


class Tracer:
    """Watches one forward pass: module hooks, a function mode and a dispatch mode."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.input_sizes: tuple[int, ...] = ()  # the input's spatial sizes, set by run_trace
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
        # In trace order (a tuple, not a set): the diagram's edges come out the same every run.
        self.producers: dict[int, tuple[Tensor, tuple[Any, ...]]] = {}
        self.joins: list[tuple[int, str, str, _Call, Tensor]] = []  # order, name, type, owner
        # (source, target): _Call, join order or None; a dict keeps trace order and finds an
        # edge in O(1) (a list made resnet1202's trace quadratic).
        self.edges: dict[tuple[Any, Any], None] = {}

    # -- data flow: keyed by id like geo
    def producers_of(self, tensors: Sequence[Tensor]) -> tuple[Any, ...]:
        found: dict[Any, None] = {}
        for tensor in tensors:
            entry = self.producers.get(id(tensor))
            if entry is not None and entry[0] is tensor:
                found.update(dict.fromkeys(entry[1]))
            elif self.geo_of(tensor) is not None:
                found[None] = None  # the model's input
        return tuple(found)

    def produce(self, node: Any, inputs: Sequence[Tensor], outputs: Sequence[Tensor]) -> None:
        for source in self.producers_of(inputs):
            self.edges[(source, node)] = None
        for tensor in outputs:
            self.producers[id(tensor)] = (tensor, (node,))

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
        if call.input is not None and call.output is not None:
            call.rule_macs = module_macs(module, call.input, call.output)

    def is_leaf_call(self, call: _Call) -> bool:
        return call.module is not None and id(call.module) in self.leaves and call.depth > 0

    def keeping_geometry(self, func: Any) -> Any:
        """``func`` whose outputs take the geometry of its first data input (channel mixing)."""

        def run(*args: Any, **kwargs: Any) -> Any:
            result = func(*args, **kwargs)
            source = next((t for t in _tensors((args, kwargs)) if self.geo_of(t) is not None), None)
            geo = self.geo_of(source)
            if geo is not None:
                for tensor in _tensors(result):
                    self.set_geo(tensor, geo)
            return result

        run.__name__ = func.__name__
        run.__qualname__ = getattr(func, "__qualname__", func.__name__)
        run.__module__ = getattr(func, "__module__", "")
        return run

    # -- torch functions called in a container's forward
    def on_function(self, func: Any, args: Sequence[Any], kwargs: dict[str, Any]) -> Any:
        if getattr(func, "__name__", None) in SPATIALLY_POINTWISE:
            func = self.keeping_geometry(func)
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
    def __init__(self, tracer: Tracer) -> None:
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

    def __init__(self, tracer: Tracer) -> None:
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
def _hooked(tracer: Tracer) -> Iterator[None]:
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


def run_trace(tracer: Tracer, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """One forward pass ``tracer.model(*args, **kwargs)`` on meta inputs, every observer
    attached. Every tensor input starts a receptive field of its own (its dims after N, C)."""
    model = tracer.model
    inputs = _tensors((list(args), kwargs))
    for tensor in inputs:
        tracer.set_geo(tensor, input_geo(tuple(tensor.shape)))
    if inputs:
        tracer.input_sizes = tuple(int(s) for s in inputs[0].shape[2:])
    try:
        with (
            _hooked(tracer),
            torch.no_grad(),
            torch.device("meta"),
            _FunctionMode(tracer),
            _DispatchMode(tracer),
        ):
            model(*args, **kwargs)
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
        shape_text = ", ".join("x".join(map(str, t.shape)) for t in inputs) or "(no tensors)"
        raise TraceError(
            f"input {shape_text} fails in {where}: {message}", layer, layer_type
        ) from error
