"""The train / eval / predict commands as a user runs them: real processes, exit codes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo import create_model
from cnnzoo.cli import main
from cnnzoo.data import load_dataset
from cnnzoo.train.signals import HOLD_ENV


def _cnnzoo(*args: str, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cnnzoo", *args],
        capture_output=True,
        text=True,
        timeout=600,
        **kwargs,
    )


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    code = main(
        ["train", "lenet5_modern", "--epochs", "3", "--batch-size", "32", "--out", str(out), "-q"]
    )
    assert code == 0
    return out


def test_eval_reports_accuracy_per_class_and_confusion(
    trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert main(["eval", str(trained)]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith("test accuracy ") and "(355 images)" in first
    accuracy = float(first.split()[2].rstrip("%")) / 100
    import json

    final = json.loads((trained / "final.json").read_text())
    assert accuracy == pytest.approx(final["test_accuracy"], abs=5e-5)
    assert "per-class accuracy:" in out and "confusion matrix" in out


def test_predict_top_k_on_image_files(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    test = load_dataset("digits", split="test")
    files = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(test.images[i, 0].numpy()).save(path)
        files.append(str(path))
    capsys.readouterr()
    assert main(["predict", str(trained / "best.pt"), *files, "--top-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    for line, path in zip(lines, files, strict=True):
        name, top = line.split(": ", 1)
        assert name == path
        entries = [e.rsplit(" ", 1) for e in top.split(", ")]
        assert len(entries) == 3
        probabilities = [float(p.rstrip("%")) for _, p in entries]
        assert probabilities == sorted(probabilities, reverse=True)
    # The model gets most of these right after three epochs: predictions follow the labels.
    predicted = [line.split(": ")[1].split()[0] for line in lines]
    truth = [test.classes[int(test.labels[i])] for i in range(3)]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 2


def test_hostile_checkpoint_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "payload-ran"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Payload(), "config": {}}, path)
    for command in (["eval", str(path)], ["predict", str(path), str(path)]):
        result = _cnnzoo(*command)
        assert result.returncode == 2
        assert "not a cnnzoo checkpoint" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    assert not marker.exists()


def test_foreign_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bare.pt"
    torch.save(create_model("lenet_book").state_dict(), path)
    result = _cnnzoo("eval", str(path))
    assert result.returncode == 2 and "cnnzoo.load_weights" in result.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "lenet5", "--epochs", "-1"], "--epochs must be positive"),
        (["train", "lenet5", "--recipe", "nope"], "invalid choice: 'nope'"),
        (["train", "lenet", "--epochs", "1"], "unknown model 'lenet'; did you mean lenet5"),
        (["train", "lenet5", "--lr", "-0.1"], "learning rate must be positive"),
        (["train", "lenet5", "--data", "no/such/folder"], "unknown dataset"),
        (["train"], "give a MODEL"),
        (["train", "lenet5", "--nproc-per-node", "0"], "--nproc-per-node must be positive"),
        (["train", "lenet5", "--nproc-per-node", "3"], "batch size 64 does not split over 3"),
        (["predict", "nowhere.pt", "x.png"], "no checkpoint at nowhere.pt"),
    ],
)
def test_bad_arguments_exit_2_in_one_line(args: list[str], message: str) -> None:
    result = _cnnzoo(*args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr


def test_lenet5_three_epochs_reach_90_percent(tmp_path: Path) -> None:
    """Issue 12: the default recipe's EMA (decay 0.995) warms up, so a short run reports a
    model that has learnt (without the warm-up: 56%, while the raw weights were at 94%)."""
    out = tmp_path / "run"
    assert main(["train", "lenet5", "--epochs", "3", "--out", str(out), "-q"]) == 0
    import json

    final = json.loads((out / "final.json").read_text())
    assert final["evaluated"] == "ema" and final["test_accuracy"] >= 0.90


@pytest.mark.slow
def test_the_demo_reaches_issue_15s_accuracy(tmp_path: Path) -> None:
    """Issue 15 item 1: `cnnzoo train lenet5` (the README demo, default recipe) keeps a mean of
    at least 97% over seeds 0, 1, 2 with none below 96.5%; the recipe measured 97.75 / 97.75 /
    96.90 in fp32 and 97.75 / 98.03 / 97.18 in bf16 with channels_last (see config.py)."""
    import json

    accuracies = []
    for seed in (0, 1, 2):
        out = tmp_path / f"seed{seed}"
        assert main(["train", "lenet5", "--seed", str(seed), "--out", str(out), "-q"]) == 0
        accuracies.append(json.loads((out / "final.json").read_text())["test_accuracy"])
    assert sum(accuracies) / 3 >= 0.97 and min(accuracies) >= 0.965, accuracies


def test_run_directory_mistakes_exit_2_in_one_line(
    trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    cases = [
        (["train", "lenet5", "--out", str(trained)], "already holds a run"),
        (["train", "lenet5", "--out", str(a_file)], "is a file; expected a directory"),
        (["train", "--resume", str(trained), "--lr", "0.1"], "--lr cannot be given with --resume"),
        (["train", "lenet5", "--resume", str(trained)], "MODEL cannot be given with --resume"),
        (["train", "--resume", str(trained / "best.pt")], "would rewrite the run's history"),
        (["train", "--resume", str(trained)], "nothing to resume"),
        (["train", "--resume", str(trained), "--epochs", "2"], "--epochs must be at least 3"),
    ]
    for args, message in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err
        assert message in err, (args, err)
        assert len(err.strip().splitlines()) == 1, err


def test_sigint_saves_checkpoint_and_exits_130(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "cnnzoo", "train", "lenet5_modern", "--quiet"]
    process = subprocess.Popen(
        [*command, "--epochs", "200", "--batch-size", "16", "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 120
    while not (out / "last.pt").exists():  # wait until training is under way
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "cnnzoo train --resume" in stderr and "Traceback" not in stderr
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    create_model("lenet5_modern").load_state_dict(checkpoint["model"])
    assert checkpoint["step"] > 0


TORCHRUN = Path(sys.executable).with_name("torchrun")
needs_torchrun = pytest.mark.skipif(not TORCHRUN.exists(), reason="torchrun not installed")
# the book LeNet, 45 steps an epoch (global batch 32, 16 a rank): quick, and long enough to stop
# mid-run
DDP_SMALL = ["lenet_book", "--epochs", "3", "--batch-size", "32", "--lr", "0.01", "-q"]


def _torchrun(*args: str) -> list[str]:
    """Plain torchrun: it exits 1 for a job whose workers exit 130 (stopped)."""
    return [str(TORCHRUN), "--standalone", "--nproc_per_node=2", "-m", "cnnzoo", *args]


def _signal_rank_at_step(
    command: list[str], out: Path, rank: int, step: int, signum: int, *extra: str
) -> tuple[int, str]:
    """Start a 2-process run with ``command`` whose ``rank`` holds after ``step``
    (signals.HOLD_ENV), send it ``signum`` there; return the launcher's exit code and output.
    The timeout is the test: no rank may hang."""
    marker = out.parent / f"{out.name}-held"
    launcher = subprocess.Popen(
        [*command, "train", *DDP_SMALL, "--out", str(out), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", HOLD_ENV: f"{rank}:{step}:{marker}"},
    )
    deadline = time.monotonic() + 300
    while not marker.exists():  # the rank writes it once it holds at the step
        assert launcher.poll() is None, launcher.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "training did not reach the step"
        time.sleep(0.02)
    os.kill(int(marker.read_text()), signum)
    output, _ = launcher.communicate(timeout=120)
    return launcher.returncode, output


@pytest.mark.slow
@needs_torchrun
def test_torchrun_two_process_gloo(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    result = subprocess.run(
        # the recipe as it is: its batch is the global batch, so 2 ranks take its 66 steps
        _torchrun("train", "lenet5", "--epochs", "3", "--out", str(out), "-q"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("epoch ")]
    assert len(lines) == 3, "only rank 0 logs"
    checkpoint = torch.load(out / "last.pt", weights_only=True)
    batch = checkpoint["config"]["batch_size"]
    assert checkpoint["step"] == 3 * (1442 // batch)  # each rank takes half of each batch
    model = create_model("lenet5")
    model.load_state_dict(checkpoint["model"])  # no DDP "module." prefix
    import json

    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    final = json.loads((out / "final.json").read_text())
    assert final["test_accuracy"] >= 0.90  # issue 12: 3 epochs, the EMA warmed up
    assert np.isfinite(final["test_loss"])


@pytest.mark.slow
@needs_torchrun
def test_torchrun_stops_together_and_resumes_bit_identically(tmp_path: Path) -> None:
    """Issue 12: SIGTERM to one rank (not the writer) mid-epoch 2 stops both after the same
    step; rank 0 alone writes and reports; the resumed run ends with the same weights."""
    whole = subprocess.run(
        _torchrun("train", *DDP_SMALL, "--out", str(tmp_path / "whole")),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert whole.returncode == 0, whole.stderr[-3000:]
    out = tmp_path / "split"
    cnnzoo = [sys.executable, "-m", "cnnzoo"]  # its launcher: the job exits 130
    code, output = _signal_rank_at_step(cnnzoo, out, 1, 60, signal.SIGTERM, "--nproc-per-node", "2")
    assert code == 130 and "Traceback" not in output, output[-3000:]
    assert output.count("stopped; ") == 1, "rank 0 alone writes and reports"
    stopped = torch.load(out / "last.pt", weights_only=True)
    assert stopped["step"] == 60 and len(stopped["history"]) == 1  # mid-epoch 2, as asked
    resumed = subprocess.run(
        _torchrun("train", "--resume", str(out)), capture_output=True, text=True, timeout=600
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    a = torch.load(out / "last.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "whole" / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@needs_torchrun
def test_torchrun_a_dead_rank_ends_the_others(tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, output = _signal_rank_at_step(_torchrun(), out, 1, 60, signal.SIGKILL)
    assert code == 1
    assert "rank 0: another rank of the job stopped answering" in output, output[-3000:]
    assert f"cnnzoo train --resume {out}" in output
    assert len(torch.load(out / "last.pt", weights_only=True)["history"]) == 1
