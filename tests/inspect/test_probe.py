"""Every spatial row of every registered model against an independent probe (issue 11).

The probe runs the model itself (torch's own kernels for every op between the convolutions)
with weights that make it monotone: every weight positive, biases zero, batch norm the identity,
no in-place ops. Fed an image that is zero except for one row (or one column) of ones, a unit's
output is non-zero exactly when its window covers that row: after every module the activations
are set to 1 where non-zero (no growth through hundreds of residual sums, no underflow at the
edges of a window), so "depends on" is read off as "non-zero". One forward pass over the H + W
row and column images gives, for every unit of every row at once, the first and last input row
and column it depends on: linear in depth, where a gradient per row is quadratic.

Two stand-ins make the big models cheap and are themselves checked against the real thing
(``test_the_stand_ins_change_no_window``):
- ``thin``: a convolution is replaced by a 1-channel convolution of ones with the module's own
  kernel size, stride, padding and dilation over the per-group maximum of its input: with
  positive weights every output channel of a group reads the same window of every input channel
  of the group, so its support is the same.
- ``collapsed``: in addition every tensor keeps one channel (convolutions output one, batch norm
  is dropped). The probe reads the union over channels of each unit's support; a window of the
  union is the union of the windows, so the union can be carried through instead of the channels.

For a row on a uniform grid the table gives unit (i, j)'s window from ``receptive_field``,
``jump`` and ``rf_start`` clipped to ``rf_reach``; it must equal the probed one for every unit.
For a row on a non-uniform grid (``rf_uneven``) ``rf_windows`` must equal the probed windows.
Two sizes per model: its default input, and (for models with adaptive pooling to more than one
unit) the smallest size from 64 up where torch's adaptive windows differ in width or spacing.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnzoo import create_model, list_models, model_info, summary
from cnnzoo.inspect import LayerRow, LayerTable

ALL = list_models()
MODES = ("real", "thin", "collapsed")
Extents = dict[tuple[str, int], list[Tensor]]  # per row: first/last row, first/last column


class _Done(Exception):
    """Raised once every row the table lists has been probed (the head is not needed)."""


def _binary(output: Any) -> Any:
    if isinstance(output, Tensor) and output.is_floating_point():
        return (output != 0).to(output.dtype)
    return output


def _thin_conv(conv: nn.Conv2d, collapse: bool) -> Any:
    assert conv.padding_mode == "zeros", conv
    groups = 1 if collapse else conv.groups
    ones = torch.ones(groups, 1, *conv.kernel_size)

    def forward(x: Tensor) -> Tensor:
        b, _, h, w = x.shape
        seen = x.amax(1, keepdim=True) if collapse else x.view(b, groups, -1, h, w).amax(2)
        y = F.conv2d(seen, ones, None, conv.stride, conv.padding, conv.dilation, groups)
        if collapse:
            return y
        per_group = conv.out_channels // groups
        return y[:, :, None].expand(b, groups, per_group, *y.shape[2:]).flatten(1, 2)

    return forward


def _collapsible(model: nn.Module) -> bool:
    """Every module with parameters is one the collapsed stand-in knows (LeNet-5's connection
    table and subsampling expect their channel counts)."""
    known = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)
    return all(
        isinstance(m, known) for m in model.modules() if next(m.parameters(False), None) is not None
    )


def prepared(name: str, mode: str) -> nn.Module:
    """The registered model, monotone (see the module docstring), in one of ``MODES``."""
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
    collapse = mode == "collapsed"
    assert not collapse or _collapsible(model), name
    for parent in list(model.modules()):
        for child_name, child in parent.named_children():
            if type(child) is nn.Conv2d and mode != "real":
                child.forward = _thin_conv(child, collapse)  # type: ignore[method-assign]
            elif isinstance(child, nn.BatchNorm2d) and collapse:
                setattr(parent, child_name, nn.Identity())
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


class _Functions(TorchFunctionMode):
    """Records the outputs of torch functions called directly in a container's forward, by the
    names the table gives such rows ("<owner>.<function>"), to probe functional rows too."""

    def __init__(self, stack: list[str], leaves: set[str], record: Any) -> None:
        super().__init__()
        self.stack, self.leaves, self.record = stack, leaves, record
        self.counts: Counter[str] = Counter()

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        result = func(*args, **(kwargs or {}))
        owner = self.stack[-1] if self.stack else None
        if owner is not None and owner not in self.leaves and isinstance(result, Tensor):
            name = getattr(func, "__name__", "")
            short = name.strip("_") or name
            key = f"{owner}.{short}" if owner else short
            self.record(key, self.counts[key], result)
            self.counts[key] += 1
        return result


def probe(name: str, input_size: Sequence[int], mode: str, wanted: set[tuple[str, int]]) -> Extents:
    """For each wanted (row name, call index): per spatial axis, the first and last input pixel
    each unit depends on ([h, w] tensors), from one pass over the row and column images."""
    model = prepared(name, mode)
    channels, *sizes = input_size
    extents: Extents = {}
    for axis, size in enumerate(sizes):
        chunk = size if mode == "collapsed" else 16
        for begin in range(0, size, chunk):
            lines = range(begin, min(size, begin + chunk))
            x = torch.zeros(len(lines), channels, *sizes)
            for b, line in enumerate(lines):
                x.select(2 + axis, line)[b] = 1.0
            update = functools.partial(_update, extents, axis=axis, first_line=begin)
            _forward(model, x, wanted, update)
    return extents


def _update(extents: Extents, key: Any, out: Tensor, axis: int, first_line: int) -> None:
    """Fold in a batch of consecutive lines first_line, first_line + 1, ... along ``axis``."""
    hit = (out != 0).any(1).to(torch.uint8)  # [lines, h, w]: the unit depends on the line
    lines, h, w = hit.shape
    current = extents.setdefault(key, [torch.full((h, w), big) for big in (10**9, -1) * 2])
    some = hit.amax(0).bool()
    first = first_line + hit.argmax(0)  # argmax returns the first maximum
    last = first_line + lines - 1 - hit.flip(0).argmax(0)
    low, high = current[2 * axis], current[2 * axis + 1]
    current[2 * axis] = torch.where(some, torch.minimum(low, first), low)
    current[2 * axis + 1] = torch.where(some, torch.maximum(high, last), high)


def _forward(model: nn.Module, x: Tensor, wanted: set[tuple[str, int]], seen: Any) -> None:
    names = {id(m): n for n, m in model.named_modules()}
    leaves = {n for n, m in model.named_modules() if next(m.children(), None) is None}
    stack: list[str] = []
    calls: Counter[str] = Counter()
    left = set(wanted)

    def record(name: str, index: int, output: Tensor) -> None:
        if (name, index) in left and output.dim() == 4:
            seen((name, index), output)
            left.discard((name, index))
            if not left:
                raise _Done

    def pre(module: nn.Module, args: Any) -> None:
        stack.append(names[id(module)])

    def post(module: nn.Module, args: Any, output: Any) -> Any:
        name = stack.pop()
        output = _binary(output)
        if isinstance(output, Tensor):
            record(name, calls[name], output)
        calls[name] += 1
        return output

    handles = [m.register_forward_pre_hook(pre) for m in model.modules()]
    handles += [m.register_forward_hook(post) for m in model.modules()]
    try:
        with torch.no_grad(), _Functions(stack, leaves, record):
            model(x)
    except _Done:
        pass
    finally:
        for handle in handles:
            handle.remove()
    assert not left, f"the probe saw no output for rows {sorted(left)}"


def spatial_rows(table: LayerTable) -> list[LayerRow]:
    return [
        row
        for row in table.all_rows
        if row.receptive_field is not None
        and row.output_hwc is not None
        and len(row.output_hwc) == 3
        and len(row.receptive_field) == 2
    ]


def predicted(row: LayerRow, axis: int, units: int) -> tuple[Tensor, Tensor]:
    """The table's first and last input pixel of units 0..units-1 along ``axis``."""
    if row.rf_uneven:
        assert row.jump is None and row.rf_start is None and row.rf_windows is not None
        windows = torch.tensor(row.rf_windows[axis])
        assert len(windows) == units, row.name
        return windows[:, 0], windows[:, 1]
    assert row.receptive_field is not None and row.jump is not None and row.rf_start is not None
    assert row.rf_reach is not None
    centres = row.rf_start[axis] + torch.arange(units, dtype=torch.float64) * row.jump[axis]
    half = (row.receptive_field[axis] - 1) / 2
    low, high = centres - half, centres + half
    assert bool((low == low.floor()).all() and (high == high.floor()).all()), row.name
    first, last = row.rf_reach[axis]
    return low.clamp(min=first).long(), high.clamp(max=last).long()


def check_model(name: str, input_size: tuple[int, ...], mode: str | None = None) -> int:
    """Probe every spatial row of ``name`` at ``input_size``; the number of rows checked."""
    if mode is None:
        mode = "collapsed" if _collapsible(create_model(name)) else "thin"
    rows = spatial_rows(summary(name, input_size))
    extents = probe(name, input_size, mode, {(row.name, row.call_index) for row in rows})
    for row in rows:
        assert all(float(r).is_integer() for r in row.receptive_field or []), row.name
        found = extents[(row.name, row.call_index)]
        assert list(found[0].shape) == row.output_hwc[:2], row.name
        assert row.rf_reach is not None
        for axis in (0, 1):
            first, last = found[2 * axis], found[2 * axis + 1]
            assert int(first.max()) < 10**9, f"{name} {row.name}: a unit depends on no pixel"
            # A unit's window along one axis does not depend on its position along the other.
            assert bool((first == first[:, :1]).all() if axis == 0 else (first == first[:1]).all())
            probed_first = first[:, 0] if axis == 0 else first[0]
            probed_last = last[:, 0] if axis == 0 else last[0]
            low, high = predicted(row, axis, len(probed_first))
            where = f"{name} {row.name} axis {axis}"
            assert probed_first.tolist() == low.tolist(), (where, "first pixel")
            assert probed_last.tolist() == high.tolist(), (where, "last pixel")
            reach = (int(first.min()), int(last.max()))
            assert reach == tuple(row.rf_reach[axis]), (where, "reach", reach)
    return len(rows)


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


@pytest.mark.parametrize("name", ALL)
def test_every_row_at_the_default_input(name: str) -> None:
    assert check_model(name, model_info(name).input_size) > 0


@pytest.mark.parametrize("name", ALL)
def test_every_row_where_adaptive_pooling_is_uneven(name: str) -> None:
    size = uneven_size(name)
    if size is None:
        # Nothing to probe: every adaptive pool here pools to one unit (a global pool).
        return
    assert check_model(name, size) > 0
    assert any(row.rf_uneven for row in summary(name, size).all_rows)


# One model of each kind of op the stand-ins must not change: LRN and ceil-mode pools
# (googlenet_original), grouped/depthwise convolutions (mobilenet_v2), concatenation with
# batch norm (densenet121), fire modules with ceil-mode pools (squeezenet1_1), zero-padded
# channel shortcuts (resnet20), LeNet-5's connection table (real vs thin only), at sizes
# where the real convolutions are cheap.
STAND_IN_CASES = [
    ("googlenet_original", (3, 64, 64)),
    ("mobilenet_v2", (3, 64, 64)),
    ("densenet121", (3, 48, 48)),
    ("squeezenet1_1", (3, 64, 64)),
    ("resnet20", (3, 32, 32)),
    ("lenet5", (1, 32, 32)),
]


@pytest.mark.parametrize(("name", "size"), STAND_IN_CASES)
def test_the_stand_ins_change_no_window(name: str, size: tuple[int, ...]) -> None:
    wanted = {(row.name, row.call_index) for row in spatial_rows(summary(name, size))}
    real = probe(name, size, "real", wanted)
    modes = ["thin", "collapsed"] if _collapsible(create_model(name)) else ["thin"]
    for mode in modes:
        other = probe(name, size, mode, wanted)
        assert other.keys() == real.keys()
        for key, tensors in real.items():
            assert all(torch.equal(a, b) for a, b in zip(tensors, other[key], strict=True)), (
                mode,
                key,
            )
