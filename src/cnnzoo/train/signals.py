"""Stopping on request: SIGINT/SIGTERM ask the loop to stop after the current step."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnzoo.train.run import Run

__all__ = ["HOLD_ENV", "stop_asked", "stop_on_signals"]

# For tests of stopping (issue 12): "RANK:STEP:FILE" makes that rank, after that step, write its
# pid to FILE and wait (at most HOLD_SECONDS) until a signal asks it to stop, so a test can stop
# or kill one rank at a known step boundary instead of racing the epochs.
HOLD_ENV = "CNNZOO_TEST_HOLD"
HOLD_SECONDS = 120.0
# A terminal's Ctrl-C reaches torchrun's workers twice: from the terminal and passed on by
# torchrun's agent, milliseconds apart. A repeat that soon is the same request, not "stop now".
REPEAT_SECONDS = 1.0


@contextlib.contextmanager
def stop_on_signals(run: Run) -> Iterator[None]:
    """Set ``run.stop_requested`` on SIGINT/SIGTERM (a second one, :data:`REPEAT_SECONDS`
    later or more, stops at once). The loop agrees on it with the other ranks at the next step
    boundary. Main thread only: Python delivers signals there."""
    asked_at: float | None = None

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal asked_at
        now = time.monotonic()
        if asked_at is not None:
            if now - asked_at >= REPEAT_SECONDS:  # a second Ctrl-C: stop now
                raise KeyboardInterrupt
            return
        asked_at = now
        run.stop_requested = True
        run.log(f"\n{signal.Signals(signum).name}: finishing the current step, then saving")

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def stop_asked(run: Run) -> bool:
    """Whether this rank asks to stop after the step just taken: a signal came, or a test said
    so (``run.stop_after_steps``, or :data:`HOLD_ENV`)."""
    if run.stop_after_steps is not None and run.step >= run.stop_after_steps:
        return True
    hold = os.environ.get(HOLD_ENV)
    if hold and not run.stop_requested:
        rank, step, marker = hold.split(":", 2)
        if int(rank) == run.dist.rank and int(step) == run.step:
            _hold(run, Path(marker))
    return run.stop_requested


def _hold(run: Run, marker: Path) -> None:
    tmp = marker.with_name(f".{marker.name}.tmp")
    tmp.write_text(f"{os.getpid()}\n", encoding="utf-8")
    tmp.replace(marker)  # whole: the test reads the pid as soon as the file exists
    deadline = time.monotonic() + HOLD_SECONDS
    while not run.stop_requested and time.monotonic() < deadline:
        time.sleep(0.01)  # the signal handler runs between these sleeps
