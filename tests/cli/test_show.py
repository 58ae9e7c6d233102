"""`cnnzoo show`: formats, options, user models, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from cnnzoo.cli import main


def test_show_prints_the_text_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "resnet18", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "resnet18 at input 224x224x3, batch 1 (float32, eval mode)"
    assert [line.split()[0] for line in lines[4:16]] == [
        "resnet18",
        "conv1",
        "bn1",
        "relu",
        "maxpool",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
        "avgpool",
        "flatten",
        "fc",
    ]
    assert "Total MACs: 1,814,073,344 (1.814G)" in out


@pytest.mark.parametrize(
    ("fmt", "start"),
    [
        ("md", "**lenet5 at input 32x32x1, batch 1"),
        ("csv", "layer,type,kind,depth"),
        ("json", "{"),
        ("latex", "% Requires"),
        ("html", "<!DOCTYPE html>"),
    ],
)
def test_formats(fmt: str, start: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["show", "lenet5", "--format", fmt]) == 0
    assert capsys.readouterr().out.startswith(start)


def test_input_batch_columns_and_output_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "table.json"
    args = ["show", "resnet18", "--input", "64", "--batch-size", "2", "--format", "json"]
    assert main([*args, "--output", str(target)]) == 0
    assert capsys.readouterr().out == ""
    data = json.loads(target.read_text())
    assert data["input_size"] == [3, 64, 64] and data["batch_size"] == 2
    assert main(["show", "lenet5", "--input", "32x32", "--columns", "layer,output"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lenet5 at input 32x32x1, batch 1")  # HxW keeps the model's channels
    assert lines[2].split() == ["layer", "output"]


def test_a_user_model_by_module_and_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mynets.py").write_text(
        "from torch import nn\n"
        "class Wide(nn.Sequential):\n"
        "    def __init__(self):\n"
        "        super().__init__(nn.Conv2d(3, 16, 3, padding=1))\n"
        "instance = Wide()\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "mynets", raising=False)
    assert main(["show", "mynets:Wide", "--input", "3x8x8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("Wide at input 8x8x3, batch 1") and "448" in out  # 16*3*9 + 16
    assert main(["show", "mynets:instance", "--input", "8"]) == 0  # an nn.Module attribute
    assert "8x8x16" in capsys.readouterr().out
    assert main(["show", "mynets:Wide"]) == 2
    assert "give --input for Wide" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", "resnet19"], "unknown model 'resnet19'; did you mean"),
        (["show", "resnet18", "--input", "3xax4"], "cannot parse input size '3xax4'"),
        (["show", "alexnet", "--input", "40"], "alexnet needs an input of at least 63x63"),
        (["show", "vgg16", "--columns", "layer,bogus"], "unknown columns 'bogus'"),
        (["show", "lenet5", "--format", "json", "--columns", "layer"], "does not apply"),
        (["show", "no_such_module:Net", "--input", "8"], "cannot import 'no_such_module'"),
        (["show", "cnnzoo:NoSuchThing", "--input", "8"], "has no attribute 'NoSuchThing'"),
        (["show", "resnet18", "--depth", "-1"], "must be 0 or more"),
        (["show", "resnet18", "--batch-size", "0"], "must be a positive integer"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        status = main(args)
        raise SystemExit(status)
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], captured.err


def test_too_small_for_a_layer_of_a_user_model_names_the_layer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "smallnet.py").write_text(
        "from torch import nn\n"
        "Net = lambda: nn.Sequential(nn.Conv2d(3, 4, 5), nn.MaxPool2d(2), nn.Conv2d(4, 4, 5))\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delitem(sys.modules, "smallnet", raising=False)
    assert main(["show", "smallnet:Net", "--input", "3x9x9"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert "fails in layer '2' (Conv2d)" in captured.err  # 9 -> 5 -> 2: too small for a 5x5


def test_python_dash_m_show() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "cnnzoo", "show", "lenet5", "--depth", "0", "--format", "csv"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[1].startswith(
        ",LeNet5,module,0,0,32x32x1,10,"
    )  # "": the model


def test_width_narrows_the_text_table(capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 11: `--width 80` fits 80 columns, every row still one line."""
    assert main(["show", "inception_v3", "--width", "80"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert max(len(line) for line in lines) <= 80
    assert lines[2].split() == ["layer", "output", "params", "MACs", "RF"]


def test_output_file_is_written_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "table.md"
    target.write_text("old", encoding="utf-8")
    assert main(["show", "lenet5", "--format", "md", "-o", str(target)]) == 0
    assert target.read_text(encoding="utf-8").startswith("**lenet5 at input 32x32x1")
    assert [p.name for p in tmp_path.iterdir()] == ["table.md"]  # no temporary file left
