"""`cnnzoo explain` and `cnnzoo compare` as a user runs them: files written, lines printed,
one-line errors with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import load_dataset

pytest.importorskip("captum", reason="pip install 'cnnzoo[explain]'")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    args = ["train", "lenet5_modern", "--epochs", "1", "--batch-size", "64", "--out", str(out)]
    assert main([*args, "-q"]) == 0
    return out


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two test digits as PNG files, in two folders under the same file name."""
    test = load_dataset("digits", split="test")
    files = []
    for k in range(2):
        folder = tmp_path_factory.mktemp(f"digits{k}")
        pixels = test.images[k * 40, 0].numpy().astype(np.uint8)
        path = folder / "digit.png"
        Image.fromarray(pixels, mode="L").save(path)
        files.append(path)
    return files


def test_explain_a_run_writes_one_png_per_image(
    trained: Path, digits: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    argv = ["explain", str(trained), *map(str, digits), "--method", "gradcam", "--out"]
    assert main([*argv, str(tmp_path), "--target", "3"]) == 0
    captured = capsys.readouterr()
    assert "gradcam layer: " in captured.err and "last spatial stage" in captured.err
    lines = captured.out.strip().splitlines()
    assert len(lines) == 2
    assert all("predicted " in line and "target 3 (" in line for line in lines)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["digit-2_gradcam.png", "digit_gradcam.png"]  # the same stem twice
    with Image.open(tmp_path / "digit_gradcam.png") as image:
        assert image.format == "PNG" and min(image.size) >= 300


@pytest.mark.parametrize("method", ["saliency", "occlusion"])
def test_explain_a_registered_model(
    method: str, digits: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["explain", "resnet20", str(digits[0]), "--method", method, "--out", str(tmp_path)])
        == 0
    )
    assert (tmp_path / f"digit_{method}.png").is_file()
    assert "predicted " in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet2", "IMG", "--method", "gradcam"], "unknown model 'resnet2'"),
        (["resnet20", "missing.png", "--method", "gradcam"], "no image file at missing.png"),
        (["resnet20", "IMG", "--method", "saliency", "--layer", "layer2"], "--layer applies to"),
        (["resnet20", "IMG", "--method", "gradcam", "--target", "cat"], "unknown target class"),
        (["resnet20", "IMG", "--method", "gradcam", "--layer", "nope"], "no layer named 'nope'"),
        (["resnet20", "IMG", "--method", "occlusion", "--window", "0"], "--window must be"),
        (["RUN", "IMG", "--method", "gradcam", "--weights", "x"], "--weights applies to"),
    ],
)
def test_explain_errors_are_one_line_and_exit_2(
    args: list[str],
    message: str,
    digits: list[Path],
    trained: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    args = [{"IMG": str(digits[0]), "RUN": str(trained)}.get(a, a) for a in args]
    capsys.readouterr()
    assert main(["explain", *args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message.lower() in err.lower(), err


def test_compare_formats_file_and_plot(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "models.json"
    plot = tmp_path / "models.svg"
    argv = ["compare", "lenet5", "resnet20", "--batch-size", "4", "--repeats", "1"]
    assert main([*argv, "--format", "json", "-o", str(out), "--plot", str(plot)]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [r["model"] for r in rows] == ["lenet5", "resnet20"]
    assert rows[1]["params"] == 269_722 and rows[1]["latency_ms"] > 0
    assert b"<svg" in plot.read_bytes()
    capsys.readouterr()
    assert (
        main(["compare", "lenet5", "--no-latency", "--format", "md", "--optimizer", "adamw"]) == 0
    )
    table = capsys.readouterr().out
    assert table.startswith("| model |") and "adamw state" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet2"], "unknown model 'resnet2'"),
        (["lenet5", "--batch-size", "0"], "--batch-size must be at least 1"),
        (["lenet5", "--optimizer", "lion", "--no-latency"], "unknown optimizer 'lion'"),
        (["lenet5", "--no-latency", "--plot", "x.png"], "--plot needs the latency runs"),
        (["lenet5", "--plot", "x.jpg"], "must end in .png or .svg"),
        (["lenet5", "--input", "3x8x8", "--no-latency"], "lenet5"),
    ],
)
def test_compare_errors_are_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["compare", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err


def test_explain_without_captum_names_the_extra(
    digits: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "captum.attr", None)
    capsys.readouterr()
    assert main(["explain", "resnet20", str(digits[0]), "--method", "saliency"]) == 1
    assert "pip install 'cnnzoo[explain]'" in capsys.readouterr().err


def test_weights_reach_create_model_only_when_given(
    digits: list[Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cnnzoo.registry

    real = cnnzoo.registry.create_model
    calls: list[dict[str, object]] = []

    def recording(name: str, **kwargs: object) -> object:
        calls.append(kwargs)
        return real(name, **{k: v for k, v in kwargs.items() if k != "weights"})

    monkeypatch.setattr(cnnzoo.registry, "create_model", recording)
    image = str(digits[0])
    common = ["--method", "saliency", "--out", str(tmp_path)]
    assert main(["explain", "resnet20", image, *common]) == 0
    assert main(["explain", "resnet20", image, *common, "--weights", "w.pth"]) == 0
    assert main(["compare", "resnet20", "--weights", "w.pth", "--repeats", "1"]) == 0
    assert [c.get("weights") for c in calls] == [None, "w.pth", "w.pth"]
