"""The in-memory dataset every reader returns, and the one error type for bad data."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

__all__ = ["DatasetError", "ImageDataset", "channel_stats", "default_data_dir"]


class DatasetError(ValueError):
    """Missing or malformed data: the message names the file and what was expected."""


def default_data_dir() -> Path:
    """``$CNNZOO_DATA_DIR`` if set, else ``~/.cache/cnnzoo/data``."""
    env = os.environ.get("CNNZOO_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "cnnzoo" / "data"


@dataclass(frozen=True)
class ImageDataset:
    """A whole split held as tensors: small datasets live on the training device in one piece.

    ``images`` is uint8 (N, C, H, W), ``labels`` int64 (N,). ``mean``/``std`` are per channel on
    the 0..1 scale, of the training split (what a trainer normalises every split with).
    """

    name: str
    split: str
    images: Tensor
    labels: Tensor
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    source: str  # the file or folder it was read from

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(
                f"{self.source}: images must be uint8 (N, C, H, W), got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.dtype != torch.int64 or self.labels.shape != self.images.shape[:1]:
            raise DatasetError(
                f"{self.source}: {self.images.shape[0]} images but labels are "
                f"{self.labels.dtype} {tuple(self.labels.shape)} (expected int64 of the same count)"
            )
        if len(self.labels) and not 0 <= int(self.labels.min()) <= int(self.labels.max()) < len(
            self.classes
        ):
            raise DatasetError(
                f"{self.source}: labels span {int(self.labels.min())}..{int(self.labels.max())}, "
                f"expected 0..{len(self.classes) - 1} for {len(self.classes)} classes"
            )
        channels = self.images.shape[1]
        if len(self.mean) != channels or len(self.std) != channels:
            raise DatasetError(f"{self.source}: mean/std need one value per channel ({channels})")
        if not all(s > 0 for s in self.std):
            raise DatasetError(f"{self.source}: std must be positive per channel, got {self.std}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def image_size(self) -> tuple[int, int, int]:
        """(C, H, W) of one image."""
        _, c, h, w = self.images.shape
        return int(c), int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def class_counts(self) -> list[int]:
        """Number of images of each class, in class order."""
        return [int(n) for n in torch.bincount(self.labels, minlength=len(self.classes))]


def channel_stats(images: Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std (population) of uint8 (N, C, H, W) images on the 0..1 scale;
    a channel with a std under one grey level gets std 1 (normalisation then only centres it).

    Sums in float64 chunk by chunk: exact enough and bounded memory for 50k CIFAR images.
    """
    if images.shape[0] == 0:
        raise DatasetError("cannot compute mean/std of an empty split")
    channels = images.shape[1]
    total = torch.zeros(channels, dtype=torch.float64)
    total_sq = torch.zeros(channels, dtype=torch.float64)
    for start in range(0, images.shape[0], chunk):
        block = images[start : start + chunk].to(torch.float64).div_(255.0)
        total += block.sum(dim=(0, 2, 3))
        total_sq += block.square().sum(dim=(0, 2, 3))
    count = images.shape[0] * images.shape[2] * images.shape[3]
    mean = total / count
    std = (total_sq / count - mean.square()).clamp_min(0).sqrt()
    # A channel that varies by less than one grey level (a constant channel, e.g. red-only
    # scans) carries nothing to scale: dividing by its std would blow noise up to inf or NaN.
    std = torch.where(std < 1.0 / 255.0, torch.ones_like(std), std)
    return tuple(round(float(m), 4) for m in mean), tuple(round(float(s), 4) for s in std)
