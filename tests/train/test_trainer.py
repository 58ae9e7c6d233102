"""End-to-end training on the embedded digits: files, exact resume, interruption, NaN stop."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnzoo import create_model
from cnnzoo.train import Interrupted, NonFiniteLossError, fit, make_config
from cnnzoo.train.checkpoint import load_checkpoint

# Small and quick: the modern LeNet-5 on the 1,442 embedded training digits, 32 per batch.
FAST = {"epochs": 2, "batch_size": 32, "lr": 0.05}


def test_run_directory_contents(tmp_path: Path) -> None:
    out = tmp_path / "run"
    final = fit(make_config("lenet5_modern", **FAST), out, quiet=True)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "metrics.csv", "last.pt", "best.pt", "final.json"} <= names
    assert {"curves.png", "confusion.png", "confusion.csv"} <= names
    assert not any(n.endswith(".tmp") for n in names), "atomic writes leave no temp files"

    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "lenet5_modern" and config["data"] == "digits"
    assert config["model_kwargs"] == {"num_classes": 10, "in_channels": 1}
    assert set(config["versions"]) == {"python", "torch", "cnnzoo"}

    rows = list(csv.DictReader((out / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert list(rows[0]) == [
        "epoch",
        "step",
        "lr",
        "train_loss",
        "train_accuracy",
        "test_loss",
        "test_accuracy",
        "raw_test_loss",
        "raw_test_accuracy",
        "images_per_second",
        "seconds",
    ]
    assert int(rows[1]["step"]) == 2 * (1442 // 32)

    saved = json.loads((out / "final.json").read_text())
    assert saved["test_accuracy"] == final["test_accuracy"]
    assert saved["per_class_accuracy"].keys() == {str(d) for d in range(10)}
    for key in ("test_accuracy", "test_loss", "epochs", "wall_seconds", "images_per_second"):
        assert key in saved
    assert saved["epochs"] == 2 and saved["best_epoch"] in (1, 2)
    assert 0.5 < saved["test_accuracy"] <= 1.0  # two epochs already learn the digits
    assert float(rows[-1]["test_accuracy"]) == pytest.approx(saved["test_accuracy"])

    confusion = list(csv.reader((out / "confusion.csv").open()))
    assert len(confusion) == 11 and sum(int(v) for row in confusion[1:] for v in row[1:]) == 355


def test_checkpoints_are_plain_and_load_into_a_bare_model(tmp_path: Path) -> None:
    fit(make_config("lenet5_modern", **FAST), tmp_path, quiet=True)
    checkpoint = torch.load(tmp_path / "last.pt", weights_only=True)
    assert checkpoint["config"]["model"] == "lenet5_modern"
    assert not any(k.startswith("module.") for k in checkpoint["model"])
    model = create_model("lenet5_modern")
    model.load_state_dict(checkpoint["model"])
    assert load_checkpoint(tmp_path)["step"] == checkpoint["step"]


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path / "last.pt", weights_only=True)["model"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("stop_at", [7, 45])  # mid-epoch 1, and the last step of epoch 1
def test_resume_after_interruption_is_bit_identical(tmp_path: Path, stop_at: int) -> None:
    # Dropout (global RNG), EMA, weight decay and augmentation all have to be restored exactly.
    config = make_config(
        "lenet5_modern",
        epochs=2,
        batch_size=32,
        lr=0.05,
        ema=0.9,
        augment="resnet_cifar",
        model_kwargs={},
    )
    whole = fit(config, tmp_path / "whole", quiet=True)
    with pytest.raises(Interrupted) as stopped:
        fit(config, tmp_path / "split", quiet=True, stop_after_steps=stop_at)
    assert stopped.value.checkpoint == tmp_path / "split" / "last.pt"
    assert load_checkpoint(tmp_path / "split")["step"] == stop_at
    resumed = fit(config, resume=tmp_path / "split", quiet=True)
    a, b = _weights(tmp_path / "whole"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["test_accuracy"] == whole["test_accuracy"]
    rows_whole = list(csv.DictReader((tmp_path / "whole" / "metrics.csv").open()))
    rows_split = list(csv.DictReader((tmp_path / "split" / "metrics.csv").open()))
    for row_a, row_b in zip(rows_whole, rows_split, strict=True):
        assert row_a["train_loss"] == row_b["train_loss"]
        assert row_a["test_accuracy"] == row_b["test_accuracy"]


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cnnzoo.train import trainer

    original = trainer._loss

    def explodes_in_epoch_2(run: Any, output: Any, target: torch.Tensor) -> Any:
        loss, logits = original(run, output, target)
        return (loss * math.nan if run.step >= 50 else loss), logits

    monkeypatch.setattr(trainer, "_loss", explodes_in_epoch_2)
    config = make_config("lenet_book", epochs=2, batch_size=32, lr=0.01)
    with pytest.raises(NonFiniteLossError, match=r"the loss became nan at step 51.*--lr"):
        fit(config, tmp_path, quiet=True)
    checkpoint = load_checkpoint(tmp_path)
    assert checkpoint["step"] == 1442 // 32 and len(checkpoint["history"]) == 1  # epoch 1
    weights = checkpoint["model"].values()
    assert all(torch.isfinite(v).all() for v in weights if v.is_floating_point())
    assert not list(tmp_path.glob(".*.tmp"))


def test_max_steps_stops_mid_epoch(tmp_path: Path) -> None:
    final = fit(
        make_config("lenet_book", epochs=5, batch_size=32, max_steps=10), tmp_path, quiet=True
    )
    assert final["steps"] == 10 and final["epochs"] == 1
    assert not math.isnan(final["test_loss"])


def test_googlenet_aux_losses_are_weighted() -> None:
    from cnnzoo.train.trainer import _loss

    class FakeRun:
        class config:
            label_smoothing = 0.0
            aux_weight = 0.3

        model = create_model("googlenet", num_classes=4, init_weights=False)

    model = FakeRun.model.train()
    x, y = torch.randn(2, 3, 64, 64), torch.tensor([1, 3])
    output = model(x)
    loss, logits = _loss(FakeRun, output, y)  # type: ignore[arg-type]
    ce = torch.nn.functional.cross_entropy
    expected = ce(output.logits, y) + 0.3 * (ce(output.aux_logits1, y) + ce(output.aux_logits2, y))
    torch.testing.assert_close(loss, expected)
    assert logits is output.logits


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_is_decided_on_the_device_and_kept_on_resume(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    native: bool,
) -> None:
    from cnnzoo import precision

    # The device's answer is the test's to choose, so both decisions run on any machine.
    monkeypatch.setattr(precision, "native_precision", lambda dtype, device="cpu": native)
    chosen = "bf16" if native else "fp32"
    config = make_config("lenet_book", epochs=1, batch_size=32, precision="auto")
    with pytest.raises(Interrupted):
        fit(config, tmp_path, stop_after_steps=3)
    said = capsys.readouterr().err
    assert f"precision auto: {chosen} (this cpu: " in said
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["precision"] == chosen
    assert load_checkpoint(tmp_path)["config"]["precision"] == chosen

    # Resumed where the device answers otherwise: the run keeps what it chose ("auto" asked
    # again means the run's choice); a different explicit precision is refused.
    monkeypatch.setattr(precision, "native_precision", lambda dtype, device="cpu": not native)
    other = "fp32" if native else "bf16"
    with pytest.raises(ValueError, match=f"precision cannot change .*precision='{chosen}'"):
        fit(make_config("lenet_book", epochs=1, batch_size=32, precision=other), resume=tmp_path)
    final = fit(config, resume=tmp_path, quiet=True)
    assert final["steps"] == 1442 // 32
    assert load_checkpoint(tmp_path)["config"]["precision"] == chosen


def _rank_with_its_own_bf16(rank: int, port: int, out: str) -> None:
    import os

    from cnnzoo import precision
    from cnnzoo.train import distributed
    from cnnzoo.train.trainer import prepare

    os.environ.update(
        RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)
    )
    # Machines of two kinds: only rank 1's computes bf16 natively.
    precision.native_precision = lambda dtype, device="cpu": rank == 1  # type: ignore[assignment]
    try:
        config = make_config("lenet_book", epochs=1, batch_size=32, precision="auto", threads=1)
        run = prepare(config, Path(out), quiet=True, checkpoint=None)
        Path(out, f"{rank}.txt").write_text(run.config.precision)
    finally:
        distributed.teardown()


@pytest.mark.slow
def test_auto_precision_is_rank_0s_on_every_rank(tmp_path: Path) -> None:
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as probe:  # a free port for the group's store
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # fork: CPU and gloo only, and the children need not import torch again
    mp.start_processes(
        _rank_with_its_own_bf16, args=(port, str(tmp_path)), nprocs=2, start_method="fork"
    )
    # Rank 0 has no native bf16, so neither rank trains in it, rank 1's own answer regardless.
    assert [(tmp_path / f"{r}.txt").read_text() for r in range(2)] == ["fp32", "fp32"]
