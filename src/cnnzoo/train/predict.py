"""Using a trained checkpoint: rebuild its model, evaluate it on a dataset, classify images."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo.data import DeviceLoader, Pipeline, build_pipeline, load_dataset
from cnnzoo.data.folder import decode_images
from cnnzoo.registry import create_model, model_info
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.checkpoint_validation import check_model_state
from cnnzoo.train.loaders import input_plan
from cnnzoo.train.metrics import per_class_accuracy

__all__ = [
    "EvalResult",
    "Prediction",
    "evaluate_checkpoint",
    "model_from_checkpoint",
    "predict_images",
]


@dataclass(frozen=True)
class EvalResult:
    accuracy: float
    loss: float
    classes: tuple[str, ...]
    confusion: Tensor  # rows: true class, columns: predicted
    per_class_accuracy: list[float]
    images: int


@dataclass(frozen=True)
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (class, probability), most likely first


def model_from_checkpoint(
    path: str | Path, *, use_ema: bool = True
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model (eval mode, CPU) and the checkpoint it came from.

    With ``use_ema`` and an EMA in the checkpoint, the averaged weights are loaded: those are the
    ones the run evaluated.
    """
    checkpoint = load_checkpoint(path)
    config = checkpoint["config"]
    state = checkpoint["model"]
    if use_ema and checkpoint.get("ema"):
        prefix = "module."
        state = {k[len(prefix) :]: v for k, v in checkpoint["ema"].items() if k.startswith(prefix)}
    # names and shapes checked on the meta device before any memory is allocated (#13)
    check_model_state(config["model"], config.get("model_kwargs", {}), state, str(path))
    model = create_model(config["model"], **config.get("model_kwargs", {}))
    model.load_state_dict(state)
    return model.eval(), checkpoint


def _eval_pipeline(checkpoint: dict[str, Any], data_size: tuple[int, int, int]) -> Pipeline:
    config, data = checkpoint["config"], checkpoint["data"]
    info = model_info(config["model"])
    channels = int(config["model_kwargs"].get("in_channels", info.input_size[0]))
    mean, std, model_input, policy = input_plan(  # as the trainer fed the run
        config["model"],
        channels,
        data["mean"],
        data["std"],
        weights=config.get("weights") or None,
        input_size=config.get("input_size") or None,
    )
    return build_pipeline(
        config.get("augment", "none"),
        mean=mean,
        std=std,
        train=False,
        data_size=data_size,
        model_input=model_input,
        min_size=info.min_size,
        fixed_size=info.fixed_size,
        policy=policy,
    )


def evaluate_checkpoint(
    path: str | Path,
    data: str | None = None,
    *,
    data_dir: str | None = None,
    batch_size: int = 500,
    device: str = "cpu",
) -> EvalResult:
    """Accuracy, loss, per-class accuracy and confusion matrix of a checkpoint on a test split
    (its own dataset unless ``data`` names another with the same classes)."""
    from cnnzoo.train.trainer import evaluate

    model, checkpoint = model_from_checkpoint(path)
    trained = checkpoint["data"]
    name = data or checkpoint["config"].get("data") or trained["name"]
    test = load_dataset(name, data_dir or checkpoint["config"].get("data_dir"), "test")
    if list(test.classes) != list(trained["classes"]):
        raise ValueError(
            f"{name} has classes {list(test.classes)[:10]}, the checkpoint was trained on "
            f"{list(trained['classes'])[:10]}"
        )
    loader = DeviceLoader(
        test.images,
        test.labels,
        batch_size=batch_size,
        shuffle=False,
        transform=_eval_pipeline(checkpoint, test.image_size),
        device=device,
        rank=0,
        world_size=1,
        pad_shards=False,
    )
    loss, accuracy, confusion = evaluate(model.to(device), loader, test.num_classes)
    return EvalResult(
        accuracy, loss, test.classes, confusion, per_class_accuracy(confusion), len(test)
    )


def predict_images(
    path: str | Path, images: Sequence[str | Path], *, top_k: int = 5
) -> list[Prediction]:
    """The ``top_k`` classes with probabilities for each image file, as the checkpoint's model
    sees them: decoded to the training images' channels and size, then its evaluation pipeline."""
    if top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    model, checkpoint = model_from_checkpoint(path)
    files = [Path(p) for p in images]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"no image file at {file}")
    c, h, w = (int(v) for v in checkpoint["data"]["image_size"])
    batch = decode_images(files, (h, w), workers=1, channels=c)
    with torch.no_grad():
        logits = model(_eval_pipeline(checkpoint, (c, h, w))(batch))
    probabilities = logits.float().softmax(dim=1)
    classes = checkpoint["data"]["classes"]
    k = min(top_k, len(classes))
    values, indices = probabilities.topk(k, dim=1)
    return [
        Prediction(
            str(file),
            [(classes[int(i)], float(v)) for v, i in zip(row_v, row_i, strict=True)],
        )
        for file, row_v, row_i in zip(files, values, indices, strict=True)
    ]
