"""ONNX and TorchScript export: parity with PyTorch, dynamic batch, failures that say where."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import (
    ExportError,
    create_model,
    export_model,
    list_models,
    model_info,
)

onnxruntime = pytest.importorskip("onnxruntime")

ALL = list_models()


def _onnx_session(path: Path) -> object:
    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def test_onnx_dynamic_batch_runs_in_onnxruntime_at_any_batch(tmp_path: Path) -> None:
    model = create_model("resnet20", num_classes=7).train()
    report = export_model(model, tmp_path / "r20.onnx", dynamic_batch=True)
    assert model.training  # the caller's mode is restored
    assert report.input_shape == (2, 3, 32, 32) and report.checked_batches == (2, 1)
    assert report.check is not None and report.check.rel_error < 1e-4

    session = _onnx_session(report.path)
    (onnx_input,) = session.get_inputs()  # type: ignore[attr-defined]
    assert onnx_input.name == "input"
    assert isinstance(onnx_input.shape[0], str) and onnx_input.shape[1:] == [3, 32, 32]
    x = torch.randn(5, 3, 32, 32)
    (logits,) = session.run(None, {"input": x.numpy()})  # type: ignore[attr-defined]
    model.eval()
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(logits), model(x), rtol=1e-4, atol=1e-5)


def test_onnx_static_batch_is_fixed_and_divisor_override_survives(tmp_path: Path) -> None:
    # LeNet-5's subsampling sums 2x2 blocks with avg_pool2d(divisor_override=1), which the ONNX
    # exporter drops (s2 off by 50%): export_model rewrites it, and its check would catch it.
    report = export_model(create_model("lenet5"), tmp_path / "lenet5.onnx")
    assert report.input_shape == (1, 1, 32, 32) and report.checked_batches == (1,)
    (onnx_input,) = _onnx_session(report.path).get_inputs()  # type: ignore[attr-defined]
    assert onnx_input.shape == [1, 1, 32, 32]


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_torchscript_round_trip(tmp_path: Path) -> None:
    model = create_model("mnist_cnn", num_classes=4)
    report = export_model(model, tmp_path / "mnist.pt", format="torchscript", dynamic_batch=True)
    assert report.check is not None and report.check.max_abs_error < 1e-5
    loaded = torch.jit.load(str(report.path))
    x = torch.randn(6, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), rtol=1e-5, atol=1e-6)


def test_other_input_size(tmp_path: Path) -> None:
    report = export_model(create_model("resnet18"), tmp_path / "r18.onnx", input_size=(3, 64, 96))
    assert report.input_shape == (1, 3, 64, 96)


class _Gate(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x if x.sum() > 0 else -x  # data-dependent control flow: no static graph


@torch.library.custom_op("cnnzoo_test::mystery", mutates_args=())
def _mystery(x: Tensor) -> Tensor:
    return x * 2


@_mystery.register_fake
def _(x: Tensor) -> Tensor:
    return torch.empty_like(x)


class _Mystery(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return _mystery(x)  # type: ignore[no-any-return]


class _TraceRefuser(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        if torch.jit.is_tracing():
            raise RuntimeError("this layer cannot be traced")
        return x


def _net(layer: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.Sequential(nn.ReLU(), layer))


def test_torch_export_failure_names_the_layer(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"torch\.export failed in layer 1\.1 \(_Gate\)") as info:
        export_model(_net(_Gate()), tmp_path / "gate.onnx", input_size=(3, 8, 8))
    assert info.value.layer == "1.1 (_Gate)"


def test_onnx_translation_failure_names_the_layer_and_operator(tmp_path: Path) -> None:
    with pytest.raises(
        ExportError,
        match=r"in layer 1\.1 \(_Mystery\) at operator cnnzoo_test\.mystery\.default: "
        r"DispatchError: No ONNX function found",
    ) as info:
        export_model(_net(_Mystery()), tmp_path / "mystery.onnx", input_size=(3, 8, 8))
    assert info.value.operator == "cnnzoo_test.mystery.default"


class _CeilSum(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.avg_pool2d(x, 2, ceil_mode=True, divisor_override=1)


def test_divisor_override_that_cannot_be_rewritten_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"no avg_pool2d divisor_override \(layer 1\.1"):
        export_model(_net(_CeilSum()), tmp_path / "ceil.onnx", input_size=(3, 9, 9))


def test_torchscript_failure_names_the_layer(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match=r"torch\.jit\.trace failed in layer 1\.1"):
        export_model(
            _net(_TraceRefuser()), tmp_path / "x.pt", format="torchscript", input_size=(3, 8, 8)
        )


def test_export_argument_errors(tmp_path: Path) -> None:
    model = create_model("lenet5")
    with pytest.raises(ValueError, match="unknown export format 'tflite'"):
        export_model(model, tmp_path / "m.tflite", format="tflite")
    with pytest.raises(FileNotFoundError, match="no directory"):
        export_model(model, tmp_path / "missing" / "m.onnx")
    with pytest.raises(ValueError, match="give input_size"):
        export_model(nn.Conv2d(3, 3, 1), tmp_path / "conv.onnx")


# resnet1202 is resnet110's blocks 11 times over; its 12,000-node graph alone takes the ONNX
# exporter over ten minutes on two cores, so it runs only on request.
EXPORT_ALL = os.environ.get("CNNZOO_EXPORT_ALL") == "1"
PARITY = [
    pytest.param(
        n,
        marks=pytest.mark.skipif(
            not EXPORT_ALL, reason="very slow to export; CNNZOO_EXPORT_ALL=1 runs it"
        ),
    )
    if n in ("resnet1202", "preact_resnet1001")  # 1,001 layers: as slow (canon)
    else n
    for n in ALL
]


@pytest.mark.slow
@pytest.mark.parametrize("name", PARITY)
def test_onnx_parity_at_the_default_input(name: str, tmp_path: Path) -> None:
    """Every registered model exports at its default input, loads in onnxruntime with a dynamic
    batch and matches PyTorch on batches of 2 and 1 (export_model's own check)."""
    report = export_model(create_model(name), tmp_path / f"{name}.onnx", dynamic_batch=True)
    assert report.input_shape == (2, *model_info(name).input_size)
    assert report.check is not None and report.check.rel_error < 1e-4
