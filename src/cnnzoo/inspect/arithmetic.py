"""Conv arithmetic: the output size of a convolution or pooling window, and where it truncates.

One spatial axis of a conv or pool maps ``W`` input pixels to ``(W - D(F - 1) - 1 + 2P) / S + 1``
outputs (kernel ``F``, stride ``S``, padding ``P``, dilation ``D``; Dumoulin & Visin 2016,
"A guide to convolution arithmetic", relationship 6 and its dilated form). When that is not an
integer, PyTorch floors it (``nn.Conv2d``, pooling with ``ceil_mode=False``) and the last rows or
columns of the padded input are never read, silently; pooling with ``ceil_mode=True`` rounds up,
letting the last window hang over the edge as long as it starts inside the input or left padding.

``check_geometry`` (``check.py``) runs the layer table of a model and lists every layer where
real input (not padding) is dropped that way, e.g. the original AlexNet's first conv at 224.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING, overload

if TYPE_CHECKING:
    pass

__all__ = [
    "ConvArithmetic",
    "GeometryError",
    "conv_output_size",
    "explain_conv_arithmetic",
    "fitting_paddings",
    "pool_output_size",
]

IntOrSeq = int | Sequence[int]


class GeometryError(ValueError):
    """An output size that is not a whole number (with ``strict=True``) or not positive.

    ``arithmetic`` holds the facts (the formula with numbers, the exact value, the paddings that
    make it exact) so callers can print more than the one-line message.
    """

    def __init__(self, message: str, arithmetic: ConvArithmetic | None = None) -> None:
        super().__init__(message)
        self.arithmetic = arithmetic


def effective_kernel(kernel: int, dilation: int = 1) -> int:
    """The span of a dilated kernel: ``D(F - 1) + 1`` input pixels."""
    return dilation * (kernel - 1) + 1


def fitting_paddings(size: int, kernel: int, stride: int = 1, dilation: int = 1) -> list[int]:
    """Symmetric paddings up to half the window that make the output exact.

    Half the window is "same" padding for odd kernels and PyTorch's limit for pooling; more
    only adds windows that read mostly padding. Empty when parity rules it out: 2P is even, so
    an even stride needs ``W - D(F - 1) - 1`` even.
    """
    span = effective_kernel(kernel, dilation)
    return [
        p
        for p in range(span // 2 + 1)
        if size + 2 * p >= span and (size + 2 * p - span) % stride == 0
    ]


def _fitting_sizes(size: int, kernel: int, stride: int, padding: int, dilation: int) -> list[int]:
    """The nearest input sizes below and above ``size`` for which the arithmetic is exact."""
    span = effective_kernel(kernel, dilation)
    below = size - (size + 2 * padding - span) % stride
    sizes = [below] if below + 2 * padding >= span and below != size else []
    return [*sizes, below + stride]


@dataclass(frozen=True)
class ConvArithmetic:
    """Everything about one axis of one conv or pooling window, for printing and for tests."""

    size: int
    kernel: int
    stride: int
    padding: int
    dilation: int
    exact: Fraction  # (W - D(F-1) - 1 + 2P) / S + 1, before rounding
    floor: int  # what nn.Conv2d and pooling with ceil_mode=False produce
    ceil: int  # what pooling with ceil_mode=True produces (last window starts inside)
    paddings: tuple[int, ...]  # symmetric paddings that make it exact
    sizes: tuple[int, ...]  # the nearest exact input sizes at this padding

    @property
    def is_exact(self) -> bool:
        return self.exact.denominator == 1

    @property
    def tail(self) -> int:
        """Rows of the padded input after the end of the last window (floor mode)."""
        span = effective_kernel(self.kernel, self.dilation)
        return self.size + 2 * self.padding - ((self.floor - 1) * self.stride + span)

    @property
    def gap(self) -> int:
        """Rows skipped between consecutive windows anyway (a stride larger than the window)."""
        return max(0, self.stride - effective_kernel(self.kernel, self.dilation))

    @property
    def dropped(self) -> int:
        """Rows of the padded input cut off by the rounding: the tail beyond the regular gap.

        A 1x1 stride-2 conv on 56 rows reads 0, 2, ..., 54: row 55 is skipped like every odd
        row, so nothing is dropped although (56 - 1) / 2 + 1 = 28.5.
        """
        return max(0, self.tail - self.gap)

    @property
    def dropped_data(self) -> int:
        """Of ``dropped``, the rows that are input and not padding."""
        return max(0, self.dropped - self.padding)

    def formula(self) -> str:
        """The formula with the numbers in, e.g. ``(10 - 3 + 2*0) / 2 + 1 = 4.5``."""
        if self.dilation == 1:
            head = f"({self.size} - {self.kernel} + 2*{self.padding})"
        else:
            head = f"({self.size} - {self.dilation}*({self.kernel} - 1) - 1 + 2*{self.padding})"
        return f"{head} / {self.stride} + 1 = {_fraction_text(self.exact)}"

    def to_text(self) -> str:
        """A few lines for a learner: formula, value, what PyTorch does, what would fit."""
        dilated = self.dilation != 1
        span = effective_kernel(self.kernel, self.dilation)
        symbolic = "(W - D(F - 1) - 1 + 2P) / S + 1" if dilated else "(W - F + 2P) / S + 1"
        lines = [f"output size = {symbolic}", f"            = {self.formula()}"]
        if self.floor < 1:
            lines.append(
                f"the window is larger than the padded input: nn.Conv2d and pooling give no "
                f"output; only pooling with ceil_mode=True gives {self.ceil}, one window hanging "
                "over the edge"
            )
        elif self.is_exact:
            lines.append(
                f"an integer: output {self.floor}; the last window ends exactly at the edge of "
                "the padded input"
            )
        elif self.dropped == 0:
            lines.append(f"not an integer: PyTorch floors it to {self.floor},")
            lines.append(
                f"  but the {self.tail} row{'s' if self.tail > 1 else ''} left after the last "
                f"window {'are' if self.tail > 1 else 'is'} no more than the {self.gap} the "
                "stride skips between windows anyway: nothing extra is lost"
            )
        else:
            n = self.dropped
            what = f"{n} row{'s' if n > 1 else ''}/column{'s' if n > 1 else ''}"
            if self.dropped_data == n:
                where = "of the input"
            elif self.dropped_data == 0:
                where = "of the padded input (padding only, no data lost)"
            else:
                where = f"of the padded input ({self.dropped_data} of them input data)"
            lines.append(
                f"not an integer: PyTorch floors it (nn.Conv2d, pooling with ceil_mode=False) "
                f"to {self.floor},"
            )
            lines.append(f"  so the last {what} {where} {'are' if n > 1 else 'is'} never read;")
            if self.ceil > self.floor:
                lines.append(
                    f"  pooling with ceil_mode=True rounds up to {self.ceil} "
                    "(the last window hangs over the edge)"
                )
            else:
                lines.append(
                    f"  pooling with ceil_mode=True also gives {self.floor} (a window starting "
                    "in the right padding is dropped)"
                )
        if self.paddings:
            fits = ", ".join(
                f"{p} (-> {(self.size + 2 * p - span) // self.stride + 1})" for p in self.paddings
            )
            lines.append(f"paddings that fit exactly: {fits}")
        elif self.stride % 2 == 0 and (self.size - span) % 2 == 1:
            difference = "W - D(F - 1) - 1" if dilated else "W - F"
            lines.append(
                f"paddings that fit exactly: none ({difference} = {self.size - span} is odd, "
                f"the stride {self.stride} is even and 2P is always even)"
            )
        else:
            lines.append(f"paddings that fit exactly: none with 0 <= P <= {span // 2}")
        if not self.is_exact:
            sizes = ", ".join(
                f"{s} (-> {(s + 2 * self.padding - span) // self.stride + 1})" for s in self.sizes
            )
            lines.append(f"input sizes that fit at padding {self.padding}: {sizes}")
        return "\n".join(lines)


def _fraction_text(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    decimal = float(value)
    text = f"{decimal:.4f}".rstrip("0")
    return text if Fraction(text) == value else f"{text}... ({value})"


def explain_conv_arithmetic(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> ConvArithmetic:
    """The arithmetic of one axis, exact and rounded both ways.

    Raises ``ValueError`` for arguments out of range and :class:`GeometryError` when no rounding
    gives an output (the window does not fit in the padded input even with ceil_mode).
    """
    for label, value, least in (
        ("size", size, 1),
        ("kernel", kernel, 1),
        ("stride", stride, 1),
        ("padding", padding, 0),
        ("dilation", dilation, 1),
    ):
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise ValueError(f"{label} must be an integer >= {least}, got {value!r}")
    span = effective_kernel(kernel, dilation)
    numerator = size + 2 * padding - span
    exact = Fraction(numerator, stride) + 1
    floor = math.floor(exact)
    ceil = math.ceil(exact)
    # PyTorch's pooling rule: the last window must start inside the input or the left padding.
    if ceil > floor and (ceil - 1) * stride >= size + padding:
        ceil -= 1
    if ceil < 1:
        raise GeometryError(
            f"the window ({span} pixels) is larger than the padded input "
            f"({size} + 2*{padding} = {size + 2 * padding}): the output would be empty"
        )
    return ConvArithmetic(
        size=size,
        kernel=kernel,
        stride=stride,
        padding=padding,
        dilation=dilation,
        exact=exact,
        floor=floor,
        ceil=ceil,
        paddings=tuple(fitting_paddings(size, kernel, stride, dilation)),
        sizes=tuple(_fitting_sizes(size, kernel, stride, padding, dilation)),
    )


def _one_axis(
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    ceil_mode: bool,
    strict: bool,
    pooling: bool,
) -> int:
    arithmetic = explain_conv_arithmetic(size, kernel, stride, padding, dilation)
    if pooling and padding > kernel // 2:
        # PyTorch's pooling shape check compares with the kernel, not the dilated span.
        raise GeometryError(
            f"padding {padding} is more than half the pooling kernel ({kernel}): PyTorch "
            "refuses windows that could read only padding",
            arithmetic,
        )
    if (arithmetic.ceil if ceil_mode else arithmetic.floor) < 1:
        raise GeometryError(
            f"the window ({effective_kernel(kernel, dilation)} pixels) is larger than the padded "
            f"input ({size} + 2*{padding} = {size + 2 * padding}): the output would be empty",
            arithmetic,
        )
    if strict and not arithmetic.is_exact:
        fits = (
            "paddings that make it exact: " + ", ".join(map(str, arithmetic.paddings))
            if arithmetic.paddings
            else "no padding makes it exact"
        )
        rounded = (
            f"round up to {arithmetic.ceil}" if ceil_mode else f"floor it to {arithmetic.floor}"
        )
        raise GeometryError(
            f"{arithmetic.formula()} is not an integer: PyTorch would {rounded}; {fits}; "
            f"input sizes that fit: {' or '.join(map(str, arithmetic.sizes))}",
            arithmetic,
        )
    return arithmetic.ceil if ceil_mode else arithmetic.floor


def _per_axis(
    size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq,
    padding: IntOrSeq,
    dilation: IntOrSeq,
    ceil_mode: bool,
    strict: bool,
    pooling: bool,
) -> int | tuple[int, ...]:
    arguments = (size, kernel, stride, padding, dilation)
    if all(isinstance(a, int) for a in arguments):
        return _one_axis(
            size,  # type: ignore[arg-type]
            kernel,  # type: ignore[arg-type]
            stride,  # type: ignore[arg-type]
            padding,  # type: ignore[arg-type]
            dilation,  # type: ignore[arg-type]
            ceil_mode,
            strict,
            pooling,
        )
    lengths = {len(a) for a in arguments if not isinstance(a, int)}
    if len(lengths) != 1:
        raise ValueError(f"per-axis arguments must have the same length, got {arguments}")
    (axes,) = lengths
    expanded = [[a] * axes if isinstance(a, int) else list(a) for a in arguments]
    return tuple(
        _one_axis(s, k, st, p, d, ceil_mode, strict, pooling)
        for s, k, st, p, d in zip(*expanded, strict=True)
    )


@overload
def conv_output_size(
    size: int,
    kernel: int,
    stride: int = ...,
    padding: int = ...,
    dilation: int = ...,
    ceil_mode: bool = ...,
    strict: bool = ...,
) -> int: ...
@overload
def conv_output_size(
    size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq = ...,
    padding: IntOrSeq = ...,
    dilation: IntOrSeq = ...,
    ceil_mode: bool = ...,
    strict: bool = ...,
) -> int | tuple[int, ...]: ...
def conv_output_size(
    size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq = 1,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
    strict: bool = False,
) -> int | tuple[int, ...]:
    """Output size of a convolution: ``(W - D(F - 1) - 1 + 2P) / S + 1``, floored as PyTorch does.

    Integers give an integer; a sequence for any argument (one entry per axis, e.g. ``(H, W)``)
    gives a tuple. ``ceil_mode=True`` rounds up instead (the pooling rule; a convolution has no
    such option in PyTorch). ``strict=True`` raises :class:`GeometryError` when the value is not
    a whole number, showing the arithmetic and the paddings that would make it exact. An empty
    output always raises.

    >>> conv_output_size(224, 11, stride=4, padding=2)
    55
    >>> conv_output_size((224, 224), 7, stride=2, padding=3)
    (112, 112)
    """
    return _per_axis(size, kernel, stride, padding, dilation, ceil_mode, strict, pooling=False)


@overload
def pool_output_size(
    size: int,
    kernel: int,
    stride: int | None = ...,
    padding: int = ...,
    dilation: int = ...,
    ceil_mode: bool = ...,
    strict: bool = ...,
) -> int: ...
@overload
def pool_output_size(
    size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq | None = ...,
    padding: IntOrSeq = ...,
    dilation: IntOrSeq = ...,
    ceil_mode: bool = ...,
    strict: bool = ...,
) -> int | tuple[int, ...]: ...
def pool_output_size(
    size: IntOrSeq,
    kernel: IntOrSeq,
    stride: IntOrSeq | None = None,
    padding: IntOrSeq = 0,
    dilation: IntOrSeq = 1,
    ceil_mode: bool = False,
    strict: bool = False,
) -> int | tuple[int, ...]:
    """Output size of max or average pooling, with PyTorch's rules.

    ``stride`` defaults to the kernel size (as in ``nn.MaxPool2d``). With ``ceil_mode=True`` the
    size is rounded up, except that a last window starting beyond the input and its left padding
    is dropped (PyTorch's rule). Padding over half the window raises, as PyTorch does.

    >>> pool_output_size(112, 3, stride=2, ceil_mode=True)  # GoogLeNet's first pool
    56
    """
    return _per_axis(
        size,
        kernel,
        kernel if stride is None else stride,
        padding,
        dilation,
        ceil_mode,
        strict,
        pooling=True,
    )
