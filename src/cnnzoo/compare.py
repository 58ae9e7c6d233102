"""Several models side by side: size, compute, memory for inference and training, speed here,
and accuracy where pretrained weights publish one.

Collecting (:func:`compare`, :func:`training_memory`) is apart from rendering (the
``Comparison`` methods); memory figures come from meta-device passes, so comparing ResNet-152
costs no real memory. Only the latency column runs the real model.
"""

from __future__ import annotations

import csv
import html
import importlib
import io
import json
import statistics
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils._pytree import tree_flatten

from cnnzoo._format import human_count, text_table
from cnnzoo._optional import require

__all__ = [
    "OPTIMIZERS",
    "Comparison",
    "ComparisonRow",
    "TrainingMemory",
    "compare",
    "training_memory",
]

# Lower-case name -> torch.optim class; their state is measured, not looked up in a table.
OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    name.lower(): cls
    for name, cls in vars(torch.optim).items()
    if isinstance(cls, type)
    and issubclass(cls, torch.optim.Optimizer)
    and cls is not torch.optim.Optimizer
}


@dataclass(frozen=True)
class TrainingMemory:
    """Bytes one training step holds at its peak, by kind (the sum is an upper bound: backward
    frees saved activations as it allocates gradients)."""

    weights: int  # parameters and buffers
    gradients: int  # one per trainable parameter
    optimizer_state: int  # e.g. SGD momentum: 1x, Adam(W): 2x the trainable parameters
    activations: int  # tensors autograd saves for backward at this batch, the input included
    optimizer: str
    batch_size: int

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer_state + self.activations


def _nbytes(tensors: Any) -> int:
    """Bytes of distinct storages (tied weights and views count once)."""
    seen: dict[int, int] = {}
    for t in tensors:
        storage = t.untyped_storage()
        seen.setdefault(storage._cdata, storage.nbytes())
    return sum(seen.values())


def _optimizer(name: str, parameters: list[nn.Parameter], momentum: float) -> torch.optim.Optimizer:
    cls = OPTIMIZERS.get(name.lower())
    if cls is None:
        raise ValueError(
            f"unknown optimizer {name!r}: expected one of {', '.join(sorted(OPTIMIZERS))}"
        )
    if cls is torch.optim.SGD:  # cnnzoo's recipes train SGD with momentum (0 for plain SGD)
        return torch.optim.SGD(parameters, lr=0.1, momentum=momentum)
    build: Any = cls  # each optimizer has its own defaults; the base signature differs
    return build(parameters)  # type: ignore[no-any-return]


def _meta_model(model_or_name: str | nn.Module, model_kwargs: dict[str, Any]) -> nn.Module:
    from cnnzoo.inspect.collect import build_meta, meta_copy

    if isinstance(model_or_name, str):
        return build_meta(model_or_name, **model_kwargs)
    return meta_copy(model_or_name)


def _input_size(
    model_or_name: str | nn.Module, input_size: Sequence[int] | None
) -> tuple[int, ...]:
    if input_size is not None:
        return tuple(int(v) for v in input_size)
    if isinstance(model_or_name, str):
        from cnnzoo.registry import model_info

        return tuple(model_info(model_or_name).input_size)
    raise ValueError("input_size is required for a model that is not registered by name")


def training_memory(
    model_or_name: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    batch_size: int = 32,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    **model_kwargs: Any,
) -> TrainingMemory:
    """Estimate the memory of one training step (forward, backward, optimizer step) of a model
    at ``batch_size``, by kind, without allocating it: the model runs on the meta device, where
    autograd still records which tensors it saves for backward.

    The optimizer's state is measured by stepping it once on the meta parameters, so any
    ``torch.optim`` optimizer is counted correctly (``momentum`` only applies to ``sgd``).
    """
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    size = _input_size(model_or_name, input_size)
    model = _meta_model(model_or_name, model_kwargs).train()
    parameters = list(model.parameters())
    trainable = [p for p in parameters if p.requires_grad]
    weights = _nbytes([*parameters, *model.buffers()])
    gradients = _nbytes(trainable)
    owned = {t.untyped_storage()._cdata for t in (*parameters, *model.buffers())}

    saved: dict[int, Tensor] = {}  # storage -> a tensor on it (kept alive: ids stay unique)

    def pack(t: Tensor) -> Tensor:
        key = t.untyped_storage()._cdata
        if key not in owned:
            saved.setdefault(key, t)
        return t

    x = torch.empty(batch_size, *size, device="meta")
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        outputs = [o for o in tree_flatten(model(x))[0] if isinstance(o, Tensor) and o.dim() == 2]
        target = torch.zeros(batch_size, dtype=torch.long, device="meta")
        # Auxiliary heads (GoogLeNet, Inception v3) are trained too: their activations count.
        loss = sum(nn.functional.cross_entropy(o, target) for o in outputs)
    activations = sum(t.untyped_storage().nbytes() for t in saved.values())
    del loss, outputs

    step = _optimizer(optimizer, trainable, momentum)
    for p in trainable:
        p.grad = torch.zeros_like(p)
    step.step()
    state = [v for s in step.state.values() for v in s.values() if isinstance(v, Tensor)]
    return TrainingMemory(
        weights=weights,
        gradients=gradients,
        optimizer_state=_nbytes(state),
        activations=activations,
        optimizer=optimizer.lower(),
        batch_size=batch_size,
    )


def measure_latency(model: nn.Module, input_size: Sequence[int], *, repeats: int = 5) -> float:
    """Median milliseconds of one eval-mode forward pass at batch 1 (after one warm-up pass)."""
    x = torch.randn(1, *input_size)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(max(1, repeats)):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def published_accuracy(name: str, weights: str | None = None) -> float | None:
    """ImageNet-1K top-1 (percent) of ``name``'s pretrained ``weights`` (default: the default
    entry) from the pretrained-weights table, or None where no weights are known."""
    try:
        table = importlib.import_module("cnnzoo.pretrained")
    except ImportError:
        return None
    try:
        entry = table.get_weights(name, weights or "DEFAULT")
    except (ValueError, KeyError, LookupError):
        return None
    acc1 = getattr(entry, "acc1", None)
    return None if acc1 is None else float(acc1)


@dataclass(frozen=True)
class ComparisonRow:
    model: str
    input_size: tuple[int, ...]
    params: int
    macs: int  # at batch 1
    activations_batch1: int  # bytes of every layer's output in one forward pass
    activations_batch: int  # the same at the comparison's batch size
    training: TrainingMemory
    latency_ms: float | None  # measured here, batch 1, eval mode
    acc1: float | None  # ImageNet-1K top-1 of the known weights, percent

    def to_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["input_size"] = list(self.input_size)
        row["training"]["total"] = self.training.total
        return row


_HEADERS = (
    "model",
    "input",
    "params",
    "MACs",
    "act@1",
    "act@B",
    "train@B",
    "latency ms",
    "acc@1",
)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


@dataclass(frozen=True)
class Comparison:
    """The rows of :func:`compare` and their renderings (markdown, CSV, JSON, HTML, a plot)."""

    rows: tuple[ComparisonRow, ...]
    batch_size: int
    optimizer: str
    threads: int
    notes: tuple[str, ...] = field(default=())

    def _cells(self) -> list[list[str]]:
        return [
            [
                r.model,
                "x".join(str(v) for v in r.input_size),
                human_count(r.params),
                human_count(r.macs),
                _mib(r.activations_batch1),
                _mib(r.activations_batch),
                _mib(r.training.total),
                "-" if r.latency_ms is None else f"{r.latency_ms:.2f}",
                "-" if r.acc1 is None else f"{r.acc1:.2f}",
            ]
            for r in self.rows
        ]

    def legend(self) -> str:
        return (
            f"B = batch {self.batch_size}; act = layer outputs of one forward pass; "
            f"train = weights + gradients + {self.optimizer} state + activations saved for "
            f"backward; latency: eval mode, batch 1, {self.threads} thread(s), median"
        )

    def to_text(self) -> str:
        right = [False, False, *([True] * 7)]
        return text_table(_HEADERS, self._cells(), right) + "\n" + self.legend() + "\n"

    def to_markdown(self) -> str:
        lines = [
            "| " + " | ".join(_HEADERS) + " |",
            "|---|---|" + "--:|" * 7,
            *("| " + " | ".join(cells) + " |" for cells in self._cells()),
        ]
        return "\n".join(lines) + "\n\n" + self.legend() + "\n"

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(
            [
                "model",
                "input",
                "params",
                "macs",
                "activation_bytes_batch1",
                f"activation_bytes_batch{self.batch_size}",
                "train_weights_bytes",
                "train_gradients_bytes",
                f"train_{self.optimizer}_state_bytes",
                "train_saved_activations_bytes",
                f"train_total_bytes_batch{self.batch_size}",
                "latency_ms",
                "acc1",
            ]
        )
        for r in self.rows:
            t = r.training
            writer.writerow(
                [
                    r.model,
                    "x".join(str(v) for v in r.input_size),
                    r.params,
                    r.macs,
                    r.activations_batch1,
                    r.activations_batch,
                    t.weights,
                    t.gradients,
                    t.optimizer_state,
                    t.activations,
                    t.total,
                    "" if r.latency_ms is None else f"{r.latency_ms:.4f}",
                    "" if r.acc1 is None else r.acc1,
                ]
            )
        return buffer.getvalue()

    def to_json(self, indent: int | None = 2) -> str:
        data = {
            "batch_size": self.batch_size,
            "optimizer": self.optimizer,
            "threads": self.threads,
            "notes": list(self.notes),
            "rows": [r.to_dict() for r in self.rows],
        }
        return json.dumps(data, indent=indent) + "\n"

    def to_html(self) -> str:
        head = "".join(f"<th>{html.escape(h)}</th>" for h in _HEADERS)
        body = "".join(
            "<tr>"
            + "".join(
                f"<td{'' if k < 2 else ' class=num'}>{html.escape(c)}</td>"
                for k, c in enumerate(cells)
            )
            + "</tr>"
            for cells in self._cells()
        )
        return (
            '<table class="cnnzoo-compare">'
            f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<p>{html.escape(self.legend())}</p>"
        )

    def _repr_html_(self) -> str:
        return self.to_html()

    def __str__(self) -> str:
        return self.to_text()

    def plot(self, path: str | Path, *, y: str = "auto") -> Path:
        """A scatter plot of ``y`` ("acc1", "macs"; "auto": accuracy when every row has one, else
        MACs) against measured latency, one labelled point per model; PNG or SVG by suffix."""
        FigureCanvasAgg = require("matplotlib.backends.backend_agg", "plots").FigureCanvasAgg
        Figure = require("matplotlib.figure", "plots").Figure

        from cnnzoo.explain.render import write_atomically

        path = Path(path)
        if path.suffix.lower() not in (".png", ".svg"):
            raise ValueError(f"plot file must end in .png or .svg, got {path.name!r}")
        rows = [r for r in self.rows if r.latency_ms is not None]
        if not rows:
            raise ValueError("no latency was measured: nothing to plot")
        if y == "auto":
            y = "acc1" if all(r.acc1 is not None for r in rows) else "macs"
        if y not in ("acc1", "macs"):
            raise ValueError(f"y must be 'acc1', 'macs' or 'auto', got {y!r}")
        if y == "acc1":
            rows = [r for r in rows if r.acc1 is not None]
            if not rows:
                raise ValueError("no model has a known accuracy: plot y='macs' instead")
        values = [float(r.acc1 if y == "acc1" else r.macs) for r in rows]  # type: ignore[arg-type]
        figure = Figure(figsize=(6.5, 4.5), dpi=100)
        FigureCanvasAgg(figure)
        axes = figure.add_subplot()
        latencies = [float(r.latency_ms or 0.0) for r in rows]
        axes.scatter(latencies, values)
        for r, x, v in zip(rows, latencies, values, strict=True):
            axes.annotate(
                r.model,
                (x, v),
                fontsize=8,
                xytext=(3, 3),
                textcoords="offset points",
            )
        axes.set_xlabel(f"latency, batch 1, {self.threads} thread(s) (ms)")
        axes.set_ylabel("ImageNet-1K acc@1 (%)" if y == "acc1" else "MACs at batch 1")
        if y == "macs":
            axes.set_yscale("log")
        axes.grid(alpha=0.3)
        figure.tight_layout()
        buffer = io.BytesIO()
        figure.savefig(buffer, format=path.suffix[1:].lower())
        write_atomically(buffer.getvalue(), path)
        return path


def compare(
    models: Sequence[str],
    input_size: Sequence[int] | None = None,
    *,
    batch_size: int = 32,
    optimizer: str = "sgd",
    momentum: float = 0.9,
    weights: str | None = None,
    latency: bool = True,
    repeats: int = 5,
    **model_kwargs: Any,
) -> Comparison:
    """One row per registered model: parameters, MACs, activation memory at batch 1 and at
    ``batch_size``, the :func:`training_memory` estimate for ``optimizer`` at ``batch_size``,
    latency measured here (unless ``latency=False``) and the published acc@1 of ``weights``."""
    from cnnzoo.inspect import summary
    from cnnzoo.registry import create_model

    if not models:
        raise ValueError("name at least one model to compare")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    rows = []
    for name in models:
        size = _input_size(name, input_size)
        if len(size) != 3:
            raise ValueError(f"input size must be C, H, W, got {size}")
        kwargs = dict(model_kwargs)
        if input_size is not None and "in_channels" not in kwargs:
            kwargs["in_channels"] = size[0]
        table = summary(name, size, **kwargs)
        training = training_memory(
            name, size, batch_size=batch_size, optimizer=optimizer, momentum=momentum, **kwargs
        )
        milliseconds = None
        if latency:
            model = create_model(name, weights=weights or None, **kwargs).eval()
            milliseconds = measure_latency(model, size, repeats=repeats)
            del model
        rows.append(
            ComparisonRow(
                model=name,
                input_size=size,
                params=table.total_params,
                macs=table.total_macs,
                activations_batch1=table.activation_bytes,
                # Every layer output carries the batch dimension: bytes scale exactly with it.
                activations_batch=table.activation_bytes * batch_size,
                training=training,
                latency_ms=milliseconds,
                acc1=published_accuracy(name, weights),
            )
        )
    return Comparison(tuple(rows), batch_size, optimizer.lower(), torch.get_num_threads())
