"""Filter and feature-map grids of a model, as images."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from cnnzoo import create_model
from cnnzoo.visualize import activation_grids, conv_layers, filter_grid, save_grid


def test_filter_grid_tiles_every_kernel_normalised() -> None:
    torch.manual_seed(0)
    model = create_model("alexnet", num_classes=10)
    grid = filter_grid(model)  # features.0: 64 RGB kernels of 11x11 in an 8x8 grid
    assert grid.shape == (3, 8 * 12 + 1, 8 * 12 + 1)
    assert grid.min() >= 0 and grid.max() <= 1
    first = grid[:, 1:12, 1:12]
    assert first.min() == 0 and first.max() == 1  # each kernel stretched on its own
    with pytest.raises(ValueError, match="no layer named"):
        filter_grid(model, "nope")


def test_activation_grids_and_png(tmp_path: Path) -> None:
    model = create_model("lenet5_modern")
    layers = conv_layers(model)[:2]
    grids = activation_grids(model, torch.randn(1, 32, 32), layers)
    assert list(grids) == layers
    for grid in grids.values():
        assert grid.dim() == 3 and grid.shape[0] == 1
    path = save_grid(next(iter(grids.values())), tmp_path / "a.png", title="maps")
    assert path.read_bytes().startswith(b"\x89PNG")
