"""`cnnzoo export`: model names and checkpoints to ONNX / TorchScript, and its errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.export import ExportError

pytest.importorskip("onnxruntime")


def _export(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["export", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_model_name_to_onnx_with_dynamic_batch(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    output = tmp_path / "r20.onnx"
    code, out, err = _export(capsys, "resnet20", "--output", str(output), "--dynamic-batch")
    assert code == 0, err
    wrote, checked = out.splitlines()
    assert wrote.startswith(f"wrote {output} (onnx, ")
    assert "resnet20 with freshly initialised weights; input 2x3x32x32, dynamic batch" in wrote
    assert checked.startswith("checked against PyTorch on batches of 2, 1: max abs error")
    assert output.stat().st_size > 1_000_000  # 270K float32 weights


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_checkpoint_to_torchscript_keeps_its_weights(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = create_model("lenet5_modern", num_classes=3, in_channels=2)
    checkpoint = tmp_path / "run.pt"
    config = {"model": "lenet5_modern", "model_kwargs": {"num_classes": 3, "in_channels": 2}}
    torch.save({"model": model.state_dict(), "config": config}, checkpoint)
    output = tmp_path / "lenet.ts"  # the suffix picks the format
    code, out, err = _export(capsys, str(checkpoint), "-o", str(output))
    assert code == 0, err
    assert f"from checkpoint {checkpoint}; input 1x2x32x32" in out
    loaded = torch.jit.load(str(output))
    x = torch.randn(1, 2, 32, 32)
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet20", "-o", "model.bin"], "cannot tell the format from 'model.bin'"),
        (["missing/run.pt", "-o", "m.onnx"], "no checkpoint file at missing/run.pt"),
        (["resnet2", "-o", "m.onnx"], "unknown model 'resnet2'"),
        (["resnet20", "-o", "m.onnx", "--format", "tflite"], "invalid choice: 'tflite'"),
        (["resnet20"], "the following arguments are required: --output"),
    ],
)
def test_bad_arguments_are_one_line_errors(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code, out, err = _export(capsys, *args)
    except SystemExit as exit_:  # argparse's own errors
        code, captured = int(str(exit_.code)), capsys.readouterr()
        out, err = captured.out, captured.err
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err


def test_bare_state_dict_is_not_a_checkpoint(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    bare = tmp_path / "weights.pth"
    torch.save(create_model("lenet5").state_dict(), bare)
    code, out, err = _export(capsys, str(bare), "-o", str(tmp_path / "l.onnx"))
    assert code == 2 and out == ""
    assert "is not a cnnzoo checkpoint: expected a dict with 'model' and 'config'" in err


def test_export_failure_exits_1_naming_the_layer(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def failing_export(*args: object, **kwargs: object) -> None:
        raise ExportError(
            "ONNX translation failed in layer features.3 (Odd) at operator aten.odd.default",
            layer="features.3 (Odd)",
        )

    monkeypatch.setattr("cnnzoo.cli.export.export_model", failing_export)
    code, out, err = _export(capsys, "lenet5", "-o", str(tmp_path / "l.onnx"))
    assert code == 1 and out == ""
    assert err.strip() == (
        "cnnzoo export: error: ONNX translation failed in layer features.3 (Odd) at operator "
        "aten.odd.default"
    )
