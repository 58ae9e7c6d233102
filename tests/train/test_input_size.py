"""Training at a chosen input size (`--input`, ``TrainConfig.input_size``): checked against the
model, saved with the run, and used by everything that reads the run back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.train import fit, make_config
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.loaders import load_run_data


def _exit_code(args: list[str]) -> int:
    try:
        return main(args)
    except SystemExit as stop:  # argparse's own errors
        return int(stop.code or 0)


def test_round_trip_through_json() -> None:
    config = make_config("zfnet", input_size=(64, 48))
    assert config.input_size == (64, 48)
    saved = json.loads(json.dumps(config.to_dict()))
    assert saved["input_size"] == [64, 48]
    assert TrainConfig.from_dict(saved) == config
    # a run saved before the field existed trains at the size it always did
    del saved["input_size"]
    assert TrainConfig.from_dict(saved).input_size is None


def test_models_the_digits_would_be_resized_to_224_for_train_smaller(tmp_path: Path) -> None:
    def size(model: str, **overrides: Any) -> tuple[int, int] | None:
        return load_run_data(make_config(model, **overrides)).config.input_size

    assert size("densenet121") == (32, 32)  # the 8x8 digits
    assert size("zfnet", recipe="fast") == (64, 64)
    assert size("zfnet", input_size=(224, 224)) == (224, 224)
    assert size("resnet18") is None  # takes the 8x8 digits as they are
    # Images larger than the entry (photos) train at their own size, as for any model.
    for split in ("train", "test"):
        for label in ("a", "b"):
            for i in range(2):
                folder = tmp_path / split / label
                folder.mkdir(parents=True, exist_ok=True)
                pixels = np.full((40, 40, 3), 100 * (label == "b") + 10 * i, np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    assert size("densenet121", data=str(tmp_path)) is None


def test_a_square_size_may_be_one_number() -> None:
    assert make_config("resnet20", input_size=16).input_size == (16, 16)


@pytest.mark.parametrize(
    ("model", "size", "message"),
    [
        ("zfnet", (32, 32), "zfnet takes inputs of at least 47x47 (default 224x224); got 32x32"),
        ("nin_imagenet", (64, 38), "at least 39x39 (default 227x227); got 64x38"),
        ("lenet5", (28, 28), "lenet5 takes exactly 32x32 inputs (a fixed-size head); got 28x28"),
        ("resnet20", (0, 8), "input size must be positive, got 0x8"),
    ],
)
def test_sizes_the_model_cannot_take_are_refused(
    model: str, size: tuple[int, int], message: str
) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config(model, input_size=size)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("3x96x96", "give HxW or H; the model takes the data's channels"),
        ("big", "cannot parse 'big': expected HxW or H"),
        ("0", "bad size '0': expected positive HxW or H"),
        ("32", "zfnet takes inputs of at least 47x47"),
    ],
)
def test_cli_refuses_bad_sizes_in_one_line(
    value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["train", "zfnet", "--input", value]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


@pytest.fixture(scope="module")
def run_at_12(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # ResNet-20 takes the 8x8 digits as they are; --input 12 must bring them to 12x12.
    out = tmp_path_factory.mktemp("input") / "run"
    args = ["train", "resnet20", "--input", "12", "--epochs", "1", "--batch-size", "64"]
    assert main([*args, "--threads", "1", "--out", str(out), "-q"]) == 0
    return out


def test_the_run_records_and_reuses_its_size(run_at_12: Path) -> None:
    from cnnzoo.deploy import load_source
    from cnnzoo.train.predict import _eval_pipeline, evaluate_checkpoint

    config = json.loads((run_at_12 / "config.json").read_text())
    assert config["input_size"] == [12, 12]
    assert config["inference"]["input_size"] == [1, 12, 12]
    checkpoint = load_checkpoint(run_at_12)
    assert list(checkpoint["config"]["input_size"]) == [12, 12]
    # eval, predict and explain rebuild the pipeline from the checkpoint: at the trained size
    assert _eval_pipeline(checkpoint, (1, 8, 8)).output_size((1, 8, 8)) == (1, 12, 12)
    final = json.loads((run_at_12 / "final.json").read_text())
    assert evaluate_checkpoint(run_at_12).accuracy == pytest.approx(final["test_accuracy"])
    assert load_source(run_at_12).input_size == (1, 12, 12)  # what export traces


def test_the_size_cannot_change_on_resume(
    run_at_12: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _exit_code(["train", "--resume", str(run_at_12), "--input", "16", "--epochs", "2"]) == 2
    assert "--input cannot be given with --resume" in capsys.readouterr().err
    other = make_config("resnet20", input_size=(16, 16), epochs=2, batch_size=64, threads=1)
    with pytest.raises(ValueError, match=r"input_size cannot change when resuming"):
        fit(other, resume=run_at_12, quiet=True)
