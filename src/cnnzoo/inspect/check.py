"""``check_geometry``: the layers of a model where the conv arithmetic drops input.

The arithmetic itself is pure (``arithmetic.py``); this runs a trace to find the layers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Literal

from cnnzoo.inspect.arithmetic import explain_conv_arithmetic

if TYPE_CHECKING:
    from torch import nn


@dataclass(frozen=True)
class GeometryIssue:
    """A layer whose arithmetic drops input: ``dropped`` rows and columns are never read.

    ``kind`` is ``"truncation"``, or ``"failure"`` for the layer where the trace stopped (then
    ``message`` says why and the size fields are empty).
    """

    name: str
    type: str
    kind: Literal["truncation", "failure"]
    input_hw: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    exact: tuple[Fraction, ...]  # the exact output size per axis
    output: tuple[int, ...]
    dropped: tuple[int, ...]  # input rows, columns never read (padding too if asked)
    message: str

    def __str__(self) -> str:
        return f"{self.name} ({self.type}): {self.message}"


def _issue_for_row(row: Any, include_padding: bool) -> GeometryIssue | None:
    """The truncation in one layer-table row (a conv or pool), or None if it reads everything."""
    if row.kernel is None or row.input_hwc is None or row.ceil_mode:
        return None  # not a sliding window, or a ceil-mode pool (it rounds up, dropping nothing)
    axes = len(row.kernel)
    if len(row.input_hwc) <= axes:
        return None
    sizes = list(row.input_hwc[:axes])
    per_axis = [
        explain_conv_arithmetic(s, k, st, p, d)
        for s, k, st, p, d in zip(
            sizes, row.kernel, row.stride, row.padding, row.dilation, strict=True
        )
    ]
    dropped = tuple(a.dropped if include_padding else a.dropped_data for a in per_axis)
    if not any(dropped):
        return None
    if axes == 2 and per_axis[0] == per_axis[1]:
        formulas = per_axis[0].formula()
        what = "row and column" if dropped[0] == 1 else "rows and columns"
        lost = f"{dropped[0]} {what}"
    else:
        names = ("row", "column") if axes == 2 else tuple(f"axis-{i} step" for i in range(axes))
        formulas = "; ".join(a.formula() for a in per_axis if not a.is_exact)
        lost = " and ".join(
            f"{n} {name}{'s' if n > 1 else ''}" for n, name in zip(dropped, names, strict=True) if n
        )
    fits = sorted({s for a in per_axis if not a.is_exact for s in a.sizes})
    size_text = "x".join(map(str, sizes))
    return GeometryIssue(
        name=row.name,
        type=row.type,
        kind="truncation",
        input_hw=tuple(sizes),
        kernel=tuple(row.kernel),
        stride=tuple(row.stride),
        padding=tuple(row.padding),
        dilation=tuple(row.dilation),
        exact=tuple(a.exact for a in per_axis),
        output=tuple(a.floor for a in per_axis),
        dropped=dropped,
        message=(
            f"{formulas}, floored to {'x'.join(str(a.floor) for a in per_axis)}: the last "
            f"{lost} of its {'padded ' if include_padding else ''}{size_text} input are never "
            f"read (input sizes that fit here: {', '.join(map(str, fits))})"
        ),
    )


def check_geometry(
    model: str | nn.Module,
    input_size: Sequence[int] | None = None,
    *,
    include_padding: bool = False,
    **model_kwargs: Any,
) -> list[GeometryIssue]:
    """Every layer where the conv arithmetic truncates: input rows or columns silently dropped.

    ``model`` is a registered name or an ``nn.Module``; ``input_size`` is (C, H, W) (default:
    the registered model's). The model's own input check is bypassed so that the convolutional
    layers are examined even at a size the classifier refuses (e.g. ``alexnet_original`` at
    224x224: its first conv reads (224 - 11) / 4 + 1 = 54.25 positions). If the trace stops in
    a later layer, the last issue (``kind="failure"``) names that layer and the error.

    Only input data counts as dropped; ``include_padding=True`` also lists layers that skip
    nothing but padding (e.g. a 3x3 stride-2 pad-1 conv on an even size).
    """
    from cnnzoo.inspect.collect import trace_rows  # the trace needs torch; arithmetic does not

    rows, failure = trace_rows(model, input_size, **model_kwargs)
    issues = [issue for row in rows if (issue := _issue_for_row(row, include_padding)) is not None]
    if failure is not None:
        layer, layer_type, message = failure
        issues.append(
            GeometryIssue(
                name=layer,
                type=layer_type,
                kind="failure",
                input_hw=(),
                kernel=(),
                stride=(),
                padding=(),
                dilation=(),
                exact=(),
                output=(),
                dropped=(),
                message=f"the trace stopped here: {message}",
            )
        )
    return issues
