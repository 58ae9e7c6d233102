"""Learning rate as an explicit function of the optimisation step.

No scheduler object holds state: resuming at step k gives exactly the rate step k had.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnnzoo.train.config import TrainConfig

__all__ = ["SCHEDULES", "Schedule", "lr_at"]

SCHEDULES = ("onecycle", "cosine", "step", "paper", "constant")


def lr_at(
    step: int,
    *,
    total_steps: int,
    base_lr: float,
    schedule: str,
    warmup_steps: int = 0,
    warmup_lr: float | None = None,
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
) -> float:
    """The learning rate for optimisation step ``step`` (0-based) of ``total_steps``.

    - ``onecycle``: linear ramp from base_lr/25 to base_lr over the warm-up (30% of the run if
      ``warmup_steps`` is 0), then cosine down to base_lr/1e4 (Smith & Topin 2017).
    - ``cosine``: optional linear warm-up, then half a cosine from base_lr to 0.
    - ``step``: base_lr divided by 10 at 50% and 75% of the run (or at ``milestones``).
    - ``paper``: He et al. 2015 sec. 4.2: constant ``warmup_lr`` for ``warmup_steps`` (0.01 for
      ResNet-110), then base_lr, times ``gamma`` at each milestone (32k and 48k iterations).
    - ``constant``: base_lr throughout (after an optional linear warm-up).
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; expected one of {', '.join(SCHEDULES)}")
    step = min(max(step, 0), total_steps - 1)

    if schedule == "onecycle":
        ramp = warmup_steps or max(1, int(0.3 * total_steps))
        start, floor = base_lr / 25, base_lr / 1e4
        if step < ramp:
            return start + (base_lr - start) * step / ramp
        progress = (step - ramp) / max(1, total_steps - ramp)
        return floor + (base_lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    if schedule == "paper":
        if step < warmup_steps:
            return warmup_lr if warmup_lr is not None else base_lr
        passed = sum(step >= m for m in milestones)
        return float(base_lr * gamma**passed)

    if step < warmup_steps:  # linear warm-up shared by cosine, step and constant
        return base_lr * (step + 1) / warmup_steps
    if schedule == "cosine":
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return base_lr * 0.5 * (1 + math.cos(math.pi * progress))
    if schedule == "step":
        marks = milestones or (int(0.5 * total_steps), int(0.75 * total_steps))
        return float(base_lr * gamma ** sum(step >= m for m in marks))
    return base_lr


@dataclass(frozen=True)
class Schedule:
    """A run's learning rate as a function of the step, built once from its config."""

    schedule: str
    base_lr: float
    total_steps: int
    warmup_steps: int = 0
    warmup_lr: float | None = None
    milestones: tuple[int, ...] = ()

    @classmethod
    def from_config(cls, config: TrainConfig, steps_per_epoch: int) -> Schedule:
        total = config.epochs * steps_per_epoch
        if config.max_steps is not None:
            total = min(total, config.max_steps)
        return cls(
            schedule=config.schedule,
            base_lr=config.lr,
            total_steps=total,
            warmup_steps=round(config.warmup_epochs * steps_per_epoch),
            warmup_lr=config.warmup_lr,
            milestones=tuple(config.milestones),
        )

    def __call__(self, step: int) -> float:
        return lr_at(
            step,
            total_steps=self.total_steps,
            base_lr=self.base_lr,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            warmup_lr=self.warmup_lr,
            milestones=self.milestones,
        )
