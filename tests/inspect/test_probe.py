"""Every spatial row of every registered model against a gradient probe (issue 11).

The probe is independent of the table's rules: it runs the real model (torch's own kernels) on
a linearised copy (weights 1 / fan-in, biases 0, batch norm the identity, max pools made
average pools so that every input of a window passes gradient) fed with ones, and
back-propagates from single output units of each row. The input pixels with a non-zero gradient
are exactly those the unit depends on. For a row on a uniform grid the table predicts unit
(i, j)'s window from ``receptive_field``, ``jump`` and ``rf_start``; clipped to the image it must
equal the probed one, for the centre unit and for unit (0, 0) (two units pin down both jump and
start). For a row on a non-uniform grid (``rf_uneven``) the widest probed window must equal the
receptive field.

Two sizes per model: its default input, and (for models with adaptive pooling to more than one
unit) the smallest size from 64 up where torch's adaptive windows differ in width or spacing.
Costs grow with depth x input: the big ImageNet models are marked slow.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnzoo import create_model, list_models, model_info, summary
from cnnzoo.inspect import LayerRow, LayerTable

ALL = list_models()
# Default-input MACs above which probing every row costs more than a few seconds of CPU
# (alexnet with its LRN: ~4 s; googlenet: ~40 s): those run with the slow tests.
HEAVY_MACS = 800_000_000


class _AveragePools(TorchFunctionMode):
    """Max pooling passes gradient to one input per window; average pooling to all of them.

    Also records the outputs of torch functions called directly in a container's forward, by
    the names the table gives such rows ("<owner>.<function>"), to probe functional rows too.
    """

    def __init__(self, stack: list[str], leaves: set[str]) -> None:
        super().__init__()
        self.stack = stack
        self.leaves = leaves
        self.outputs: dict[tuple[str, int], Tensor] = {}
        self.counts: Counter[str] = Counter()

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            bound = _bind_max_pool(*args, **kwargs)
            result: Any = F.avg_pool2d(*bound)
        elif name in ("adaptive_max_pool2d", "_adaptive_max_pool2d"):
            size = args[1] if len(args) > 1 else kwargs["output_size"]
            result = F.adaptive_avg_pool2d(args[0], size)
        else:
            result = func(*args, **kwargs)
        owner = self.stack[-1] if self.stack else None
        if owner is not None and owner not in self.leaves and isinstance(result, Tensor):
            short = name.strip("_") or name
            key = f"{owner}.{short}" if owner else short
            self.outputs[(key, self.counts[key])] = result
            self.counts[key] += 1
        return result


def _bind_max_pool(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[Tensor, Any, Any, Any, bool]:
    assert dilation in (1, (1, 1), [1, 1]) and not return_indices
    return input, kernel_size, stride, padding, ceil_mode


def linearised(name: str) -> nn.Module:
    """The registered model with positive weights: activations stay positive (~1), so every
    ReLU passes gradient and no path cancels another."""
    model = create_model(name)  # real buffers: LeNet-5's C3 keeps its connection table in one
    with torch.no_grad():
        for module in model.modules():
            for key, parameter in module.named_parameters(recurse=False):
                if key == "weight" and parameter.dim() > 1:
                    parameter.fill_(1.0 / parameter[0].numel())
                elif key == "weight":
                    parameter.fill_(1.0)
                else:
                    parameter.fill_(0.0)
            for key, buffer in module.named_buffers(recurse=False):
                if key == "running_var":
                    buffer.fill_(1.0)
                elif buffer.is_floating_point():
                    buffer.fill_(0.0)
            if hasattr(module, "inplace"):
                module.inplace = False  # keep every row's output its own tensor
    # A saturating activation (MobileNet v2's ReLU6) would stop the gradient once residual sums
    # pass 6; the pixels a unit reads do not depend on the activation: a plain ReLU stands in.
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if isinstance(child, nn.Hardtanh):
                setattr(parent, child_name, nn.ReLU())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def forward_outputs(
    model: nn.Module, input_size: Sequence[int]
) -> tuple[Tensor, dict[Any, Tensor]]:
    """(input, outputs by (row name, call index)) of one forward pass at batch 2 with grad."""
    names = {id(m): n for n, m in model.named_modules()}
    leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    stack: list[str] = []
    outputs: dict[Any, Tensor] = {}
    calls: Counter[str] = Counter()

    def pre(module: nn.Module, args: Any) -> None:
        stack.append(names[id(module)])

    def post(module: nn.Module, args: Any, output: Any) -> None:
        name = stack.pop()
        if isinstance(output, Tensor):
            outputs[(name, calls[name])] = output
        calls[name] += 1

    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    handles += [m.register_forward_hook(post) for m in model.modules()]
    x = torch.ones(2, *input_size, requires_grad=True)
    mode = _AveragePools(stack, leaves)
    try:
        with mode:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return x, {**mode.outputs, **outputs}


def _extent(grad: Tensor) -> tuple[tuple[int, int], tuple[int, int]]:
    seen = grad.abs().sum(0) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    assert rows.numel() and cols.numel(), "the unit depends on no input pixel"
    return (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def predicted(row: LayerRow, unit: Sequence[int], size: Sequence[int]) -> list[tuple[int, int]]:
    """The table's window of output unit ``unit``, clipped to the image, in whole pixels."""
    assert row.receptive_field is not None and row.jump is not None and row.rf_start is not None
    window = []
    for axis in range(2):
        centre = row.rf_start[axis] + unit[axis] * row.jump[axis]
        half = (row.receptive_field[axis] - 1) / 2
        low, high = centre - half, centre + half
        assert low == math.floor(low) and high == math.floor(high), (row.name, low, high)
        window.append((max(0, int(low)), min(size[axis] - 1, int(high))))
    return window


def spatial_rows(table: LayerTable) -> Iterator[LayerRow]:
    for row in table.all_rows:
        rf, shape = row.receptive_field, row.output_hwc
        if rf is not None and shape is not None and len(shape) == 3 and len(rf) == 2:
            yield row


def check_model(name: str, input_size: tuple[int, ...]) -> int:
    """Probe every spatial row of ``name`` at ``input_size``; the number of rows probed."""
    table = summary(name, input_size)
    x, outputs = forward_outputs(linearised(name), input_size)
    size = input_size[1:]
    probed: dict[int, Any] = {}  # one probe per distinct output tensor
    count = 0
    for row in spatial_rows(table):
        output = outputs.get((row.name, row.call_index))
        assert output is not None, f"{name}: the probe saw no output for row {row.name!r}"
        assert list(output.shape[2:]) == row.output_hwc[:2], row.name
        assert all(float(r).is_integer() for r in row.receptive_field or []), row.name
        h, w = int(output.shape[2]), int(output.shape[3])
        if row.rf_uneven:
            # Every unit's window is in the row: probe the diagonal units (i, i), which read
            # every window of both axes.
            assert row.jump is None and row.rf_start is None and row.rf_windows is not None
            assert [len(axis) for axis in row.rf_windows] == [h, w]
            for i in range(min(h, w)):
                (grad,) = torch.autograd.grad(output[0, :, i, i].sum(), x, retain_graph=True)
                expected = [row.rf_windows[0][i], row.rf_windows[1][i]]
                assert list(_extent(grad[0])) == expected, (name, row.name, i)
            count += 1
            continue
        centre = (h // 2, w // 2)
        if id(output) not in probed:
            # Batch element 0 probes the centre unit, element 1 unit (0, 0): one backward.
            seed = output[0, :, centre[0], centre[1]].sum() + output[1, :, 0, 0].sum()
            (grad,) = torch.autograd.grad(seed, x, retain_graph=True)
            probed[id(output)] = (_extent(grad[0]), _extent(grad[1]))
        at_centre, at_corner = probed[id(output)]
        assert list(at_centre) == predicted(row, centre, size), (name, row, at_centre)
        assert list(at_corner) == predicted(row, (0, 0), size), (name, row, at_corner)
        count += 1
    return count


def torch_windows_uneven(n: int, o: int) -> bool:
    """Whether torch's adaptive windows of n inputs to o outputs differ in width or spacing
    (start floor(i n / o), end ceil((i + 1) n / o); 7 -> 6 is even: width 2, step 1)."""
    starts = [math.floor(i * n / o) for i in range(o)]
    widths = {math.ceil((i + 1) * n / o) - start for i, start in enumerate(starts)}
    steps = {b - a for a, b in itertools.pairwise(starts)}
    return len(widths) > 1 or len(steps) > 1


def uneven_size(name: str) -> tuple[int, ...] | None:
    """The smallest square input from 64 up where an adaptive pool to more than one unit has
    uneven windows, or None if the model has no such pool."""
    default = model_info(name).input_size
    table = summary(name)
    adaptive = [r for r in table.all_rows if r.type.startswith("Adaptive")]
    if not any(r.output_hwc and max(r.output_hwc[:2]) > 1 for r in adaptive):
        return None
    for side in range(64, 2 * default[1]):
        try:
            rows = summary(name, (default[0], side, side)).all_rows
        except ValueError:
            continue
        for row in rows:
            if row.type.startswith("Adaptive") and row.input_hwc and row.output_hwc:
                n, o = row.input_hwc[0], row.output_hwc[0]
                if o > 1 and torch_windows_uneven(n, o):
                    return (default[0], side, side)
    raise AssertionError(f"{name}: no input size makes its adaptive pooling uneven")


# The deep CIFAR nets repeat the blocks of their shallow siblings (hundreds of rows: 23 s for
# resnet110, ~45 min for resnet1202 on one thread).
DEEP = {
    "resnet110",
    "resnet1202",
    "preact_resnet110",
    "preact_resnet164",
    "preact_resnet1001",
    "densenet_bc_100_k12",
}
# One VGG probes uneven adaptive pooling in the quick run; the family shares the pool.
UNEVEN_QUICK = {"vgg11"}


# Known defect, left open in issue 11: after SqueezeNet's ceil-mode pools the table's window of
# the global pool ends one pixel past the last one any unit reads (223 vs 222 at 224): the uniform
# grid's formula counts the partial last pool window as whole. Strict: passes once fixed.
_KNOWN_WRONG = frozenset({"squeezenet1_0", "squeezenet1_1"})


def _slow_unless(quick: bool, name: str, known_wrong: frozenset[str] = frozenset()) -> Any:
    # Probing every row of a big or deep model costs minutes to most of an hour on this CPU:
    # `make test-heavy` runs those; `make test` the rest (every family is probed there).
    marks = [pytest.mark.heavy] if not quick else []
    if name in known_wrong:
        marks.append(pytest.mark.xfail(strict=True, reason="ceil-mode pool windows, issue 11"))
    return pytest.param(name, marks=marks)


@pytest.mark.parametrize(
    "name",
    [
        _slow_unless(model_info(n).macs <= HEAVY_MACS and n not in DEEP, n, _KNOWN_WRONG)
        for n in ALL
    ],
)
def test_every_row_at_the_default_input(name: str) -> None:
    assert check_model(name, model_info(name).input_size) > 0


@pytest.mark.parametrize(
    "name",
    [
        _slow_unless((model_info(n).macs <= HEAVY_MACS or n in UNEVEN_QUICK) and n not in DEEP, n)
        for n in ALL
    ],
)
def test_every_row_where_adaptive_pooling_is_uneven(name: str) -> None:
    size = uneven_size(name)
    if size is None:
        # Nothing to probe: every adaptive pool here pools to one unit (a global pool).
        return
    assert check_model(name, size) > 0
    assert any(row.rf_uneven for row in summary(name, size).all_rows)
