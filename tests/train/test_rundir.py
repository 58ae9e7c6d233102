"""A run directory belongs to one run; resume continues or extends it and refuses anything else."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.train import fit, make_config
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.rundir import EXPORTS, RUN_FILES, locked

# The smallest real run: the book LeNet on the embedded digits, 11 steps an epoch.
SMALL = make_config("lenet_book", epochs=1, batch_size=128, lr=0.05)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One finished 1-epoch run, made under umask 027 (files must come out 0640)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    previous = os.umask(0o027)
    try:
        fit(SMALL, out, quiet=True)
    finally:
        os.umask(previous)
    yield out


def test_files_are_created_with_the_users_umask(finished: Path) -> None:
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in finished.iterdir() if p.is_file()}
    for name in RUN_FILES:
        assert modes[name] == 0o640, (name, oct(modes[name]))


def test_a_second_run_into_a_run_directory_is_refused(finished: Path) -> None:
    before = (finished / "last.pt").read_bytes()
    with pytest.raises(ValueError, match=r"already holds a run .*--resume .*--overwrite"):
        fit(SMALL, finished, quiet=True)
    assert (finished / "last.pt").read_bytes() == before


def test_overwrite_replaces_the_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    fit(SMALL, out, quiet=True)
    (out / "notes.txt").write_text("mine")  # not a run file: left alone
    fit(dataclasses.replace(SMALL, seed=1), out, overwrite=True, quiet=True)
    assert json.loads((out / "config.json").read_text())["seed"] == 1
    assert len(list(csv.DictReader((out / "metrics.csv").open()))) == 1
    assert (out / "notes.txt").read_text() == "mine"


def test_out_naming_a_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ValueError, match="is a file; expected a directory"):
        fit(SMALL, path, quiet=True)


def test_a_locked_directory_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with locked(out), pytest.raises(ValueError, match=r"in use by another run \(pid \d+\)"):
        fit(SMALL, out, quiet=True)
    assert not (out / "config.json").exists()


def test_resuming_best_pt_is_refused(finished: Path) -> None:
    with pytest.raises(ValueError, match="would rewrite the run's history"):
        fit(None, resume=finished / "best.pt", quiet=True)


def test_a_finished_run_is_not_resumed_silently(finished: Path) -> None:
    with pytest.raises(ValueError, match=r"finished its 1 epochs; nothing to resume.*--epochs"):
        fit(None, resume=finished, quiet=True)


def test_settings_other_than_epochs_cannot_change_on_resume(finished: Path) -> None:
    with pytest.raises(ValueError, match=r"lr cannot change when resuming .*lr=0\.05"):
        fit(dataclasses.replace(SMALL, lr=0.1, epochs=2), resume=finished, quiet=True)


def test_resume_extends_a_run_and_rebuilds_the_schedule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "run"
    fit(SMALL, out, quiet=True)
    capsys.readouterr()
    final = fit(None, resume=out / "last.pt", epochs=3, quiet=True)
    err = capsys.readouterr().err
    assert "extending the run from 1 to 3 epochs" in err
    assert "now spans 33 steps (was 11)" in err  # 1442 // 128 = 11 steps an epoch
    assert final["epochs"] == 3 and final["steps"] == 33
    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    config = json.loads((out / "config.json").read_text())
    assert config["epochs"] == 3
    assert [e["epochs"] for e in config["extensions"]] == [[1, 3]]
    # the rate of step 11 is that of a 33-step one-cycle, not the end of the 11-step one
    from cnnzoo.train.schedule import lr_at

    assert float(rows[1]["lr"]) == pytest.approx(
        lr_at(21, total_steps=33, base_lr=0.05, schedule="onecycle"), rel=1e-5
    )
    best = load_checkpoint(out / "best.pt")
    assert len(best["history"]) == final["best_epoch"]
    with pytest.raises(ValueError, match="has trained 3 epochs; --epochs must be at least 3"):
        fit(None, resume=out, epochs=2, quiet=True)


def _image_folder(root: Path, classes: tuple[str, ...], per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_data_paths_are_stored_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _image_folder(tmp_path / "shapes", ("a", "b"))
    monkeypatch.chdir(tmp_path)
    config = make_config("lenet_book", data="shapes/", epochs=1, batch_size=4)
    fit(config, "run", quiet=True)
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["data"] == str((tmp_path / "shapes").resolve())
    checkpoint = load_checkpoint(tmp_path / "run")
    assert checkpoint["config"]["data"] == saved["data"]
    assert checkpoint["inference"]["classes"] == ["a", "b"]
    assert checkpoint["inference"]["input_size"] == [1, 28, 28]  # the book LeNet's input


def test_one_class_is_refused(tmp_path: Path) -> None:
    _image_folder(tmp_path / "one", ("only",))
    config = make_config("lenet_book", data=str(tmp_path / "one"), epochs=1)
    with pytest.raises(ValueError, match=r"all of one class .*at least 2 classes"):
        fit(config, tmp_path / "run", quiet=True)


def test_inference_metadata_is_recorded(finished: Path) -> None:
    """What export needs, in config.json and every checkpoint (deploy reads it)."""
    document = json.loads((finished / "config.json").read_text())
    info = document["inference"]
    assert info == load_checkpoint(finished)["inference"]
    assert info["input_size"] == [1, 28, 28] and info["data_size"] == [1, 8, 8]
    assert info["classes"] == [str(d) for d in range(10)]
    assert info["resize"] == {"mode": "resize", "size": [28, 28], "interpolation": "bilinear"}
    assert len(info["mean"]) == len(info["std"]) == 1
    assert torch.load(finished / "last.pt", weights_only=True)["format"] == "cnnzoo-checkpoint-2"


def test_a_format_1_checkpoint_resumes(tmp_path: Path) -> None:
    """Checkpoints written before format 2 (no ``inference``, EMA without warm-up) still resume;
    their EMA keeps the fixed decay it was trained with."""
    from cnnzoo.train import trainer

    out = tmp_path / "run"
    fit(dataclasses.replace(SMALL, ema=0.9), out, quiet=True)
    old = torch.load(out / "last.pt", weights_only=True)
    old["format"] = "cnnzoo-checkpoint-1"
    del old["inference"], old["ema_warmup"]
    old["scaler"] = None
    torch.save(old, out / "last.pt")
    run = trainer.prepare(
        trainer.TrainConfig.from_dict(old["config"]), out, quiet=True, checkpoint=old
    )
    assert run.ema is not None and run.ema.warmup is False
    final = fit(None, resume=out, epochs=2, quiet=True)
    assert final["epochs"] == 2
    assert load_checkpoint(out)["format"] == "cnnzoo-checkpoint-2"
    assert load_checkpoint(out)["ema_warmup"] is False  # the run goes on as it began


def test_exports_in_the_run_go_when_it_trains_on_or_is_replaced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cnnzoo export RUN` writes RUN/model.onnx: an export of weights the run no longer has
    must not stay beside it."""
    out = tmp_path / "run"
    fit(SMALL, out, quiet=True)
    for name in EXPORTS:
        (out / name).write_text("exported from epoch 1")
    (out / "mine.onnx").write_text("not an export of this run")
    capsys.readouterr()
    fit(None, resume=out, epochs=2, quiet=True)
    assert "removed model.onnx: exported before the run trained on" in capsys.readouterr().err
    assert not any((out / name).exists() for name in EXPORTS)
    (out / "model.onnx").write_text("exported from epoch 2")
    fit(SMALL, out, overwrite=True, quiet=True)
    assert not (out / "model.onnx").exists() and (out / "mine.onnx").exists()


@pytest.mark.parametrize(
    "damage",
    [
        lambda rng: rng.update(torch=torch.zeros(3, dtype=torch.uint8)),
        lambda rng: rng.update(python=(3, (1, 2), None)),
        lambda rng: rng.update(numpy=torch.zeros(5, dtype=torch.int64)),
        lambda rng: rng.pop("numpy_pos"),
    ],
    ids=["torch", "python", "numpy", "missing"],
)
def test_a_damaged_random_state_is_refused_in_one_line(
    tmp_path: Path, damage: Callable[[dict[str, Any]], Any]
) -> None:
    out = tmp_path / "run"
    fit(SMALL, out, quiet=True)
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    damage(checkpoint["rng"])
    torch.save(checkpoint, out / "last.pt")
    with pytest.raises(ValueError, match=r"random state is damaged .*cannot resume exactly"):
        fit(None, resume=out, epochs=2, quiet=True)
