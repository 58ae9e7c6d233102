"""The run's data: the datasets, their pipelines to the model's input, and the loaders over
data held whole on the device, with the checks before any is built."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch

from cnnzoo.data import DeviceLoader, ImageDataset, Pipeline, build_pipeline, load_dataset
from cnnzoo.registry import model_info
from cnnzoo.train.checkpoint import data_info, inference_info
from cnnzoo.train.config import TRAINING_SIZES, TrainConfig
from cnnzoo.train.distributed import DistInfo, check_global_batch

__all__ = [
    "RunData",
    "build_loaders",
    "check_splits",
    "input_plan",
    "load_run_data",
    "resolve_device",
]


def resolve_device(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}: expected cpu or cuda[:N]")
    return name


def check_splits(train: ImageDataset, test: ImageDataset) -> None:
    """A classifier needs images in both splits and at least two classes to tell apart."""
    for split in (train, test):
        if len(split) == 0:
            raise ValueError(f"{split.name}: the {split.split} split has no images")
    present = sorted(train.classes[i] for i in set(train.labels.tolist()))
    if len(present) < 2:
        raise ValueError(
            f"{train.name}: the training images are all of one class ({present[0]!r} of "
            f"{len(train.classes)} classes); a classifier needs at least 2 classes with images"
        )


@dataclass(frozen=True)
class RunData:
    """What :func:`load_run_data` gives a run: its config completed from the data, both splits,
    the training and evaluation pipelines, and the facts checkpoints record."""

    config: TrainConfig  # data named, model_kwargs with the data's classes and channels
    train: ImageDataset
    test: ImageDataset
    train_pipeline: Pipeline
    test_pipeline: Pipeline
    data_info: dict[str, Any]
    inference: dict[str, Any]


def input_plan(
    model: str,
    channels: int,
    mean: Sequence[float],
    std: Sequence[float],
    *,
    weights: str | None,
    input_size: Sequence[int] | None,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, int, int], Literal["auto", "model"]]:
    """How a run's images reach ``model``: (mean, std, model input C,H,W, adaptation policy).
    The data's statistics and the model's default input, adapted only where it must be
    ("auto"); fine-tuned (``weights``), the weights' mean/std at their input size; trained at
    its own size (``input_size``, ``--input``), exactly that. Training decides with it, and
    evaluating or predicting with a run's checkpoint decides the same way."""
    info = model_info(model)
    model_input = (channels, info.input_size[1], info.input_size[2])
    policy: Literal["auto", "model"] = "auto"
    if weights is not None:
        from cnnzoo.pretrained import finetune_input

        known = finetune_input(model, weights, channels)
        if known is not None:
            mean, std, model_input = known
            policy = "model"
    if input_size is not None:
        height, width = (int(v) for v in input_size)
        model_input, policy = (channels, height, width), "model"
    return tuple(mean), tuple(std), model_input, policy


def load_run_data(config: TrainConfig) -> RunData:
    """Both splits of ``config``'s data (checked), and the pipelines that bring them to the
    model. The model is built for the data's channels (no information is thrown away or
    repeated); the size is adapted to the model when it cannot take the data's
    (cnnzoo.data.transforms). Fine-tuning uses the weights' mean/std at their input size; a
    model in ``TRAINING_SIZES`` trains images no larger than its entry at that size."""
    info = model_info(config.model)
    data = config.data or "digits"
    train_data = load_dataset(data, config.data_dir, "train", seed=config.seed)
    test_data = load_dataset(data, config.data_dir, "test", seed=config.seed)
    check_splits(train_data, test_data)
    channels = train_data.image_size[0]
    model_kwargs = {**config.model_kwargs, "num_classes": train_data.num_classes}
    model_kwargs["in_channels"] = channels
    config = dataclasses.replace(config, data=data, model_kwargs=model_kwargs)
    small = TRAINING_SIZES.get(config.model)
    data_fits = small is not None and all(
        d <= s for d, s in zip(train_data.image_size[1:], small, strict=True)
    )
    if config.input_size is None and config.weights is None and data_fits:
        # Small images (the digits, CIFAR): the model's training size, not its 224.
        config = dataclasses.replace(config, input_size=small)
    mean, std, model_input, policy = input_plan(
        config.model,
        channels,
        train_data.mean,
        train_data.std,
        weights=config.weights,
        input_size=config.input_size,
    )

    def pipeline(train: bool) -> Pipeline:
        return build_pipeline(
            config.augment,
            mean=mean,
            std=std,
            train=train,
            data_size=train_data.image_size,
            model_input=model_input,
            min_size=info.min_size,
            fixed_size=info.fixed_size,
            policy=policy,
        )

    test_pipeline = pipeline(False)
    return RunData(
        config=config,
        train=train_data,
        test=test_data,
        train_pipeline=pipeline(True),
        test_pipeline=test_pipeline,
        data_info=data_info(train_data, test_data),
        inference=inference_info(train_data, test_pipeline, mean, std),
    )


def build_loaders(
    config: TrainConfig, data: RunData, device: torch.device, dist: DistInfo
) -> tuple[DeviceLoader, DeviceLoader]:
    """Training batches shuffled per epoch from ``config.seed`` (each rank takes every
    ``world_size``-th sample of the shared permutation); evaluation batches in order, sharded.

    ``config.batch_size`` is the global batch, split evenly over the ranks: a step of N ranks
    averages the gradient of the same samples as one process's step, so a recipe trains the
    same run (the same steps, rate and batches) on any number of processes."""
    world = dist.world_size
    check_global_batch(config.batch_size, world)
    train_data, test_data = data.train, data.test
    train_loader = DeviceLoader(
        train_data.images,
        train_data.labels,
        batch_size=config.batch_size // world,
        shuffle=True,
        seed=config.seed,
        drop_last=len(train_data) >= 4 * config.batch_size,
        transform=data.train_pipeline,
        device=device,
        rank=dist.rank,
        world_size=world,
    )
    test_loader = DeviceLoader(
        test_data.images,
        test_data.labels,
        batch_size=config.eval_batch_size,
        shuffle=False,
        transform=data.test_pipeline,
        device=device,
        rank=dist.rank,
        world_size=world,
        pad_shards=False,
    )
    return train_loader, test_loader
