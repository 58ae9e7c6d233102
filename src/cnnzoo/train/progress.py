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
        self, epoch: int, epochs: int, steps: int, *, quiet: bool, stream: TextIO | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.live = not quiet and self.stream.isatty()
        self.epoch, self.epochs, self.steps = epoch, epochs, steps
        self.start = time.perf_counter()
        self.images = 0
        self._last_draw = 0.0

    def update(self, step: int, images: int, loss: float, accuracy: float) -> None:
        self.images += images
        now = time.perf_counter()
        if not self.live or (now - self._last_draw < 0.1 and step < self.steps):
            return
        self._last_draw = now
        elapsed = now - self.start
        rate = self.images / elapsed if elapsed > 0 else 0.0
        eta = elapsed / step * (self.steps - step) if step else 0.0
        width = 24
        filled = int(width * step / max(1, self.steps))
        bar = "#" * filled + "." * (width - filled)
        self.stream.write(
            f"\repoch {self.epoch}/{self.epochs} [{bar}] {step}/{self.steps} "
            f"loss {loss:.4f} acc {accuracy:.2%} {rate:,.0f} img/s ETA {eta:4.0f}s "
        )
        self.stream.flush()

    def close(self, summary: str) -> None:
        if self.live:
            self.stream.write("\r\033[K")
        self.stream.write(summary + "\n")
        self.stream.flush()
