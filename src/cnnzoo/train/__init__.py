"""Training: the config and recipes, the loop, checkpoints, and using a trained model.

>>> from cnnzoo.train import make_config, fit
>>> final = fit(make_config("lenet5", recipe="lenet5-mnist"), "runs/lenet5")  # doctest: +SKIP
"""

from cnnzoo.train.config import RECIPES, TrainConfig, make_config
from cnnzoo.train.predict import (
    EvalResult,
    Prediction,
    evaluate_checkpoint,
    model_from_checkpoint,
    predict_images,
)
from cnnzoo.train.runs import TrainingRun, load_run
from cnnzoo.train.schedule import SCHEDULES, lr_at
from cnnzoo.train.trainer import Interrupted, NonFiniteLossError, evaluate, fit

__all__ = [
    "RECIPES",
    "SCHEDULES",
    "EvalResult",
    "Interrupted",
    "NonFiniteLossError",
    "Prediction",
    "TrainConfig",
    "TrainingRun",
    "evaluate",
    "evaluate_checkpoint",
    "fit",
    "load_run",
    "lr_at",
    "make_config",
    "model_from_checkpoint",
    "predict_images",
]
