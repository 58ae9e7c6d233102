"""ONNX Runtime: running exported files, and int8 static post-training quantisation.

Quantisation is onnxruntime's own (``onnxruntime.quantization.quantize_static``): QDQ format,
per-channel int8 weights, uint8 activations whose ranges are calibrated on real input batches
(the U8S8 pairing ONNX Runtime's x86 kernels, VNNI included, are fastest with). cnnzoo only
feeds it the calibration batches and carries the file's metadata across.

onnxruntime is an optional dependency: ``pip install 'cnnzoo[deploy]'``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import Tensor

from cnnzoo._optional import require

__all__ = [
    "CALIBRATION_METHODS",
    "OnnxRuntimeModel",
    "is_quantized",
    "quantize_int8",
    "read_onnx_metadata",
    "require_onnxruntime",
]

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


def require_onnxruntime() -> ModuleType:
    """The ``onnxruntime`` module, or a one-line ``MissingExtraError`` naming the extra."""
    return require("onnxruntime", "ONNX Runtime")


class OnnxRuntimeModel:
    """An ONNX file in an ONNX Runtime CPU session, called like a module: float32 tensor in,
    tensor out. Uses as many threads as torch does, so that the two compare fairly."""

    def __init__(self, path: str | Path, *, threads: int | None = None) -> None:
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.input_shape = tuple(self.session.get_inputs()[0].shape)

    def __call__(self, x: Tensor) -> Tensor:
        batch = self.input_shape[0] if self.input_shape else None
        if isinstance(batch, int) and batch != x.shape[0] and x.shape[0] % batch == 0:
            # exported with a fixed batch: run it in pieces of that size
            return torch.cat([self(piece) for piece in torch.split(x, batch)])
        array = np.ascontiguousarray(x.detach().cpu().float().numpy())
        return torch.from_numpy(self.session.run(None, {self.input_name: array})[0])

    @property
    def metadata(self) -> dict[str, str]:
        return dict(self.session.get_modelmeta().custom_metadata_map)


def read_onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file, as a dict (read by ONNX Runtime)."""
    ort = require_onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return dict(session.get_modelmeta().custom_metadata_map)


def is_quantized(path: str | Path) -> bool:
    """Whether an ONNX file holds quantised operators (QDQ or QOperator)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    quantized = {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger", "QLinearMatMul"}
    return any(node.op_type in quantized for node in model.graph.node)


class _Reader:
    """onnxruntime's CalibrationDataReader protocol over an iterable of input batches."""

    def __init__(self, input_name: str, batches: Iterable[Tensor]) -> None:
        self.input_name = input_name
        self._batches: Iterator[Tensor] = iter(batches)
        self.count = 0

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        batch = next(self._batches, None)
        if batch is None:
            return None
        self.count += 1
        return {self.input_name: np.ascontiguousarray(batch.detach().cpu().float().numpy())}

    def rewind(self) -> None:  # part of the protocol; one pass is all static calibration needs
        pass


def quantize_int8(
    fp32_path: str | Path,
    output: str | Path,
    calibration: Iterable[Tensor],
    *,
    method: str = "minmax",
    per_channel: bool = True,
) -> int:
    """Quantise the float32 ONNX file ``fp32_path`` to int8 (static, QDQ) into ``output``,
    calibrating activation ranges on the batches of ``calibration`` (model inputs, already
    preprocessed). Returns the number of calibration batches used. ``output`` is written
    atomically and keeps the input file's metadata."""
    require_onnxruntime()
    import onnx
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIBRATION_METHODS:
        raise ValueError(
            f"unknown calibration method {method!r}; choose {', '.join(CALIBRATION_METHODS)}"
        )
    methods = {
        "minmax": q.CalibrationMethod.MinMax,
        "entropy": q.CalibrationMethod.Entropy,
        "percentile": q.CalibrationMethod.Percentile,
    }
    source, output = Path(fp32_path), Path(output)
    metadata = {
        p.key: p.value for p in onnx.load(str(source), load_external_data=False).metadata_props
    }
    graph_input = onnx.load(str(source), load_external_data=False).graph.input[0]
    static_batch = graph_input.type.tensor_type.shape.dim[0].dim_value  # 0: dynamic
    if static_batch > 0:  # a fixed-batch file is calibrated in pieces of its batch
        calibration = (p for batch in calibration for p in torch.split(batch, static_batch))
    reader = _Reader(graph_input.name, calibration)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".quantize-") as work:
        prepared = Path(work) / "prepared.onnx"
        # The recommended pre-processing: shape inference and ONNX Runtime's graph optimisation
        # (batch norms folded into convolutions), so that the quantiser sees the final graph.
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        quantized = Path(work) / "int8.onnx"
        q.quantize_static(
            str(prepared),
            str(quantized),
            reader,
            quant_format=q.QuantFormat.QDQ,
            per_channel=per_channel,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=methods[method],
        )
        if reader.count == 0:
            raise ValueError("no calibration batches: the calibration data is empty")
        model = onnx.load(str(quantized))
        del model.metadata_props[:]
        for key, value in {
            **metadata,
            "cnnzoo.quantization": _describe(method, reader.count),
        }.items():
            model.metadata_props.add(key=key, value=value)
        fd, tmp = tempfile.mkstemp(dir=output.parent, prefix=f".{output.name}.", suffix=".tmp")
        os.close(fd)
        try:
            onnx.save(model, tmp)
            os.replace(tmp, output)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return reader.count


def _describe(method: str, batches: int) -> str:
    return (
        f"onnxruntime quantize_static: QDQ, per-channel int8 weights, uint8 activations, "
        f"{method} calibration on {batches} batches"
    )
