"""An exponential moving average of the weights, with a warm-up so that short runs are not
evaluated on what is nearly the initial model."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

__all__ = ["EMA", "ema_decay"]


def ema_decay(decay: float, updates: int) -> float:
    """The decay used for update number ``updates`` (0-based after the first copy):
    ``min(decay, (1 + t) / (10 + t))``, the warm-up timm's ModelEmaV2 and TensorFlow's
    ExponentialMovingAverage(num_updates=...) use. With a fixed 0.998, 135 steps leave 76% of the
    average on the initial weights; with the warm-up, the first steps average over few updates."""
    return min(decay, (1.0 + updates) / (10.0 + updates))


class EMA(AveragedModel):
    """``AveragedModel`` over parameters and buffers, decay warmed up by :func:`ema_decay`.

    Its state_dict (``module.``-prefixed weights and ``n_averaged``) is what checkpoints hold;
    ``n_averaged`` carries the warm-up position across a resume.
    """

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = True) -> None:
        super().__init__(model, multi_avg_fn=self._average, use_buffers=True)
        self.decay = decay
        self.warmup = warmup  # False: the fixed decay of checkpoints written before the warm-up

    @torch.no_grad()
    def _average(
        self,
        averaged: tuple[Tensor, ...] | list[Tensor],
        current: tuple[Tensor, ...] | list[Tensor],
        updates: Tensor | int,
    ) -> None:
        decay = ema_decay(self.decay, int(updates)) if self.warmup else self.decay
        if averaged[0].is_floating_point():
            torch._foreach_lerp_(list(averaged), list(current), 1.0 - decay)
        else:  # integer buffers (BatchNorm's num_batches_tracked) follow the model
            for a, c in zip(averaged, current, strict=True):
                a.copy_(c)
