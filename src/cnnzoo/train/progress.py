"""Progress output: a live bar on a terminal, one plain line per epoch otherwise."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["EpochProgress"]


class EpochProgress:
    """Reports one epoch's steps. Live (redrawn with ``\\r``) only when the stream is a terminal
    and not ``quiet``; the closing line per epoch is printed either way."""

    def __init__(
        self,
        epoch: int,
        epochs: int,
        steps: int,
        *,
        quiet: bool,
        later_steps: int = 0,
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.start = time.perf_counter()
        self.images = 0
        self.done = 0  # steps drawn by this object (a resumed epoch starts mid-way)
        self.later_steps = later_steps  # steps of the run's later epochs, for the run's ETA
        self._last_draw = 0.0

    def update(self, step: int, images: int, loss: float, accuracy: float) -> None:
        self.images += images
        self.done += 1
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.1 and step < self.steps):
            return
        self._last_draw = now
        elapsed = now - self.start
        rate = self.images / elapsed if elapsed > 0 else 0.0
        eta = elapsed / self.done * (self.steps - step + self.later_steps)
        width = 24
        filled = int(width * step / max(1, self.steps))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\repoch {self.epoch}/{self.epochs} [{bar}] {step}/{self.steps} "
            f"loss {loss:.4f} acc {accuracy:.2%} {rate:,.0f} img/s ETA {_duration(eta)} "
        )
        self.stream.flush()

    def clear(self) -> None:
        """Erase the bar (the epoch's line is printed after the evaluation)."""
        if self.live:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def close(self, summary: str) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(summary + "\n")
        self.stream.flush()


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds + 0.5), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"
