"""Crash consistency: the writer is stopped at every write boundary (as kill -9 would stop it:
os._exit in a forked child, no cleanup runs) and the run directory must stay consistent, then
resume to exactly the run left alone. No sleeps: the boundaries are counted, not timed."""

from __future__ import annotations

import csv
import errno
import json
import multiprocessing
import os
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from cnnzoo.train import checkpoint as checkpoint_module
from cnnzoo.train import fit, make_config
from cnnzoo.train.checkpoint import load_checkpoint

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs fork")

# Two epochs of 11 steps, the second better than the first (best.pt moves); the EMA and
# augmentation make exact resume non-trivial. One thread: a child forked from a process whose
# OpenMP pool has threads hangs in its first parallel op (libgomp is not fork-safe), which
# pytest run without `make unit`'s OMP_NUM_THREADS=1 would meet.
CONFIG = make_config(
    "lenet_book",
    epochs=2,
    batch_size=128,
    optimizer="adamw",
    lr=0.003,
    ema=0.9,
    augment="resnet_cifar",
    threads=1,
)


def _boundaries(out: Path) -> list[str]:
    labels: list[str] = []
    checkpoint_module.FAULT_HOOK = labels.append
    try:
        fit(CONFIG, out, quiet=True)
    finally:
        checkpoint_module.FAULT_HOOK = None
    return labels


@pytest.fixture(scope="module")
def whole(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    out = tmp_path_factory.mktemp("whole") / "run"
    return out, _boundaries(out)


def _crash_at(out: Path, k: int) -> int:
    """Run CONFIG into ``out`` in a forked child that dies at the k-th write boundary."""

    def child() -> None:
        calls = iter(range(10**6))

        def die(label: str) -> None:
            if next(calls) == k:
                os._exit(137)

        checkpoint_module.FAULT_HOOK = die
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 (the child exits without closing)
        fit(CONFIG, out, quiet=True)
        os._exit(0)

    process = multiprocessing.get_context("fork").Process(target=child)
    process.start()
    process.join(300)
    return int(process.exitcode or 0)


def _rows(out: Path) -> list[dict[str, str]]:
    path = out / "metrics.csv"
    return list(csv.DictReader(path.open())) if path.exists() else []


def _check_at_rest(out: Path) -> None:
    """What holds right after a crash: every file there is whole, metrics.csv never has a row
    last.pt does not, nor a row twice."""
    rows = _rows(out)
    epochs = [int(r["epoch"]) for r in rows]
    assert epochs == list(range(1, len(epochs) + 1))
    if (out / "last.pt").exists():
        last = load_checkpoint(out)
        assert len(rows) <= len(last["history"])
        if (out / "best.pt").exists():
            assert len(load_checkpoint(out / "best.pt")["history"]) <= len(last["history"])
    else:
        assert not rows and not (out / "best.pt").exists()
    if (out / "final.json").exists():
        json.loads((out / "final.json").read_text())


def _check_consistent(out: Path, whole: Path) -> None:
    """After the resume: one row per epoch, best.pt = metrics' best epoch, final.json agrees,
    no temporary files, and the weights of the run left alone, bit for bit."""
    rows = _rows(out)
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    accuracies = [float(r["test_accuracy"]) for r in rows]
    best_epoch = accuracies.index(max(accuracies)) + 1
    assert len(load_checkpoint(out / "best.pt")["history"]) == best_epoch
    final = json.loads((out / "final.json").read_text())
    assert final["best_epoch"] == best_epoch and final["epochs"] == 2
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    a, b = load_checkpoint(out)["model"], load_checkpoint(whole)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    timing = ("images_per_second", "seconds")
    for mine, theirs in zip(rows, _rows(whole), strict=True):
        assert {k: v for k, v in mine.items() if k not in timing} == {
            k: v for k, v in theirs.items() if k not in timing
        }


def _crash_and_recover(out: Path, k: int, whole_dir: Path) -> None:
    assert _crash_at(out, k) == 137
    _check_at_rest(out)
    if (out / "final.json").exists():
        with pytest.raises(ValueError, match="nothing to resume"):
            fit(None, resume=out, quiet=True)
    elif (out / "last.pt").exists():
        fit(None, resume=out, quiet=True)
    elif (out / "config.json").exists():  # a run that never finished an epoch: start over
        with pytest.raises(ValueError, match="already holds a run"):
            fit(CONFIG, out, quiet=True)
        fit(CONFIG, out, overwrite=True, quiet=True)
    else:  # not a run yet (a temporary file, removed by the new run)
        fit(CONFIG, out, quiet=True)
    _check_consistent(out, whole_dir)


def test_write_boundaries_are_in_commit_order(whole: tuple[Path, list[str]]) -> None:
    # config.json, then per epoch last.pt (the commit), best.pt (when it improved), metrics.csv,
    # then the artifacts with final.json last: each written, then renamed
    labels = whole[1]
    per_epoch = ["last.pt", "best.pt", "metrics.csv"]
    expected = ["config.json", *per_epoch, *per_epoch, "confusion.csv", "report.html", "final.json"]
    assert labels == [f"{name}: {what}" for name in expected for what in ("written", "renamed")]


def test_crash_between_last_and_best(whole: tuple[Path, list[str]], tmp_path: Path) -> None:
    """The issue's case: killed after epoch 2's last.pt and before its best.pt."""
    whole_dir, labels = whole
    k = [i for i, label in enumerate(labels) if label == "best.pt: written"][1]
    _crash_and_recover(tmp_path / "run", k, whole_dir)


@pytest.mark.slow
def test_every_write_boundary(whole: tuple[Path, list[str]], tmp_path: Path) -> None:
    whole_dir, labels = whole
    for k in range(len(labels)):
        _crash_and_recover(tmp_path / f"crash{k}", k, whole_dir)


def test_disk_full_while_writing_last_pt(whole: tuple[Path, list[str]], tmp_path: Path) -> None:
    """An OSError in the middle of a commit (ENOSPC) leaves the previous state, no temp file."""
    whole_dir, labels = whole
    second = [i for i, label in enumerate(labels) if label == "last.pt: written"][1]
    calls = iter(range(10**6))

    def disk_full(label: str) -> Any:
        if next(calls) == second:
            raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "run"
    checkpoint_module.FAULT_HOOK = disk_full
    try:
        with pytest.raises(OSError, match="No space left"):
            fit(CONFIG, out, quiet=True)
    finally:
        checkpoint_module.FAULT_HOOK = None
    assert not list(out.glob(".*.tmp"))
    assert len(load_checkpoint(out)["history"]) == 1 and len(_rows(out)) == 1
    fit(None, resume=out, quiet=True)
    _check_consistent(out, whole_dir)
