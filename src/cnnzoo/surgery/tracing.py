"""Symbolic tracing (torch.fx) that names every intermediate result by where it happens.

A module's output is named by the module's dotted name (``layer1``, ``layer1.0.conv1``); the
result of a functional op or tensor method by the enclosing module's name and the op
(``layer1.0.add``, ``flatten``), as torchvision's feature extraction does. A name that occurs
again in the same place gets ``_1``, ``_2``, ...: BasicBlock calls its one ``relu`` twice, so
``layer1.0.relu`` is the first call's output and ``layer1.0.relu_1`` the second's.

The model is traced in eval mode: Python branches on ``self.training`` (GoogLeNet's and
Inception's auxiliary heads) follow the eval path. Layers still read their own ``training`` flag
at run time, so dropout and batch norm behave as in the original in either mode.
"""

from __future__ import annotations

import operator
from collections import Counter
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

import torch.fx
from torch import nn

from cnnzoo._format import did_you_mean
from cnnzoo._modes import eval_mode

__all__ = ["TracedModel", "graph_module", "node_names", "trace"]


@dataclass(frozen=True)
class TracedModel:
    """A traced model: its FX graph and every nameable result."""

    root: nn.Module
    graph: torch.fx.Graph
    names: dict[str, torch.fx.Node]  # name -> node; several names may share one node

    def node(self, name: str) -> torch.fx.Node:
        """The node called ``name``; ``ValueError`` naming the closest names if unknown."""
        try:
            return self.names[name]
        except KeyError:
            raise ValueError(_unknown_name_message(name, list(self.names))) from None

    def module_calls(self) -> Counter[str]:
        """How often each leaf module is called in one forward pass."""
        return Counter(
            str(n.target) for n in self.graph.nodes if n.op == "call_module" and n.target
        )


def _unknown_name_message(name: str, known: list[str]) -> str:
    hint = did_you_mean(name, known)
    return (
        f"no layer or operation named {name!r} in the traced model{hint} "
        "(cnnzoo.surgery.node_names(model) lists them all)"
    )


class _NamingTracer(torch.fx.Tracer):
    """FX tracer that records each module's output and each op's result under a dotted name."""

    def __init__(self, leaves: Collection[str] = ()) -> None:
        super().__init__()
        self._leaf_names = set(leaves)
        self._module_stack: list[str] = [""]
        self._named_nodes: dict[str, torch.fx.Node] = {}
        self._seen: Counter[str] = Counter()

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        return module_qualified_name in self._leaf_names or super().is_leaf_module(
            m, module_qualified_name
        )

    def call_module(
        self,
        m: nn.Module,
        forward: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        try:
            qualified_name = self.path_of_module(m)
        except NameError:
            # Not installed in the model, e.g. the new Sequential that `self.classifier[:-1]`
            # makes: trace through it; the layers inside it are installed and keep their names.
            return forward(*args, **kwargs)
        self._module_stack.append(qualified_name)
        try:
            output = super().call_module(m, forward, args, kwargs)
        finally:
            self._module_stack.pop()
        self._record(qualified_name, output)
        return output

    def create_proxy(
        self,
        kind: str,
        target: Any,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        name: str | None = None,
        type_expr: Any | None = None,
        proxy_factory_fn: Callable[[torch.fx.Node], torch.fx.Proxy] | None = None,
    ) -> torch.fx.Proxy:
        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)
        if kind in ("call_function", "call_method"):
            op = target if isinstance(target, str) else getattr(target, "__name__", "op")
            scope = self._module_stack[-1]
            self._record(f"{scope}.{op}" if scope else op, proxy)
        return proxy

    def _record(self, name: str, value: Any) -> None:
        if not isinstance(value, torch.fx.Proxy):
            return  # tuples and other containers have no single node to name
        count = self._seen[name]
        self._seen[name] += 1
        self._named_nodes[f"{name}_{count}" if count else name] = value.node


def trace(model: nn.Module, *, leaves: Collection[str] = ()) -> TracedModel:
    """Trace ``model`` (in eval mode) and name its results; ``leaves`` are module names to keep
    as single calls instead of tracing through them.

    Raises ``ValueError`` (naming the model and the cause) if the forward cannot be traced
    symbolically, e.g. because it branches on tensor values.
    """
    tracer = _NamingTracer(leaves)
    try:
        with eval_mode(model):
            graph = tracer.trace(model)
    except Exception as error:  # FX raises many types; the message is what helps
        name = getattr(model, "model_name", type(model).__name__)
        raise ValueError(
            f"cannot trace {name} symbolically (torch.fx): {type(error).__name__}: {error}"
        ) from error
    return TracedModel(model, graph, dict(tracer._named_nodes))


def node_names(model: nn.Module) -> list[str]:
    """Every name ``truncate`` and ``FeatureExtractor`` accept for ``model``, in execution order."""
    traced = trace(model)
    order = {node: index for index, node in enumerate(traced.graph.nodes)}
    return sorted(traced.names, key=lambda name: order[traced.names[name]])


_INPLACE_OPERATORS = {
    operator.iadd,
    operator.isub,
    operator.imul,
    operator.itruediv,
    operator.iand,
    operator.ior,
}


def _mutates_first_argument(node: torch.fx.Node, modules: dict[str, nn.Module]) -> bool:
    """Whether ``node`` writes into its first argument: an in-place layer or op."""
    if node.op == "call_module":
        return bool(getattr(modules.get(str(node.target)), "inplace", False))
    if node.op == "call_function":
        name = getattr(node.target, "__name__", "")
        return (
            node.target in _INPLACE_OPERATORS
            or node.kwargs.get("inplace") is True
            or (name.endswith("_") and not name.endswith("__"))
        )
    if node.op == "call_method":
        name = str(node.target)
        return name.endswith("_") and not name.endswith("__")
    return False


def graph_module(
    traced: TracedModel, outputs: torch.fx.Node | dict[str, torch.fx.Node], class_name: str
) -> torch.fx.GraphModule:
    """A module that runs ``traced`` only as far as ``outputs`` need (a node, or a dict of them).

    The module shares its layers (and so their parameters) with the traced model.
    """
    graph = torch.fx.Graph()
    copies: dict[torch.fx.Node, torch.fx.Node] = {}
    graph.graph_copy(traced.graph, copies)  # every node but the output, mapped in `copies`
    modules = dict(traced.root.named_modules())
    kept: dict[torch.fx.Node, torch.fx.Node] = {}

    def keep(node: torch.fx.Node) -> torch.fx.Node:
        # A later in-place op (ResNet's `relu(out + identity)` with inplace=True) would
        # overwrite the value we return: clone it first.
        copy = copies[node]
        if copy not in kept:
            kept[copy] = copy
            if any(_mutates_first_argument(user, modules) for user in copy.users):
                with graph.inserting_after(copy):
                    kept[copy] = graph.call_method("clone", (copy,))
        return kept[copy]

    if isinstance(outputs, torch.fx.Node):
        graph.output(keep(outputs))
    else:
        graph.output({key: keep(node) for key, node in outputs.items()})
    module = torch.fx.GraphModule(traced.root, graph, class_name)
    module.graph.eliminate_dead_code()  # drops the layers past the outputs ...
    module.delete_all_unused_submodules()  # ... and their modules
    module.recompile()
    return module
