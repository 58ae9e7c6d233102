"""Helpers for the DenseNet / SqueezeNet / MobileNet / NiN tests: functional references read a
state_dict through ``Tracked`` (so unused weights are caught), scrambled norms make a misplaced
BN visible, and ``loss_drops`` checks that a model learns a fixed batch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo import create_model, load_weights, model_info, summary


class Tracked(dict[str, Tensor]):
    """A state_dict that remembers which entries a reference read."""

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__(state)
        self.used: set[str] = set()

    def __getitem__(self, key: str) -> Tensor:
        self.used.add(key)
        return super().__getitem__(key)

    def assert_all_used(self) -> None:
        unused = {k for k in self if not k.endswith("num_batches_tracked")} - self.used
        assert not unused, f"state the reference never used: {sorted(unused)[:5]}"


def bn(x: Tensor, sd: Tracked, prefix: str, eps: float = 1e-5) -> Tensor:
    """Eval-mode batch norm from the state_dict entries under ``prefix``."""
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=eps,
    )


def scramble_(model: nn.Module) -> nn.Module:
    """Random BN statistics and affine parameters and random biases, in place, eval mode."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.copy_(0.1 * torch.randn(n))
                module.running_var.copy_(torch.rand(n) + 0.5)
                module.weight.copy_(torch.rand(n) + 0.5)
                module.bias.copy_(0.1 * torch.randn(n))
            elif isinstance(module, nn.Conv2d | nn.Linear) and module.bias is not None:
                module.bias.copy_(0.1 * torch.randn_like(module.bias))
    return model.eval()


def assert_close(actual: Tensor, expected: Tensor) -> None:
    tolerance = 1e-5 * max(expected.abs().max().item(), 1.0)  # float32 through deep nets
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=tolerance)


def summary_macs(name: str, size: tuple[int, int] | None = None, **kwargs: Any) -> int:
    """MACs as ``cnnzoo.summary`` counts them (conv and linear weights, batch 1)."""
    table = summary(name, size, **kwargs)
    assert not table.macs_partial
    return table.total_macs


def torchvision_file(pairs: list[list[Any]], path: Path) -> Path:
    """A .pth laid out like torchvision's checkpoint (keys, order, shapes), random values."""
    generator = torch.Generator().manual_seed(1)
    state = {
        key: torch.randn(shape, generator=generator) if shape else torch.tensor(7)
        for key, shape in pairs
    }
    torch.save(state, path)
    return path


def check_torchvision_file_loads_strict(name: str, pairs: list[list[Any]], path: Path) -> None:
    """Build ``name``, load a torchvision-layout file strictly, and find every value in place."""
    torchvision_file(pairs, path)
    model = create_model(name)
    load_weights(model, path)  # strict: every key, no more, same shapes
    state = torch.load(path, weights_only=True)
    assert list(model.state_dict()) == list(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key].to(value.dtype)), key
    model.load_state_dict(state, strict=True)  # and plain PyTorch agrees


def loss_drops(
    name: str,
    steps: int = 4,
    side: int = 32,
    in_channels: int = 3,
    lr: float = 1e-3,
    **kwargs: Any,
) -> tuple[float, float]:
    """Adam on one fixed batch of four images (CIFAR-shaped 3x32x32 by default; ``side`` and
    ``in_channels`` for digits-shaped or cheaper input, never below the model's minimum), 10
    classes, for a few steps: the (first, last) training loss."""
    side = max(side, *model_info(name).min_size)
    model = create_model(name, num_classes=10, in_channels=in_channels, **kwargs).train()
    x = torch.randn(4, in_channels, side, side)
    y = torch.tensor([0, 3, 5, 9])
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert math.isfinite(losses[-1])
    return losses[0], losses[-1]


def check_reset_classifier_keeps_dtype(name: str) -> None:
    """A new head in the model's dtype, for the new class count, freshly initialised."""
    with torch.device("meta"):
        model = create_model(name).to(torch.float64).eval()
    old = model.get_classifier()
    model.reset_classifier(3)
    head = model.get_classifier()
    assert head is not old and model.num_classes == 3
    assert all(p.dtype == torch.float64 and p.is_meta for p in head.parameters())
    weight = getattr(head, "weight", None)
    assert isinstance(weight, Tensor) and weight.shape[0] == 3
    side = max(model_info(name).min_size)
    out = model(torch.empty(1, model.in_channels, side, side, dtype=torch.float64, device="meta"))
    assert out.shape == (1, 3) and out.dtype == torch.float64
