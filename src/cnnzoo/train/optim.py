"""The optimiser a config names, with the parameter groups every run uses."""

from __future__ import annotations

import torch
from torch import nn

from cnnzoo.train.config import TrainConfig

__all__ = ["build_optimizer"]


def build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD (+Nesterov) or AdamW as ``config`` says. No weight decay on biases and norm
    parameters (1-D tensors): decaying a BN scale only fights the normalisation."""
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,  # Nesterov needs momentum
        )
    return torch.optim.AdamW(groups, lr=config.lr)
