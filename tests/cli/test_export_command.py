"""`cnnzoo export`: model names and checkpoints to ONNX / TorchScript, and its errors."""

from __future__ import annotations

import sys
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
    data = {  # what the trainer records of its data (checkpoints must carry it, #13)
        "name": "shapes",
        "classes": ["a", "b", "c"],
        "mean": [0.5, 0.5],
        "std": [0.25, 0.25],
        "image_size": [2, 32, 32],
        "train_images": 30,
        "test_images": 9,
    }
    torch.save({"model": model.state_dict(), "config": config, "data": data}, checkpoint)
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
        (["missing/run.pt", "-o", "m.onnx"], "no run, checkpoint or ONNX file at missing/run.pt"),
        (["resnet2", "-o", "m.onnx"], "unknown model 'resnet2'"),
        (["resnet20", "-o", "m.onnx", "--format", "tflite"], "invalid choice: 'tflite'"),
        (["resnet20", "--calibrate", "digits"], "--calibrate is for --int8"),
        (["resnet20", "--int8", "-o", "m.pt"], "--int8 writes ONNX"),
        (["resnet20", "--int8", "-o", "m.onnx"], "int8 calibration needs real images"),
        (["resnet20", "--int8", "--calibration-batches", "0"], "must be at least 1"),
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


def _fake_run(folder: Path) -> Path:
    """A run directory as the trainer writes it (weights untrained): LeNet-5 on the digits."""
    from cnnzoo.data import load_dataset

    train = load_dataset("digits", None, "train")
    folder.mkdir()
    config = {"model": "lenet5", "data": "digits", "model_kwargs": {}, "augment": "none"}
    data = {
        "name": "digits",
        "classes": list(train.classes),
        "mean": list(train.mean),
        "std": list(train.std),
        "image_size": list(train.image_size),
    }
    torch.manual_seed(0)
    model = create_model("lenet5")
    torch.save({"model": model.state_dict(), "config": config, "data": data}, folder / "last.pt")
    return folder


def test_run_exports_to_its_folder_at_the_trained_size(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = _fake_run(tmp_path / "run")
    code, out, err = _export(capsys, str(run))
    assert code == 0, err
    wrote, embedded, checked = out.splitlines()
    assert wrote.startswith(f"wrote {run / 'model.onnx'} (onnx, ")
    assert wrote.endswith(f"from checkpoint {run}; input 1x1x32x32")  # digits 8x8 -> 32x32
    assert embedded == (
        "embedded: 10 class names, preprocessing Resize(size=(32, 32)) -> "
        "Normalize(mean=(0.3052,), std=(0.376,))"
    )
    assert checked.startswith("checked against PyTorch")


def test_run_to_int8_prints_both_accuracies(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    run = _fake_run(tmp_path / "run")
    code, out, err = _export(capsys, str(run), "--int8", "--calibration-batches", "2")
    assert code == 0, err
    wrote, error, accuracy = out.splitlines()
    assert wrote.startswith(f"wrote {run / 'model-int8.onnx'} (onnx int8, ")
    assert wrote.endswith("calibrated on 2 batches of 32 (minmax)")
    assert error.startswith("int8 against fp32 outputs on a calibration batch: relative ")
    assert accuracy.startswith("accuracy on the held-out split (355 images): fp32 ")
    assert ", int8 " in accuracy and accuracy.endswith(" points)")


def test_model_to_int8_calibrated_on_a_folder(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from PIL import Image

    generator = torch.Generator().manual_seed(0)
    for label in ("a", "b"):
        (tmp_path / "pics" / label).mkdir(parents=True)
        for index in range(3):
            pixels = torch.randint(0, 256, (36, 40, 3), generator=generator, dtype=torch.uint8)
            Image.fromarray(pixels.numpy()).save(tmp_path / "pics" / label / f"{index}.png")
    output = tmp_path / "r20-int8.onnx"
    code, out, err = _export(
        capsys, "resnet20", "--int8", "--calibrate", str(tmp_path / "pics"), "-o", str(output)
    )
    assert code == 0, err
    assert "input 3x32x32" in out and out.endswith(
        "no accuracy: the model is untrained (export a run to measure it)\n"
    )
    assert output.is_file()


@pytest.mark.parametrize("module", ["onnxscript", "onnxruntime"])
def test_missing_deploy_extra_is_one_line_exit_1(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # import now raises ImportError
    args = ["lenet5", "-o", str(tmp_path / "l.onnx")]
    if module == "onnxruntime":
        args += ["--int8", "--calibrate", "digits"]
    code, out, err = _export(capsys, *args)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1
    assert "is not installed" in err and "pip install 'cnnzoo[deploy]'" in err
