"""Stopping on request: SIGINT/SIGTERM ask the loop to stop after the current step."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnzoo.train.trainer import Run

__all__ = ["stop_on_signals"]


@contextlib.contextmanager
def stop_on_signals(run: Run) -> Iterator[None]:
    """Set ``run.stop_requested`` on SIGINT/SIGTERM (a second one stops at once). The loop
    agrees on it with the other ranks at the next step boundary. Main thread only: Python
    delivers signals there."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if run.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
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
