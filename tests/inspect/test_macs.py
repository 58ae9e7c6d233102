"""Per-row MACs against an independent counter: torch's FlopCounterMode, module by module.

torch.utils.flop_counter counts 2 FLOPs per multiply-accumulate of convolutions and matrix
products. One counter runs around each leaf module's call (its own names would miss modules
called through a temporary container, such as ``self.classifier[:-1](x)``), one around the
whole model. For every leaf row of every registered model, the table's MACs (summed over the
module's calls) must be exactly half the FLOPs counted in it; the total likewise.

The documented exceptions are the modules that count themselves (``CountsOwnMacs``): LeNet-5's
C3 runs its 60-kernel connection table as a dense 96-kernel convolution (36 kernels of constant
zeros, LeCun et al. 1998, Table I), and its RBF output does squared distances, not a matrix
product (eq. 7). For those the table counts the model's arithmetic, and the test checks that
number against the module's own definition and that the dense counter is larger.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo import list_models, model_info, summary
from cnnzoo.inspect.collect import build_meta
from cnnzoo.inspect.macs import CountsOwnMacs

SLOW = {"resnet1202"}  # 600 blocks of resnet20's kind: seconds to trace twice


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in list_models()]
)
def test_every_row_matches_torch_flop_counter(name: str) -> None:
    size = model_info(name).input_size
    table = summary(name, batch_size=2)
    model = build_meta(name).eval()
    modules = dict(model.named_modules())
    names = {id(m): n for n, m in modules.items()}
    flops_in: Counter[str] = Counter()
    running: list[FlopCounterMode] = []

    def pre(module: nn.Module, args: Any) -> None:
        running.append(FlopCounterMode(display=False))
        running[-1].__enter__()

    def post(module: nn.Module, args: Any, output: Any) -> None:
        counter = running.pop()
        counter.__exit__(None, None, None)
        flops_in[names[id(module)]] += counter.get_total_flops()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_pre_hook(pre) for m in leaves]
    handles += [m.register_forward_hook(post) for m in leaves]
    with FlopCounterMode(display=False) as whole, torch.no_grad():
        model(torch.empty(2, *size, device="meta"))
    for handle in handles:
        handle.remove()

    table_macs: Counter[str] = Counter()
    for row in table.all_rows:
        if row.kind == "module" and row.is_leaf:
            table_macs[row.name] += row.macs
    checked = 0
    exceptions = 0
    for layer, macs in table_macs.items():
        flops = flops_in[layer]
        module = modules[layer]
        if isinstance(module, CountsOwnMacs):
            exceptions += 1
            assert (macs > 0 and 2 * macs <= flops) or flops == 0, (layer, macs, flops)
            continue
        assert 2 * macs == flops, f"{name}: {layer} has {macs:,} MACs, torch counts {flops:,} FLOPs"
        checked += bool(flops)
    assert checked > 0
    if not exceptions:
        total = whole.get_total_flops()
        assert 2 * table.total_macs == total, (table.total_macs, total)


def test_lenet5_c3_is_the_documented_exception() -> None:
    """C3: 10x10 positions x 60 kernels of 5x5 (1,500 weights) = 150,000 MACs, not the dense
    16 x 6 x 25 x 100 = 240,000 the convolution that runs it multiplies."""
    table = summary("lenet5")
    assert table.row("c3").macs == 150_000
    model = build_meta("lenet5").eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.empty(1, 1, 32, 32, device="meta"))
    assert sum(counter.get_flop_counts()["LeNet5.c3"].values()) == 2 * 240_000
    assert table.row("output").macs == 84 * 10  # one squared difference per input and class
