"""Exporting models to ONNX and TorchScript, checked numerically against PyTorch.

>>> report = cnnzoo.export_model(cnnzoo.create_model("resnet18"), "resnet18.onnx",
...                              dynamic_batch=True)
>>> report.check  # onnxruntime against PyTorch, at batches of 2 and 1
OutputCheck(max_abs_error=..., rel_error=...)

ONNX goes through ``torch.export`` (PyTorch's exporter since 2.9); TorchScript through
``torch.jit.trace``, which PyTorch has deprecated but still runs. A failure raises
``ExportError`` naming the layer (module path and type) and, where known, the operator.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo._modes import eval_mode
from cnnzoo._optional import require
from cnnzoo.inference import OutputCheck, compare_outputs
from cnnzoo.registry import model_info

__all__ = [
    "FORMATS",
    "ExportError",
    "ExportReport",
    "export_model",
    "is_torchscript",
    "read_metadata",
]

FORMATS = ("onnx", "torchscript")
# Relative max-norm error accepted between the exported model and PyTorch in float32: the
# runtimes may fuse and reorder sums, nothing more.
EXPORT_TOLERANCE = 1e-4
# Above protobuf's 2 GiB limit the weights must live beside the .onnx file.
_ONNX_SINGLE_FILE_LIMIT = 1_900_000_000
_EXTRA_FILE = "cnnzoo.json"  # TorchScript: the metadata, as one JSON object of strings


class ExportError(RuntimeError):
    """An export failed or its output differs from PyTorch's; says where."""

    def __init__(self, message: str, *, layer: str | None = None, operator: str | None = None):
        super().__init__(message)
        self.layer = layer  # "module.path (Type)", if known
        self.operator = operator  # e.g. "aten.grid_sampler_2d.default", if known


@dataclass(frozen=True)
class ExportReport:
    """What ``export_model`` wrote and how it compared with PyTorch."""

    path: Path
    format: str
    input_shape: tuple[int, ...]  # of the example input the model was exported with
    dynamic_batch: bool
    check: OutputCheck | None  # worst over the batch sizes checked; None: not checked
    checked_batches: tuple[int, ...]
    note: str = ""  # e.g. why no check ran


class _LayerTracker:
    """Which layer is running, by forward hooks: after an exception, the innermost layer that
    was entered and not left is where it happened."""

    def __init__(self, model: nn.Module) -> None:
        self.stack: list[tuple[str, str]] = []
        self._handles = []
        for name, module in model.named_modules():
            if name:
                self._handles.append(module.register_forward_pre_hook(self._enter(name)))
                self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, name: str) -> Callable[[nn.Module, Any], None]:
        def hook(module: nn.Module, args: Any) -> None:
            self.stack.append((name, type(module).__name__))

        return hook

    def _leave(self, module: nn.Module, args: Any, output: Any) -> None:
        if self.stack:
            self.stack.pop()

    @property
    def innermost(self) -> str | None:
        return f"{self.stack[-1][0]} ({self.stack[-1][1]})" if self.stack else None

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


@contextmanager
def _tracked(model: nn.Module) -> Iterator[_LayerTracker]:
    tracker = _LayerTracker(model)
    try:
        yield tracker
    finally:
        tracker.remove()


@contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence the exporters' progress lines and their own deprecation notices."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning, torch.jit.TracerWarning):  # type: ignore[attr-defined]
                warnings.simplefilter("ignore", category)
            yield
    finally:
        logger.setLevel(level)


def _first_line(error: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # the exporters colour their messages
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return f"{type(error).__name__}: {lines[0] if lines else ''}"


def _failed_node(
    program: torch.export.ExportedProgram, error: BaseException
) -> tuple[str | None, str | None]:
    """(layer, operator) of the graph node an ONNX translation error is about."""
    text = "\n".join(str(e) for e in _chain(error))
    nodes = [n for n in program.graph.nodes if n.op == "call_function"]
    match = re.search(r"translating node %(\S+)", text)
    node = next((n for n in nodes if match and n.name == match.group(1)), None)
    if node is None:  # no node name: the first operator the message mentions
        node = next((n for n in nodes if str(n.target) in text), None)
    if node is None:
        return None, None
    return _node_layer(node), str(node.target)


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _node_layer(node: torch.fx.Node) -> str | None:
    """ "path (Type)" of the innermost module a node of an exported program comes from."""
    stack = node.meta.get("nn_module_stack") or {}
    if not stack:
        return None
    path, kind = list(stack.values())[-1]
    return f"{path} ({str(kind).rsplit('.', 1)[-1]})" if path else None


def _rewrite_divisor_override(program: torch.export.ExportedProgram) -> None:
    """Rewrite avg_pool2d(..., divisor_override=d) as avg_pool2d(...) * (kh * kw / d).

    The ONNX exporter (onnxscript's torch_lib, a TODO there) silently ignores divisor_override,
    which LeNet-5's trainable subsampling uses (divisor 1: the plain sum of each 2x2 block).
    The rewrite is exact whenever every window is divided by kh * kw without the override: no
    ceil_mode, and no padding unless padding counts (count_include_pad).
    """
    graph = program.graph_module.graph
    avg_pool2d = torch.ops.aten.avg_pool2d.default
    changed = False
    for node in list(graph.nodes):
        if node.op != "call_function" or node.target != avg_pool2d:
            continue
        defaults: list[Any] = [None, None, [], 0, False, True, None]
        args = list(node.args) + defaults[len(node.args) :]
        for index, key in enumerate(
            ("self", "kernel_size", "stride", "padding", "ceil_mode", "count_include_pad")
        ):
            args[index] = node.kwargs.get(key, args[index])
        divisor = node.kwargs.get("divisor_override", args[6])
        if divisor is None:
            continue
        kernel, padding = list(args[1]), args[3]
        kernel = kernel * 2 if len(kernel) == 1 else kernel
        padded = any(padding) if isinstance(padding, (list, tuple)) else bool(padding)
        if args[4] or (padded and not args[5]):
            layer = _node_layer(node)
            raise ExportError(
                f"ONNX has no avg_pool2d divisor_override"
                f"{f' (layer {layer})' if layer else ''} and it cannot be rewritten exactly "
                "with ceil_mode or uncounted padding",
                layer=layer,
                operator=str(node.target),
            )
        with graph.inserting_after(node):
            pooled = graph.call_function(avg_pool2d, tuple(args[:6]))
        with graph.inserting_after(pooled):
            scaled = graph.call_function(
                torch.ops.aten.mul.Tensor, (pooled, kernel[0] * kernel[1] / divisor)
            )
        for new in (pooled, scaled):  # same shape and dtype: the translator reads meta["val"]
            new.meta = dict(node.meta)
        node.replace_all_uses_with(scaled)
        graph.erase_node(node)
        changed = True
    if changed:
        program.graph_module.recompile()


def _export_onnx(
    model: nn.Module,
    example: Tensor,
    path: Path,
    *,
    dynamic_batch: bool,
    opset: int | None,
    metadata: Mapping[str, str],
) -> None:
    require_onnx_exporter()
    dynamic_shapes = ({0: torch.export.Dim("batch", min=1)},) if dynamic_batch else None
    with _quiet_exporters(), _tracked(model) as tracker:
        try:
            program = torch.export.export(
                model, (example,), dynamic_shapes=dynamic_shapes, strict=False
            )
        except Exception as error:
            layer = tracker.innermost
            where = f" in layer {layer}" if layer else ""
            raise ExportError(
                f"torch.export failed{where}: {_first_line(error)}", layer=layer
            ) from error
    _rewrite_divisor_override(program)
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    with _quiet_exporters():
        try:
            onnx_program = torch.onnx.export(
                program,
                (example,),
                dynamo=True,
                input_names=["input"],
                output_names=["output"],
                opset_version=opset,
                verbose=False,
            )
            assert onnx_program is not None
            onnx_program.model.metadata_props.update(metadata)
            external = weight_bytes > _ONNX_SINGLE_FILE_LIMIT
            if external:  # the weights file is named after the .onnx: write in place
                onnx_program.save(str(path), external_data=True)
            else:
                with atomic_path(path) as tmp:
                    onnx_program.save(str(tmp), external_data=False)
        except Exception as error:
            layer, operator = _failed_node(program, error)
            where = "".join(
                [
                    f" in layer {layer}" if layer else "",
                    f" at operator {operator}" if operator else "",
                ]
            )
            summary = _first_line(list(_chain(error))[-1])  # the root cause
            raise ExportError(
                f"ONNX translation failed{where}: {summary}", layer=layer, operator=operator
            ) from error


def require_onnx_exporter() -> None:
    """torch's ONNX exporter needs onnx and onnxscript (the optional ``deploy`` extra)."""
    for module in ("onnx", "onnxscript"):
        require(module, "ONNX export")


def _export_torchscript(
    model: nn.Module, example: Tensor, path: Path, metadata: Mapping[str, str]
) -> None:
    with _quiet_exporters(), _tracked(model) as tracker:
        try:
            traced = torch.jit.trace(model, example, check_trace=False)  # type: ignore[no-untyped-call]
        except Exception as error:
            layer = tracker.innermost
            where = f" in layer {layer}" if layer else ""
            raise ExportError(
                f"torch.jit.trace failed{where}: {_first_line(error)}", layer=layer
            ) from error
        # TorchScript keeps strings beside the code as "extra files"; one JSON file holds all.
        extra = {_EXTRA_FILE: json.dumps(dict(metadata))} if metadata else {}
        with atomic_path(path) as tmp:
            torch.jit.save(traced, str(tmp), _extra_files=extra)


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path``, renamed onto it when the block succeeds."""
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_torchscript(path: str | Path) -> bool:
    """Whether ``path`` is a TorchScript archive (code inside), not a plain ``torch.save``."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(n.endswith("/constants.pkl") for n in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata an exported file carries: ONNX ``metadata_props``, or the TorchScript
    extra file ``cnnzoo.json``; {} when there is none. ``Preprocessing.from_metadata`` turns
    it into the model's input pipeline."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no exported model at {path}")
    if is_torchscript(path):
        extra = {_EXTRA_FILE: ""}
        with _quiet_exporters():
            torch.jit.load(str(path), map_location="cpu", _extra_files=extra)  # type: ignore[no-untyped-call]
        return dict(json.loads(extra[_EXTRA_FILE])) if extra[_EXTRA_FILE] else {}
    from cnnzoo.ort import read_onnx_metadata

    try:
        return read_onnx_metadata(path)
    except ImportError:
        raise
    except Exception as error:
        raise ValueError(
            f"{path} is neither an ONNX file nor TorchScript: {_first_line(error)}"
        ) from None


def _run_onnx(path: Path) -> Callable[[Tensor], Tensor]:
    from cnnzoo.ort import OnnxRuntimeModel

    return OnnxRuntimeModel(path)


def _run_torchscript(path: Path) -> Callable[[Tensor], Tensor]:
    with _quiet_exporters():
        loaded = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]

    def run(x: Tensor) -> Tensor:
        with torch.inference_mode(), _quiet_exporters():
            return loaded(x.cpu())  # type: ignore[no-any-return]

    return run


def _default_input_shape(model: nn.Module) -> tuple[int, int, int]:
    name = getattr(model, "model_name", None)
    if name is None:
        raise ValueError(f"give input_size: {type(model).__name__} is not a registered model")
    _, height, width = model_info(name).input_size
    return int(getattr(model, "in_channels", 3)), height, width


def export_model(
    model: nn.Module,
    output: str | Path,
    *,
    format: str = "onnx",
    input_size: tuple[int, int, int] | None = None,
    dynamic_batch: bool = False,
    check: bool = True,
    opset: int | None = None,
    metadata: Mapping[str, str] | None = None,
) -> ExportReport:
    """Export ``model`` (in eval mode) to ``output`` as ONNX or TorchScript, and check it.

    ``input_size`` is (C, H, W); by default the model's registered input size. The example batch
    is 1, or 2 with ``dynamic_batch`` (a batch of 1 would let the exporter fix the size). The
    check runs the exported file (onnxruntime or ``torch.jit.load``) on the example batch, and
    with ``dynamic_batch`` on a batch of 1 too, and raises ``ExportError`` if its output
    differs from PyTorch's by more than 1e-4 relative. ONNX checks need onnxruntime; without it
    the export is written unchecked and the report says so.

    ``metadata`` (string keys and values, e.g. ``Preprocessing.to_metadata()``) is stored in
    the file: ONNX ``metadata_props``, or a TorchScript extra file; ``read_metadata`` reads it.
    The file is written atomically (except ONNX over 2 GB, whose weights go beside it).
    """
    if format not in FORMATS:
        raise ValueError(f"unknown export format {format!r}; choose {', '.join(FORMATS)}")
    path = Path(output)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no directory {path.parent} to write {path.name} into")
    shape = tuple(input_size) if input_size is not None else _default_input_shape(model)
    example_batch = 2 if dynamic_batch else 1
    example = torch.randn(example_batch, *shape)
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    name = getattr(model, "model_name", type(model).__name__)

    with eval_mode(model):  # every module's own mode comes back, frozen parts stay frozen
        try:
            exportable = model.cpu() if device.type != "cpu" else model
            if format == "onnx":
                _export_onnx(
                    exportable,
                    example,
                    path,
                    dynamic_batch=dynamic_batch,
                    opset=opset,
                    metadata=metadata or {},
                )
            else:
                _export_torchscript(exportable, example, path, metadata or {})
            if not check:
                return ExportReport(path, format, tuple(example.shape), dynamic_batch, None, ())
            try:
                run = _run_onnx(path) if format == "onnx" else _run_torchscript(path)
            except ImportError:
                note = "onnxruntime is not installed (pip install 'cnnzoo[deploy]'): not checked"
                shape_given = tuple(example.shape)
                return ExportReport(path, format, shape_given, dynamic_batch, None, (), note)
            batches = (example_batch, 1) if dynamic_batch else (example_batch,)
            worst: OutputCheck | None = None
            for batch in batches:
                x = example if batch == example_batch else torch.randn(batch, *shape)
                with torch.inference_mode():
                    reference = exportable(x)
                try:
                    result = compare_outputs(run(x), reference)
                except Exception as error:
                    raise ExportError(
                        f"the exported {name} fails to run on a batch of {batch}: "
                        f"{_first_line(error)}"
                    ) from error
                if not result.rel_error <= EXPORT_TOLERANCE:
                    raise ExportError(
                        f"the exported {name} differs from PyTorch on a batch of {batch}: {result}"
                    )
                if worst is None or result.rel_error > worst.rel_error:
                    worst = result
            return ExportReport(path, format, tuple(example.shape), dynamic_batch, worst, batches)
        finally:
            model.to(device)
