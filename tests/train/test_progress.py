"""The live progress bar: images per second and the run's ETA, on a terminal only."""

from __future__ import annotations

import io
import re

import pytest

from cnnzoo.train import progress as progress_module
from cnnzoo.train.progress import EpochProgress


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_shows_rate_and_eta_of_the_whole_run(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 1.0, 2.0])  # start, then one step a second
    monkeypatch.setattr(progress_module.time, "perf_counter", lambda: next(clock))
    stream = Terminal()
    bar = EpochProgress(1, 3, 10, quiet=False, later_steps=20, stream=stream)
    bar.update(1, 32, 0.5, 0.25)
    bar.update(2, 32, 0.5, 0.25)
    last = stream.getvalue().split("\r")[-1]
    assert "epoch 1/3" in last and "2/10" in last
    assert "32 img/s" in last  # 64 images in 2 s
    assert re.search(r"ETA 0:28\b", last)  # 8 steps left in the epoch + 20 later, 1 s each


def test_no_bar_when_not_a_terminal() -> None:
    stream = io.StringIO()
    bar = EpochProgress(1, 1, 10, quiet=False, stream=stream)
    bar.update(1, 32, 0.5, 0.25)
    bar.close("epoch 1/1 done")
    assert stream.getvalue() == "epoch 1/1 done\n"
