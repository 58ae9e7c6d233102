"""Training hyperparameters: one frozen dataclass, named recipes, and explicit overrides.

The config is printed at the start of a run, saved in ``config.json`` and in every checkpoint, and
restored on resume. Precedence: the dataclass defaults < the recipe < explicit flags.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnnzoo.precision import PRECISIONS  # the one table of precision names (issue 18)

__all__ = ["DEFAULT_RECIPES", "PRECISIONS", "RECIPES", "TrainConfig", "make_config"]

OPTIMIZERS = ("sgd", "adamw")


@dataclass(frozen=True)
class TrainConfig:
    model: str
    data: str | None = None  # None: the embedded default dataset
    data_dir: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    max_steps: int | None = None  # stop after this many optimiser steps (the paper's iterations)
    batch_size: int = 128
    eval_batch_size: int = 1000
    lr: float = 0.05
    optimizer: str = "sgd"
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    schedule: str = "onecycle"
    warmup_epochs: float = 0.0
    warmup_lr: float | None = None  # "paper" schedule: constant rate during warm-up
    milestones: tuple[int, ...] = ()  # optimiser steps where "step"/"paper" divide the rate
    label_smoothing: float = 0.0
    augment: str = "none"
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    ema: float | None = None
    clip_grad: float | None = None
    aux_weight: float = 0.3  # GoogLeNet / Inception auxiliary losses (Szegedy et al. 2014, sec. 5)
    seed: int = 0
    threads: int | None = None
    device: str = "cpu"
    recipe: str = "fast"

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0, f"epochs must be positive, got {self.epochs}"),
            (self.batch_size > 0, f"batch size must be positive, got {self.batch_size}"),
            (self.lr > 0, f"learning rate must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight decay must be >= 0, got {self.weight_decay}"),
            (0 <= self.momentum < 1, f"momentum must be in [0, 1), got {self.momentum}"),
            (0 <= self.label_smoothing < 1, "label smoothing must be in [0, 1)"),
            (self.warmup_epochs >= 0, "warm-up epochs must be >= 0"),
            (self.optimizer in OPTIMIZERS, f"optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}"),
            (self.ema is None or 0 < self.ema < 1, "EMA decay must be in (0, 1)"),
            (self.clip_grad is None or self.clip_grad > 0, "gradient clip must be positive"),
            (self.max_steps is None or self.max_steps > 0, "max steps must be positive"),
            (self.threads is None or self.threads > 0, "threads must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["milestones"] = list(self.milestones)
        return out

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in values.items() if k in known}
        kwargs["milestones"] = tuple(kwargs.get("milestones", ()))
        return cls(**kwargs)


# Recipes: named bundles of defaults. A recipe may depend on the model (ResNet-110's warm-up).
RECIPES: dict[str, dict[str, Any]] = {
    # A quick, robust default: SGD + Nesterov with a one-cycle schedule.
    "fast": {},
    # The paper's LeNet-5 on small digit sets. Chosen by measurement on the embedded digits
    # (3 seeds each): AdamW + one-cycle beat SGD there, an EMA of the weights adds about half a
    # point, and shift augmentation hurts (the UCI digits are centred and size-normalised).
    "lenet5-mnist": {
        "epochs": 30,
        "batch_size": 32,
        "optimizer": "adamw",
        "lr": 0.003,
        "weight_decay": 1e-4,
        "schedule": "onecycle",
        "ema": 0.998,
    },
    # He et al. 2015 sec. 4.2: SGD 0.1, momentum 0.9, wd 1e-4, batch 128, lr /10 at 32k and 48k
    # iterations, stop at 64k; 4-pixel pad + 32 crop + flip.
    "he2015-cifar": {
        "data": "cifar10",
        "batch_size": 128,
        "lr": 0.1,
        "momentum": 0.9,
        "nesterov": False,
        "weight_decay": 1e-4,
        "schedule": "paper",
        "milestones": (32_000, 48_000),
        "max_steps": 64_000,
        "epochs": 182,  # 64k iterations of 391 batches (45k/5k split in the paper: ~182 epochs)
        "augment": "resnet_cifar",
    },
}


# The recipe a model trains with when none is named.
DEFAULT_RECIPES = {"lenet5": "lenet5-mnist"}


def make_config(model: str, recipe: str | None = None, **overrides: Any) -> TrainConfig:
    """The config for ``model``: defaults, then the recipe (``DEFAULT_RECIPES[model]`` or
    ``fast`` when none is named), then the overrides that are not None."""
    recipe = recipe or DEFAULT_RECIPES.get(model, "fast")
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; expected one of {', '.join(RECIPES)}")
    values: dict[str, Any] = {"model": model, "recipe": recipe, **RECIPES[recipe]}
    if recipe == "he2015-cifar" and model == "resnet110":
        # sec. 4.2: "we use 0.01 to warm up the training until the training error is below 80%
        # (about 400 iterations), and then go back to 0.1".
        values.update(warmup_lr=0.01, warmup_epochs=400 / 391)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainConfig(**values)
