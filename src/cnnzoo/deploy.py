"""CPU deployment: export a model or a trained run to ONNX (fp32, or int8 calibrated on the
run's real images), and benchmark every runtime side by side.

>>> result = export_int8(load_source("runs/lenet5"), "lenet5-int8.onnx")
>>> result.accuracy  # {"fp32": 0.9746, "int8": 0.9718} on the run's held-out split
>>> rows = bench_runtimes(load_source("resnet50"), batch_size=8)   # eager, optimised, ORT x2

A source is a registered model name (fresh weights), a run directory or checkpoint of
``cnnzoo train`` (its weights, input size, preprocessing and data), or an exported ``.onnx``
file (with the preprocessing it carries, when cnnzoo exported it).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from cnnzoo.export import export_model, is_torchscript, read_metadata
from cnnzoo.inference import (
    BenchResult,
    compare_outputs,
    measure_accuracy,
    native_peak,
    optimize_for_inference,
    time_side_by_side,
)
from cnnzoo.inspect import summary
from cnnzoo.ort import OnnxRuntimeModel, is_quantized, quantize_int8, require_onnxruntime
from cnnzoo.precision import AUTO
from cnnzoo.preprocessing import Preprocessing, batches, read_run_config
from cnnzoo.registry import create_model, model_info

if TYPE_CHECKING:
    from cnnzoo.train.predict import Prediction

__all__ = [
    "CALIBRATION_BATCH_SIZE",
    "Int8Export",
    "Source",
    "bench_runtimes",
    "export_int8",
    "load_exported",
    "load_source",
    "predict_exported",
]

CALIBRATION_BATCH_SIZE = 32
EVAL_BATCH_SIZE = 256
_FILE_SUFFIXES = (".pt", ".pth", ".onnx", ".ckpt", ".tar", ".ts")
MACS_KEY = "cnnzoo.macs_per_image"  # metadata: summary()'s count, for benchmarking the file


@dataclass
class Source:
    """What ``cnnzoo export`` / ``cnnzoo bench`` was pointed at."""

    name: str  # the model's registered name, or the file's name
    origin: str  # for messages: "checkpoint runs/x/last.pt", "resnet50 with fresh weights"
    input_size: tuple[int, int, int]
    model: nn.Module | None = None  # None: only an ONNX file
    onnx_path: Path | None = None
    preprocessing: Preprocessing | None = None  # None: untrained, or a file without metadata
    metadata: dict[str, str] = field(default_factory=dict)

    @property
    def trained(self) -> bool:
        return self.preprocessing is not None


def load_source(
    text: str | Path,
    input_size: tuple[int, int, int] | None = None,
    weights: str | None = None,
) -> Source:
    """A model name, a run (directory or checkpoint) or an ``.onnx`` file; ``input_size``
    (C, H, W) overrides a model's default, and must match a run's trained size; ``weights``
    (pretrained weights, see :func:`cnnzoo.create_model`) goes with a model name only."""
    path = Path(text)
    if path.is_file() and path.suffix.lower() == ".onnx":
        metadata = read_metadata(path)
        prep = _metadata_preprocessing(metadata)
        shape = OnnxRuntimeModel(path).input_shape
        size = prep.input_size if prep is not None else _static_size(shape, path)
        return Source(path.name, f"file {path}", size, None, path, prep, metadata)
    if path.is_file() and is_torchscript(path):
        raise ValueError(f"{path} is TorchScript: bench and int8 take a run, a model or .onnx")
    if weights is not None and (path.is_dir() or path.is_file()):
        raise ValueError("--weights goes with a model name; a run or a file has its own weights")
    if path.is_dir() or path.is_file():
        from cnnzoo.train.predict import model_from_checkpoint

        model, checkpoint = model_from_checkpoint(path)  # EMA weights if the run kept them
        origin = f"checkpoint {path}"
        try:
            prep = Preprocessing.from_checkpoint(checkpoint, read_run_config(path))
        except ValueError:  # weights and a config, but no record of the data: a bare model
            name = str(checkpoint["config"]["model"])
            channels = int(getattr(model, "in_channels", model_info(name).input_size[0]))
            if input_size is not None and input_size[0] != channels:
                raise ValueError(
                    f"--input {_shape(input_size)}: the checkpoint's model takes "
                    f"{channels} channels"
                ) from None
            size = input_size or (channels, *model_info(name).input_size[1:])
            return Source(name, origin, _size3(size), model.eval())
        if input_size is not None and tuple(input_size) != prep.input_size:
            raise ValueError(
                f"the run was trained on {_shape(prep.input_size)} inputs; exporting it at "
                f"{_shape(input_size)} would not match its preprocessing (leave out --input)"
            )
        return Source(prep.model, origin, prep.input_size, model, None, prep)
    if "/" in str(text) or "\\" in str(text) or path.suffix in _FILE_SUFFIXES:
        raise FileNotFoundError(f"no run, checkpoint or ONNX file at {path}")
    name = str(text)
    info = model_info(name)  # unknown names: ValueError with the nearest
    size = _size3(input_size if input_size is not None else info.input_size)
    model = create_model(name, weights=weights, in_channels=size[0]).eval()
    origin = f"weights {weights}" if weights is not None else "freshly initialised weights"
    return Source(name, f"{name} with {origin}", size, model)


def _size3(size: tuple[int, ...]) -> tuple[int, int, int]:
    c, h, w = (int(v) for v in size)
    return c, h, w


def _shape(size: tuple[int, ...]) -> str:
    return "x".join(str(v) for v in size)


def _static_size(shape: tuple[object, ...], path: Path) -> tuple[int, int, int]:
    if len(shape) != 4 or not all(isinstance(v, int) for v in shape[1:]):
        raise ValueError(f"{path}: expected an image input (N, C, H, W), got {shape}")
    return _size3(tuple(int(v) for v in shape[1:]))  # type: ignore[call-overload]


def _metadata_preprocessing(metadata: dict[str, str]) -> Preprocessing | None:
    try:
        return Preprocessing.from_metadata(metadata)
    except (ValueError, TypeError, KeyError):
        return None


def source_metadata(source: Source) -> dict[str, str]:
    """What an exported file of ``source`` carries: preprocessing and classes of a run, the
    model's name and its MACs (for ``cnnzoo bench FILE``)."""
    metadata = {"cnnzoo.model": source.name}
    if source.preprocessing is not None:
        metadata.update(source.preprocessing.to_metadata())
    if source.model is not None:
        metadata[MACS_KEY] = str(summary(source.model, source.input_size).total_macs)
    return metadata


def _macs(source: Source) -> int | None:
    if source.model is not None:
        return summary(source.model, source.input_size).total_macs
    value = source.metadata.get(MACS_KEY)
    return int(value) if value is not None and value.isdigit() else None


# -- data ---------------------------------------------------------------------------------------


def calibration_batches(
    source: Source, data: str | None, count: int, data_dir: str | None = None
) -> Iterator[Tensor]:
    """``count`` batches of real images for int8 calibration: the run's training split (or
    ``data``: a dataset name or image folder), through the run's evaluation pipeline; for an
    untrained model, ``data`` brought to its input size. Shuffled with a fixed seed, so that
    every class is seen."""
    prep = source.preprocessing
    if prep is not None:
        dataset = prep.load_split("train", data)
    elif data is not None:
        from cnnzoo.data import load_dataset

        dataset = load_dataset(data, data_dir, "train")
        prep = Preprocessing.for_dataset(source.name, dataset, source.input_size, data_dir)
    else:
        raise ValueError(
            f"int8 calibration needs real images: give --calibrate DATA (a dataset name or an "
            f"image folder) for {source.name}"
        )
    pipeline = prep.pipeline()
    for inputs, _ in batches(
        dataset, pipeline, CALIBRATION_BATCH_SIZE, limit=count, shuffle_seed=0
    ):
        yield inputs


def heldout_batches(source: Source, data: str | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """The held-out split of the run's dataset (or ``data``), through its pipeline."""
    assert source.preprocessing is not None
    dataset = source.preprocessing.load_split("test", data)
    yield from batches(dataset, source.preprocessing.pipeline(), EVAL_BATCH_SIZE)


# -- export -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Int8Export:
    path: Path
    calibration_batches: int
    accuracy: dict[str, float]  # {"fp32": ..., "int8": ...}; empty for an untrained model
    test_images: int
    max_rel_error: float  # int8 against fp32 logits on the first calibration batch


def export_int8(
    source: Source,
    output: str | Path,
    *,
    calibrate: str | None = None,
    calibration_batches_count: int = 8,
    method: str = "minmax",
    data_dir: str | None = None,
) -> Int8Export:
    """Export ``source`` to ONNX, quantise it to int8 with onnxruntime (static, QDQ,
    per-channel weights) calibrated on real images, and, for a trained run, measure fp32 and
    int8 accuracy on the held-out split. Only the int8 file is written to ``output``."""
    require_onnxruntime()
    if calibration_batches_count < 1:
        raise ValueError(f"calibration batches must be at least 1, got {calibration_batches_count}")
    output = Path(output)
    if not output.parent.is_dir():
        raise FileNotFoundError(f"no directory {output.parent} to write {output.name} into")
    with tempfile.TemporaryDirectory(prefix="cnnzoo-int8-") as work:
        fp32 = _fp32_file(source, Path(work))
        calibration = list(
            calibration_batches(source, calibrate, calibration_batches_count, data_dir)
        )
        used = quantize_int8(fp32, output, calibration, method=method)
        fp32_model, int8_model = OnnxRuntimeModel(fp32), OnnxRuntimeModel(output)
        error = compare_outputs(int8_model(calibration[0]), fp32_model(calibration[0]))
        accuracy: dict[str, float] = {}
        images = 0
        if source.trained:
            for label, runner in (("fp32", fp32_model), ("int8", int8_model)):
                accuracy[label], images = measure_accuracy(runner, heldout_batches(source))
    return Int8Export(output, used, accuracy, images, error.rel_error)


def _fp32_file(source: Source, work: Path) -> Path:
    """An fp32 ONNX file of ``source`` with a dynamic batch (exported into ``work``)."""
    if source.model is None:
        assert source.onnx_path is not None
        if is_quantized(source.onnx_path):
            raise ValueError(f"{source.onnx_path} is already quantised")
        return source.onnx_path
    path = work / f"{source.name}.onnx"
    export_model(
        source.model,
        path,
        input_size=source.input_size,
        dynamic_batch=True,
        metadata=source_metadata(source),
    )
    return path


# -- bench --------------------------------------------------------------------------------------


def bench_runtimes(
    source: Source,
    *,
    batch_size: int = 1,
    precision: str = AUTO,
    compile: bool = False,
    calibrate: str | None = None,
    calibration_batches_count: int = 8,
    accuracy: bool = True,
    data: str | None = None,
    warmup: int = 2,
    iters: int = 10,
    data_dir: str | None = None,
) -> list[BenchResult]:
    """Time every runtime on one batch, side by side in one run: PyTorch eager fp32 and
    ``optimize_for_inference`` (``precision``), ONNX Runtime fp32 and int8 (an ``.onnx``
    source: the file itself, and its int8 version when it is fp32). With a trained run (or a
    file carrying its data) and ``accuracy``, each runtime's accuracy on the held-out split.

    int8 is calibrated on real images when there are any (the run's, or ``calibrate``), else
    on random inputs: the timing holds, the accuracy would not, and none is measured.
    """
    require_onnxruntime()
    if source.onnx_path is not None:
        fixed = OnnxRuntimeModel(source.onnx_path).input_shape[0]
        if isinstance(fixed, int) and fixed != batch_size:
            raise ValueError(
                f"{source.onnx_path.name} takes batches of exactly {fixed}: bench it with "
                f"--batch-size {fixed}, or export with --dynamic-batch"
            )
    example = torch.randn(batch_size, *source.input_size)
    macs = _macs(source)
    runners: list[tuple[str, str, Callable[[Tensor], Any]]] = []
    with tempfile.TemporaryDirectory(prefix="cnnzoo-bench-") as work:
        # an .onnx source is benched as it is (fp32 or already int8)
        fp32_path = source.onnx_path or _fp32_file(source, Path(work))
        if source.model is not None:
            model = source.model.eval()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # the CLI notes emulation
                optimized = optimize_for_inference(
                    model, example, precision=precision, compile=compile
                )
            runners += [
                ("torch eager", "fp32", model),
                ("torch optimised", optimized.precision, optimized),
            ]
        file_precision = "int8" if is_quantized(fp32_path) else "fp32"
        runners.append(("onnxruntime", file_precision, OnnxRuntimeModel(fp32_path)))
        if file_precision == "fp32":
            int8_path = Path(work) / "int8.onnx"
            if source.trained or calibrate is not None:
                calibration = list(
                    calibration_batches(source, calibrate, calibration_batches_count, data_dir)
                )
            else:
                generator = torch.Generator().manual_seed(0)
                calibration = [
                    torch.randn(CALIBRATION_BATCH_SIZE, *source.input_size, generator=generator)
                    for _ in range(calibration_batches_count)
                ]
            quantize_int8(fp32_path, int8_path, calibration)
            runners.append(("onnxruntime", "int8", OnnxRuntimeModel(int8_path)))
        callables = [runner for _, _, runner in runners]
        reference = None
        if source.model is not None:
            with torch.inference_mode():
                reference = callables[0](example)
        timings = time_side_by_side(callables, example, warmup=warmup, iters=iters)
        results = []
        for index, ((runtime, prec, runner), timing) in enumerate(
            zip(runners, timings, strict=True)
        ):
            check = None
            if reference is not None and index > 0:
                with torch.inference_mode():
                    check = compare_outputs(runner(example), reference)
            acc = None
            if accuracy and source.trained:
                acc, _ = measure_accuracy(runner, heldout_batches(source, data))
            results.append(BenchResult(runtime, prec, timing, macs, native_peak(prec), check, acc))
    return results


def results_json(results: list[BenchResult]) -> str:
    """``--json``: the records, speed-ups against the first result."""
    return json.dumps([r.record(results[0]) for r in results], indent=2) + "\n"


# -- predict ------------------------------------------------------------------------------------


def is_exported_file(path: str | Path) -> bool:
    """An exported model (``.onnx``, or a TorchScript archive) rather than a checkpoint."""
    path = Path(path)
    return path.is_file() and (path.suffix.lower() == ".onnx" or is_torchscript(path))


def load_exported(path: str | Path) -> tuple[Callable[[Tensor], Tensor], Preprocessing]:
    """An exported file as a callable (ONNX Runtime or TorchScript) and the preprocessing it
    carries; ``ValueError`` when it carries none (exported from a model name, not a run)."""
    path = Path(path)
    preprocessing = _metadata_preprocessing(read_metadata(path))
    if preprocessing is None:
        raise ValueError(
            f"{path} carries no preprocessing or class names: export it from a run "
            "(cnnzoo export RUN)"
        )
    if is_torchscript(path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.load's notice
            module = torch.jit.load(str(path), map_location="cpu")  # type: ignore[no-untyped-call]
        return module, preprocessing
    return OnnxRuntimeModel(path), preprocessing


def predict_exported(
    path: str | Path, images: Sequence[str | Path], *, top_k: int = 5
) -> list[Prediction]:
    """The ``top_k`` classes of each image file by an exported model, preprocessed as its
    metadata says (decoded at the training images' size and channels, then the run's
    evaluation pipeline): the same answers ``cnnzoo predict RUN`` gives."""
    from cnnzoo.data.folder import decode_images
    from cnnzoo.train.predict import Prediction

    if top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    files = [Path(p) for p in images]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"no image file at {file}")
    model, prep = load_exported(path)
    c, h, w = prep.image_size
    batch = decode_images(files, (h, w), workers=1, channels=c)
    with torch.inference_mode():
        probabilities = model(prep.pipeline()(batch).float()).float().softmax(dim=1)
    values, indices = probabilities.topk(min(top_k, len(prep.classes)), dim=1)
    return [
        Prediction(
            str(file),
            [(prep.classes[int(i)], float(v)) for v, i in zip(row_v, row_i, strict=True)],
        )
        for file, row_v, row_i in zip(files, values, indices, strict=True)
    ]
