"""Stopping on request: one request per Ctrl-C, even when torchrun passes it on a second time."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from cnnzoo.train import signals


@pytest.fixture(autouse=True)
def _python_sigint() -> Iterator[None]:
    # A suite started as a background job of a shell without job control inherits SIGINT
    # ignored; these tests are about Python's own handler, so they start from it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _run() -> Any:
    return SimpleNamespace(stop_requested=False, log=lambda message: None)


def test_a_signal_asks_to_stop_and_an_echo_of_it_does_not_stop_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [100.0]
    monkeypatch.setattr(signals.time, "monotonic", lambda: now[0])
    run = _run()
    with signals.stop_on_signals(run):
        os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C
        assert run.stop_requested
        now[0] += 0.01
        os.kill(os.getpid(), signal.SIGTERM)  # torchrun's agent passing it on
        now[0] += signals.REPEAT_SECONDS
        with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C: stop now
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handlers restored
