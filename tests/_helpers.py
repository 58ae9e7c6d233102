"""Helpers shared by the model tests (imported as ``_helpers``: tests/ is on sys.path through its
conftest.py). One copy of each instead of one per test file."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo import create_model, list_models, model_info
from cnnzoo._modes import eval_mode

ModelT = TypeVar("ModelT", bound=nn.Module)


def count_params(model: nn.Module) -> int:
    """Every parameter, counted once."""
    return sum(p.numel() for p in model.parameters())


def meta_model(name: str, kind: type[ModelT], **kwargs: Any) -> ModelT:
    """A registered model built on the meta device (no memory, no init), checked to be ``kind``."""
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert isinstance(model, kind), type(model)
    return model


def count_macs(model: nn.Module, size: tuple[int, int, int]) -> int:
    """Conv + linear multiply-accumulates of one eval-mode forward at batch 1, counted by PyTorch
    (FLOPs / 2) on the meta device: torchvision's "GFLOPS" convention."""
    model = model.to("meta").eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.empty(1, *size, device="meta"))
    return int(counter.get_total_flops()) // 2


def count_macs_by_hooks(model: nn.Module, size: tuple[int, int, int]) -> int:
    """The same count from forward hooks (each conv output element costs in/groups * kh * kw,
    each linear output in_features), on real tensors: an independent second method."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            total += output.numel() * module.weight[0].numel()
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with torch.no_grad(), eval_mode(model):  # inference: aux heads idle
            model(torch.zeros(1, *size, device=next(model.parameters()).device))
    finally:
        for handle in handles:
            handle.remove()
    return total


def adaptive_avg_pool(x: Tensor, out_h: int, out_w: int) -> Tensor:
    """Adaptive average pooling written out: cell i averages floor(i*H/out)..ceil((i+1)*H/out)."""
    h, w = x.shape[-2:]
    rows = []
    for i in range(out_h):
        r0, r1 = (i * h) // out_h, -((-(i + 1) * h) // out_h)
        cells = []
        for j in range(out_w):
            c0, c1 = (j * w) // out_w, -((-(j + 1) * w) // out_w)
            cells.append(x[..., r0:r1, c0:c1].mean(dim=(-2, -1)))
        rows.append(torch.stack(cells, dim=-1))
    return torch.stack(rows, dim=-2)


def logits(output: Any) -> Tensor:
    """The main logits from a plain tensor or a torchvision-style namedtuple."""
    return output if isinstance(output, Tensor) else output[0]


def randomise_batch_norms(model: nn.Module) -> None:
    """Give every batch norm non-trivial statistics and affine parameters, so that a misplaced,
    folded or frozen norm really shows."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


def heavy_models() -> list[str]:
    """Registered models whose real builds or forwards cost seconds on a 2-core CPU: 50M+
    parameters, or very deep at a small input (over a million MACs per input pixel:
    ResNet-1202, pre-activation ResNet-1001). Tests mark these slow."""
    heavy = []
    for name in list_models():
        info = model_info(name)
        pixels = info.input_size[1] * info.input_size[2]
        if info.params > 50_000_000 or (info.macs or 0) / pixels > 1_000_000:
            heavy.append(name)
    return heavy


def assert_trains(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    steps: int = 8,
    lr: float = 1e-3,
    loss_of: Callable[[Any, Tensor], Tensor] | None = None,
    factor: float = 0.7,
) -> tuple[float, float]:
    """A few Adam steps on one fixed batch must lower its loss below ``factor`` times the first
    (it can learn: gradients reach the weights with the right sign). Returns (first, last)."""
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        output = model(x)
        loss = loss_of(output, y) if loss_of else F.cross_entropy(logits(output), y)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses))), losses
    assert losses[-1] < factor * losses[0], f"the loss did not fall enough: {losses}"
    return losses[0], losses[-1]
