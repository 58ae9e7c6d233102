"""Small text-formatting helpers shared by the CLI, the docs generator and the layer tables."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence

__all__ = ["closest_names", "did_you_mean", "human_count", "text_table"]


def closest_names(name: str, known: Iterable[str], n: int = 3) -> list[str]:
    """Up to ``n`` known names close to ``name``: those that extend it first ("lenet" -> lenet5,
    lenet5_modern), then the most similar (difflib ratio >= 0.5)."""
    known = list(known)
    extending = sorted(k for k in known if k.startswith(name))
    similar = difflib.get_close_matches(name, known, n=n, cutoff=0.5)
    return list(dict.fromkeys([*extending, *similar]))[:n]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """ "; did you mean a, b?" for the names close to ``name``, or "" when none is: the one
    suggestion format of every unknown-name error (models, layers, traced operations)."""
    close = closest_names(name, known)
    return f"; did you mean {', '.join(close)}?" if close else ""


def human_count(n: int | float | None, digits: int = 2) -> str:
    """1_814_000_000 -> '1.81G', 61_706 -> '61.71K', None -> '-'."""
    if n is None:
        return "-"
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.{digits}f}{suffix}"
    return f"{n:g}" if isinstance(n, float) else str(n)


def text_table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    """An aligned plain-text table; ``right[i]`` right-aligns column i (numbers)."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(w) if r else cell.ljust(w)
            for cell, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(r) for r in rows)])
