"""Receptive-field rules: the geometry of an op's outputs from that of its inputs.

The tracer (``trace.py``) sees every aten op a forward pass runs (on meta tensors) and asks
these rules what the receptive-field facts of its outputs are, given those of its inputs.

Receptive fields follow the usual recurrence (Araujo, Norris & Sim 2019, "Computing Receptive
Fields of Convolutional Neural Networks", Distill, eqs. 1-2): for a window of effective size
``E = D(F - 1) + 1``, stride ``S`` and padding ``P`` on an input whose units see ``r`` pixels, step
``j`` pixels apart, with unit 0 centred at ``c``, the output has ``r + (E - 1) j``, ``j S`` and
``c + ((E - 1) / 2 - P) j``. Geometry lives on tensors, not on layers, so branches keep their own
values and a join (residual add, concatenation) takes the union of its inputs' windows: the
maximum over branches, never a product of strides along a path the data did not take.

Adaptive pooling follows torch's window rule (window i of n inputs to o outputs covers
``[floor(i n / o), ceil((i + 1) n / o))``). When those windows differ in width or spacing the
grid is non-uniform: no single jump or start describes it, so the geometry carries every unit's
window explicitly (``Geo.units``) until a layer makes it uniform again or flattens it.
Ops that mix channels only (local response normalisation) keep their input's geometry.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from torch import Tensor

from cnnzoo.inspect.macs import _is_free
from cnnzoo.inspect.ops import (
    _CONTRACTIONS,
    _MIXING_DIM,
    _REARRANGE,
    _REDUCTIONS,
    Window,
    _arg,
    _arguments,
    _dims,
    _name,
    window_of,
)

Axes = tuple[float, ...]
Intervals = tuple[tuple[float, float], ...]


@dataclass(frozen=True)
class Geo:
    """Receptive-field facts of one tensor, per spatial axis (its last ``len(rf)`` dims).

    ``rf``: input pixels one unit sees; ``span``: input pixels all units together see;
    ``jump``: input pixels between neighbouring units (None once the grid is gone: flattened,
    reshaped or mixed across positions); ``start``: centre of unit 0's window, in input pixel
    coordinates (None with ``jump``); ``reach``: per axis, the first and last input pixel any
    unit actually reads. ``rf`` and ``span`` are nominal (the usual recurrence, counting padding
    and the positions a ceil-mode window hangs past its input); a unit reads its nominal window
    clipped to ``reach``.
    """

    rf: Axes
    span: Axes
    jump: Axes | None
    start: Axes | None
    reach: Intervals
    # A non-uniform grid (jump and start None): per axis, the (first, last) input pixel of
    # every unit's window. ``rf`` is then the widest window.
    units: tuple[Intervals, ...] | None = None

    @property
    def axes(self) -> int:
        return len(self.rf)

    @property
    def uneven(self) -> bool:
        return self.units is not None

    def windows(self) -> tuple[Intervals, ...] | None:
        """Every unit's window (first, last input pixel) per axis, clipped to ``reach``: what
        the units of a non-uniform grid actually read. None if uniform."""
        if self.units is None:
            return None
        return tuple(
            tuple((max(low, lo), min(high, hi)) for low, high in axis)
            for axis, (lo, hi) in zip(self.units, self.reach, strict=True)
        )


# Functions that mix channels, never positions: an output unit sees what the same position of
# the input saw. Their aten ops (a 3-d average pool over a view that merges H and W) would
# otherwise read as mixing positions. Keyed by name: torch.nn.functional's objects.
SPATIALLY_POINTWISE = frozenset({"local_response_norm"})


def _intervals(geo: Geo, sizes: Sequence[int]) -> tuple[Intervals, ...] | None:
    """Every unit's window per axis, for a uniform or non-uniform grid; None without a grid."""
    if geo.units is not None:
        return geo.units
    if geo.jump is None or geo.start is None:
        return None
    return tuple(
        tuple((c + i * j - (r - 1) / 2, c + i * j + (r - 1) / 2) for i in range(n))
        for r, j, c, n in zip(geo.rf, geo.jump, geo.start, sizes, strict=True)
    )


def _from_intervals(units: Sequence[Intervals], single_jump: Axes, bound: Intervals) -> Geo:
    """The geometry of a grid given every unit's (nominal) window: uniform when the windows have
    one width and one spacing (``single_jump`` for axes of one unit), else non-uniform. What the
    units read is clipped to ``bound``, the reach of their input."""
    rf, jump, start = [], [], []
    even = True
    for axis, windows in enumerate(units):
        widths = {high - low + 1 for low, high in windows}
        steps = {b[0] - a[0] for a, b in itertools.pairwise(windows)}
        even = even and len(widths) == 1 and len(steps) <= 1
        rf.append(max(widths))
        jump.append(steps.pop() if len(steps) == 1 else single_jump[axis])
        start.append((windows[0][0] + windows[0][1]) / 2)
    lows = [min(low for low, _ in w) for w in units]
    highs = [max(high for _, high in w) for w in units]
    span = tuple(h - lo + 1 for lo, h in zip(lows, highs, strict=True))
    reach = _clip(tuple(zip(lows, highs, strict=True)), bound)
    if even:
        return Geo(rf=tuple(rf), span=span, jump=tuple(jump), start=tuple(start), reach=reach)
    return Geo(rf=tuple(rf), span=span, jump=None, start=None, reach=reach, units=tuple(units))


def _clip(extent: Intervals, bound: Intervals) -> Intervals:
    """The part of each axis' (first, last) ``extent`` inside ``bound``."""
    return tuple(
        (max(low, lo), min(high, hi)) for (low, high), (lo, hi) in zip(extent, bound, strict=True)
    )


def input_geo(shape: Sequence[int]) -> Geo:
    """The model input: every unit is one pixel. Spatial axes are the dims after (N, C);
    (N, F) vectors have none (the data path is still followed, the receptive field is empty)."""
    sizes = tuple(float(s) for s in shape[2:])
    ones = tuple(1.0 for _ in sizes)
    reach = tuple((0.0, s - 1) for s in sizes)
    return Geo(rf=ones, span=sizes, jump=ones, start=tuple(0.0 for _ in sizes), reach=reach)


def _grid(rf: Axes, jump: Axes, start: Axes, sizes: Sequence[int], bound: Intervals) -> Geo:
    """A uniform grid of ``sizes`` units; they read their nominal windows within ``bound``."""
    span = tuple(r + (n - 1) * j for r, n, j in zip(rf, sizes, jump, strict=True))
    extent = tuple(
        (c - (r - 1) / 2, c - (r - 1) / 2 + s - 1) for r, c, s in zip(rf, start, span, strict=True)
    )
    return Geo(rf=rf, span=span, jump=jump, start=start, reach=_clip(extent, bound))


def _flat(rf: Axes, span: Axes, reach: Intervals) -> Geo:
    return Geo(rf=rf, span=span, jump=None, start=None, reach=reach)


def _global(geo: Geo) -> Geo:
    """Every output unit sees everything the input saw."""
    return _flat(geo.span, geo.span, geo.reach)


def _joined_reach(geos: Sequence[Geo]) -> Intervals:
    return tuple(
        (min(g.reach[a][0] for g in geos), max(g.reach[a][1] for g in geos))
        for a in range(geos[0].axes)
    )


# ---- geometry propagation -----------------------------------------------------------------------


def _spatial_sizes(tensor: Tensor, axes: int) -> tuple[int, ...]:
    return tuple(int(s) for s in tensor.shape[tensor.dim() - axes :]) if axes else ()


def _through_window_uneven(geo: Geo, window: Window, out: Tensor) -> Geo:
    """A window over a non-uniform grid: each output unit sees the union of the windows of the
    input units it reads (padding positions add nothing)."""
    assert geo.units is not None
    if window.transposed or len(window.kernel) < geo.axes:
        return _global(geo)
    skip = len(window.kernel) - geo.axes
    sizes_out = _spatial_sizes(out, geo.axes)
    units = []
    for axis, (windows, o) in enumerate(zip(geo.units, sizes_out, strict=True)):
        w = axis + skip
        kernel, stride = window.kernel[w], window.stride[w]
        padding, dilation = window.padding[w], window.dilation[w]
        seen = []
        for k in range(o):
            read = [k * stride - padding + t * dilation for t in range(kernel)]
            inside = [windows[i] for i in read if 0 <= i < len(windows)]
            if not inside:
                return _global(geo)
            seen.append((min(lo for lo, _ in inside), max(hi for _, hi in inside)))
        units.append(tuple(seen))
    return _from_intervals(units, tuple(float(len(w)) for w in geo.units), geo.reach)


def _through_window(geo: Geo, window: Window, out: Tensor) -> Geo:
    if geo.units is not None:
        return _through_window_uneven(geo, window, out)
    if geo.jump is None or geo.start is None:
        return _global(geo)
    # A window with fewer axes than the grid acts on the last ones (a 1-d pool on an unsqueezed
    # 1-d signal); with more (LRN's 3-d pool across channels) only the last ones are spatial.
    used = min(geo.axes, len(window.kernel))
    skip = geo.axes - used
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    for axis in range(skip, geo.axes):
        w = axis - skip + len(window.kernel) - used
        span, stride, padding = window.span[w], window.stride[w], window.padding[w]
        if window.transposed:
            # Each output unit gathers from ceil(E / S) neighbouring input units.
            reach = math.ceil(span / stride) - 1
            start[axis] = start[axis] + jump[axis] * (padding - (span - 1) / 2) / stride
            rf[axis] = rf[axis] + reach * jump[axis]
            jump[axis] = jump[axis] / stride
        else:
            start[axis] = start[axis] + ((span - 1) / 2 - padding) * jump[axis]
            rf[axis] = rf[axis] + (span - 1) * jump[axis]
            jump[axis] = jump[axis] * stride
    return _grid(tuple(rf), tuple(jump), tuple(start), _spatial_sizes(out, geo.axes), geo.reach)


def adaptive_windows(n: int, o: int) -> list[tuple[int, int]]:
    """torch's adaptive pooling windows of n inputs to o outputs: [start, end) per output,
    start = floor(i n / o), end = ceil((i + 1) n / o) (aten/src/ATen/native/AdaptivePooling.h)."""
    return [((i * n) // o, -((-(i + 1) * n) // o)) for i in range(o)]


def _through_adaptive(geo: Geo, source: Tensor, out: Tensor) -> Geo:
    """Adaptive pooling: each output unit sees the union of the windows of its input units."""
    sizes_in = _spatial_sizes(source, geo.axes)
    sizes_out = _spatial_sizes(out, geo.axes)
    inputs = _intervals(geo, sizes_in)
    if inputs is None:
        return _global(geo)
    units = tuple(
        tuple(
            (min(lo for lo, _ in windows[a:b]), max(hi for _, hi in windows[a:b]))
            for a, b in adaptive_windows(n, o)
        )
        for windows, n, o in zip(inputs, sizes_in, sizes_out, strict=True)
    )
    # One output unit on an axis: as a global pool, its "jump" is the whole axis.
    single = tuple(
        (geo.jump[a] if geo.jump is not None else 1.0) * n for a, n in enumerate(sizes_in)
    )
    return _from_intervals(units, single, geo.reach)


def _through_reduction(geo: Geo, source: Tensor, out: Tensor, dims: set[int] | None) -> Geo:
    """A mean / sum / max over some dims: a window as large as the axis on each spatial one."""
    first_spatial = source.dim() - geo.axes
    reduced = set(range(source.dim())) if dims is None else dims
    spatial_reduced = reduced & set(range(first_spatial, source.dim()))
    if not spatial_reduced:
        # Only channels (or batch) reduced: the grid is intact if the spatial dims stay last.
        same = _spatial_sizes(out, geo.axes) == _spatial_sizes(source, geo.axes)
        return geo if same else _flat(geo.rf, geo.span, geo.reach)
    if geo.jump is None or geo.start is None:
        return _global(geo)
    rf, jump, start = list(geo.rf), list(geo.jump), list(geo.start)
    sizes = _spatial_sizes(source, geo.axes)
    for axis in range(geo.axes):
        if first_spatial + axis in spatial_reduced:
            n = sizes[axis]
            start[axis] += (n - 1) / 2 * jump[axis]
            rf[axis] += (n - 1) * jump[axis]
            jump[axis] *= n
    kept = tuple(1 if first_spatial + a in spatial_reduced else s for a, s in enumerate(sizes))
    if out.dim() == source.dim() and _spatial_sizes(out, geo.axes) == kept:
        return _grid(tuple(rf), tuple(jump), tuple(start), kept, geo.reach)  # keepdim: 1-wide
    reduced_grid = _grid(tuple(rf), tuple(jump), tuple(start), kept, geo.reach)
    return _flat(tuple(rf), reduced_grid.span, reduced_grid.reach)


def _union(geos: Sequence[Geo], out: Tensor) -> Geo:
    """A join (add, mul, concatenation, ...): the union of the inputs' windows, per unit.

    Inputs on the same grid as the output contribute their windows around the same unit;
    broadcast or flattened inputs (a squeeze-and-excitation scale, a global vector) contribute
    everything they saw.
    """
    axes = geos[0].axes
    geos = [g for g in geos if g.axes == axes]
    sizes = _spatial_sizes(out, axes)
    if any(g.units is not None for g in geos):
        return _union_uneven(geos, sizes)
    grids = [
        g
        for g in geos
        if g.jump is not None
        and g.start is not None
        and tuple(round(s) for s in _unit_count(g)) == sizes
    ]
    if not grids:
        rf = tuple(max(g.rf[a] for g in geos) for a in range(axes))
        span = tuple(max(g.span[a] for g in geos) for a in range(axes))
        return _flat(rf, span, _joined_reach(geos))
    rf_list, start_list = [], []
    for a in range(axes):
        low = min(g.start[a] - (g.rf[a] - 1) / 2 for g in grids)  # type: ignore[index]
        high = max(g.start[a] + (g.rf[a] - 1) / 2 for g in grids)  # type: ignore[index]
        others = max((g.rf[a] for g in geos if g not in grids), default=0.0)
        rf_list.append(max(high - low + 1, others))
        start_list.append((low + high) / 2)
    jump = tuple(max(g.jump[a] for g in grids) for a in range(axes))  # type: ignore[index]
    return _grid(tuple(rf_list), jump, tuple(start_list), sizes, _joined_reach(geos))


def _union_uneven(geos: Sequence[Geo], sizes: tuple[int, ...]) -> Geo:
    """A join where some input is on a non-uniform grid: unit by unit, when all are on the
    output's grid; else everything any input saw."""
    per_input = [_intervals(g, sizes) for g in geos]
    if any(u is None or tuple(len(w) for w in u) != sizes for u in per_input):
        rf = tuple(max(g.span[a] for g in geos) for a in range(len(sizes)))
        return _flat(rf, rf, _joined_reach(geos))
    units = tuple(
        tuple(
            (
                min(u[a][i][0] for u in per_input if u is not None),
                max(u[a][i][1] for u in per_input if u is not None),
            )
            for i in range(n)
        )
        for a, n in enumerate(sizes)
    )
    return _from_intervals(units, tuple(float(n) for n in sizes), _joined_reach(geos))


def _unit_count(geo: Geo) -> Axes:
    """Units per axis on a grid: (span - rf) / jump + 1."""
    assert geo.jump is not None
    return tuple((s - r) / j + 1 for s, r, j in zip(geo.span, geo.rf, geo.jump, strict=True))


def _through_slice(geo: Geo, source: Tensor, out: Tensor, dim: int, begin: Any, step: int) -> Geo:
    """``x[:, :, ::2]``: every step-th unit from ``begin`` (option-A ResNet shortcuts)."""
    first_spatial = source.dim() - geo.axes
    if dim < first_spatial:
        return _union([geo], out) if geo.jump is not None else geo
    if geo.jump is None or geo.start is None:
        return geo
    axis = dim - first_spatial
    n = int(source.shape[dim])
    offset = 0 if begin is None else int(begin)
    offset = min(max(offset + n if offset < 0 else offset, 0), n)
    jump, start = list(geo.jump), list(geo.start)
    start[axis] += offset * jump[axis]
    jump[axis] *= step
    return _grid(geo.rf, tuple(jump), tuple(start), _spatial_sizes(out, geo.axes), geo.reach)


def _through_pad(geo: Geo, out: Tensor, pad: Sequence[int]) -> Geo:
    """Padding shifts unit 0 left by the left padding of each spatial axis (pad lists the last
    dim first, as F.pad does)."""
    if geo.jump is None or geo.start is None:
        return geo
    start = list(geo.start)
    for a in range(min(geo.axes, len(pad) // 2)):
        axis = geo.axes - 1 - a
        start[axis] -= int(pad[2 * a]) * geo.jump[axis]
    return _grid(geo.rf, geo.jump, tuple(start), _spatial_sizes(out, geo.axes), geo.reach)


_UPSAMPLE = re.compile(r"^_?upsample_(nearest|bilinear|linear|trilinear|bicubic)")
# Input units on each side an interpolated output unit reads beyond its nearest one.
_INTERPOLATION_REACH = {"nearest": 0, "linear": 1, "bilinear": 1, "trilinear": 1, "bicubic": 3}


def _through_upsample(geo: Geo, source: Tensor, out: Tensor, mode: str) -> Geo:
    if geo.jump is None or geo.start is None:
        return geo
    sizes_in = _spatial_sizes(source, geo.axes)
    sizes_out = _spatial_sizes(out, geo.axes)
    reach = _INTERPOLATION_REACH[mode]
    rf, jump = list(geo.rf), list(geo.jump)
    for axis, (n, o) in enumerate(zip(sizes_in, sizes_out, strict=True)):
        rf[axis] += reach * jump[axis]
        jump[axis] *= n / o
    return _grid(tuple(rf), tuple(jump), geo.start, sizes_out, geo.reach)


def propagate(
    func: Any,
    args: Sequence[Any],
    kwargs: dict[str, Any],
    inputs: Sequence[tuple[Tensor, Geo]],
    outputs: Sequence[Tensor],
) -> Geo:
    """The geometry of the op's outputs, from its data inputs' (those derived from the model
    input; parameters and constants have none). All outputs of one op share it."""
    name = _name(func)
    source, geo = inputs[0]
    out = outputs[0]
    window = window_of(func, args, kwargs)
    if window is not None:
        return _through_window(geo, window, out)
    if "adaptive" in name and "pool" in name:
        return _through_adaptive(geo, source, out)
    if name in _REDUCTIONS:
        overload_dims = "dim" in _arguments(func)
        dims = _dims(_arg(func, args, kwargs, "dim"), source.dim()) if overload_dims else None
        if name in ("max", "min") and not overload_dims:
            dims = None
        return _through_reduction(geo, source, out, dims)
    if name in _MIXING_DIM:
        dim = int(_arg(func, args, kwargs, "dim") or 0) % source.dim()
        return _global(geo) if dim >= source.dim() - geo.axes else _union([geo], out)
    if name in _CONTRACTIONS or name.startswith("_scaled_dot_product"):
        # A matrix product mixes whole rows: without knowing which dims hold positions, every
        # output unit is taken to see everything its operands saw (an upper bound).
        seen = tuple(max(g.span[a] for _, g in inputs) for a in range(geo.axes))
        return _flat(seen, seen, _joined_reach([g for _, g in inputs if g.axes == geo.axes]))
    if name == "slice":
        dim = int(_arg(func, args, kwargs, "dim") or 0) % source.dim()
        step = int(_arg(func, args, kwargs, "step") or 1)
        return _through_slice(geo, source, out, dim, _arg(func, args, kwargs, "start"), step)
    if name == "constant_pad_nd" or name.startswith(("reflection_pad", "replication_pad")):
        pad = _arg(func, args, kwargs, "pad") or _arg(func, args, kwargs, "padding")
        return _through_pad(geo, out, pad)
    upsample = _UPSAMPLE.match(name)
    if upsample:
        return _through_upsample(geo, source, out, upsample.group(1))
    known = _is_free(func)
    same_grid = out.dim() == source.dim() and _spatial_sizes(out, geo.axes) == _spatial_sizes(
        source, geo.axes
    )
    if same_grid and known:
        return _union([g for _, g in inputs], out)
    if known and (name in _REARRANGE or func.is_view):
        rf = tuple(max(g.rf[a] for _, g in inputs) for a in range(geo.axes))
        span = tuple(max(g.span[a] for _, g in inputs) for a in range(geo.axes))
        return _flat(rf, span, _joined_reach([g for _, g in inputs if g.axes == geo.axes]))
    # Anything else (an op we know nothing about, or a free op that changes the shape in ways
    # not modelled here) may mix positions: assume it does (an upper bound).
    return _global(geo)
