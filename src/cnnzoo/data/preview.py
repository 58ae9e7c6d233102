"""A grid of sample images per class, for looking at a dataset."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from PIL import Image

from cnnzoo.data.dataset import ImageDataset

__all__ = ["sample_grid", "save_grid"]


def sample_grid(
    dataset: ImageDataset, per_class: int = 8, max_classes: int = 20, gap: int = 2
) -> torch.Tensor:
    """uint8 (C, H, W): one row per class (the first ``max_classes``), its first ``per_class``
    images in order, scaled up (nearest) so each cell is at least 32 pixels, on a gray ground."""
    c, h, w = dataset.image_size
    scale = max(1, -(-32 // max(h, w)))
    cell_h, cell_w = h * scale, w * scale
    rows = min(dataset.num_classes, max_classes)
    grid = torch.full(
        (c, gap + rows * (cell_h + gap), gap + per_class * (cell_w + gap)), 128, dtype=torch.uint8
    )
    for row in range(rows):
        picks = (dataset.labels == row).nonzero().flatten()[:per_class]
        for col, index in enumerate(picks.tolist()):
            image = dataset.images[index].repeat_interleave(scale, 1).repeat_interleave(scale, 2)
            top, left = gap + row * (cell_h + gap), gap + col * (cell_w + gap)
            grid[:, top : top + cell_h, left : left + cell_w] = image
    return grid


def save_grid(grid: torch.Tensor, path: str | Path) -> None:
    """Write a uint8 (C, H, W) grid as PNG (gray for one channel, RGB for three), atomically:
    through a temporary file beside ``path`` and a rename; errors name ``path``."""
    path = Path(path)
    array = grid.permute(1, 2, 0).numpy()
    image = Image.fromarray(array[:, :, 0]) if grid.shape[0] == 1 else Image.fromarray(array)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise OSError(error.errno, error.strerror, str(path)) from None
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG")
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # disk full: name it (#13)
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise
