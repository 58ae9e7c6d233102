"""One training run's state (:class:`Run`, built by ``trainer.prepare``) and how a run ends early.

Its own module so that the modules a run passes through (checkpoint, rundir, artifacts, signals)
can name it without importing the trainer.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnzoo.data import DeviceLoader, ImageDataset
from cnnzoo.train import distributed
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.ema import EMA
from cnnzoo.train.schedule import Schedule

__all__ = ["Interrupted", "NonFiniteLossError", "Run"]


class Interrupted(Exception):
    """Training stopped early on request (SIGINT/SIGTERM); ``last.pt`` holds the position."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted; resume with: cnnzoo train --resume {checkpoint.parent}")
        self.checkpoint = checkpoint


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Run:
    """Everything one training run holds; built by :func:`prepare`."""

    config: TrainConfig
    out_dir: Path
    device: torch.device
    dist: distributed.DistInfo
    model: nn.Module  # the bare model (checkpoints save this one's state_dict)
    train_model: nn.Module  # what the step calls: model, compiled and/or DDP-wrapped
    ema: EMA | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler  # enabled for fp16 only; a pass-through otherwise
    schedule: Schedule
    train_data: ImageDataset
    test_data: ImageDataset
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    data_info: dict[str, Any]
    inference: dict[str, Any]  # what export and deployment need (checkpoint.py documents it)
    quiet: bool = False
    step: int = 0  # optimiser steps taken
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)  # sums of the epoch in progress
    stop_requested: bool = False
    stop_after_steps: int | None = None  # for tests: behave as if interrupted after this step

    @property
    def total_steps(self) -> int:
        return self.schedule.total_steps

    @property
    def eval_model(self) -> nn.Module:
        """The model the run hands over (the EMA's when there is one): the one it reports."""
        return self.ema.module if self.ema is not None else self.model

    def log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)
