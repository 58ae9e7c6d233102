"""The run's loaders over data held whole on the device, and the checks before any is built."""

from __future__ import annotations

import torch

from cnnzoo.data import DeviceLoader, ImageDataset, Pipeline
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.distributed import DistInfo

__all__ = ["build_loaders", "check_splits", "resolve_device"]


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


def build_loaders(
    config: TrainConfig,
    train_data: ImageDataset,
    test_data: ImageDataset,
    pipelines: tuple[Pipeline, Pipeline],
    device: torch.device,
    dist: DistInfo,
) -> tuple[DeviceLoader, DeviceLoader]:
    """Training batches shuffled per epoch from ``config.seed`` (each rank takes every
    ``world_size``-th sample of the shared permutation); evaluation batches in order, sharded."""
    world = dist.world_size
    train_loader = DeviceLoader(
        train_data.images,
        train_data.labels,
        batch_size=config.batch_size,
        shuffle=True,
        seed=config.seed,
        drop_last=len(train_data) >= 4 * config.batch_size * world,
        transform=pipelines[0],
        device=device,
        rank=dist.rank,
        world_size=world,
    )
    test_loader = DeviceLoader(
        test_data.images,
        test_data.labels,
        batch_size=config.eval_batch_size,
        shuffle=False,
        transform=pipelines[1],
        device=device,
        rank=dist.rank,
        world_size=world,
        pad_shards=False,
    )
    return train_loader, test_loader
