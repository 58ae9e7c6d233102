"""The one eval-mode context manager: switch a model to eval mode and restore each module's own
mode afterwards, not just the top one (``model.train(was_training)`` would also wake a frozen
part that was deliberately left in eval mode, e.g. FrozenBatchNorm2d or a frozen backbone)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TypeVar

from torch import nn

__all__ = ["eval_mode"]

ModuleT = TypeVar("ModuleT", bound=nn.Module)


@contextmanager
def eval_mode(model: ModuleT) -> Iterator[ModuleT]:
    """``with eval_mode(model): ...`` runs in eval mode; every module's mode is restored on exit."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes:
            module.training = mode
