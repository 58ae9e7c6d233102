"""Colours of the diagram, shared by the SVG and PNG writers (one legend)."""

from __future__ import annotations

__all__ = ["FILL", "LEGEND", "STROKE"]

# (fill, stroke) per node style: pale fills so the black labels read well in print.
FILL = {
    "input": "#eeeeee",
    "conv": "#d6e6f7",
    "linear": "#d9f0d3",
    "norm": "#f3f3f3",
    "act": "#f3f3f3",
    "pool": "#fde4c8",
    "concat": "#e8dcf3",
    "join": "#ffffff",
    "block": "#fff7cc",
    "other": "#f6f6f6",
}
STROKE = {
    "input": "#666666",
    "conv": "#2f6fb0",
    "linear": "#3a8a2e",
    "norm": "#888888",
    "act": "#888888",
    "pool": "#c46b12",
    "concat": "#7a4ea8",
    "join": "#444444",
    "block": "#b39200",
    "other": "#888888",
}
LEGEND = [
    ("conv", "convolution"),
    ("pool", "pooling"),
    ("linear", "linear"),
    ("concat", "concat"),
    ("block", "block"),
]
FRAME_STROKE = "#9aa5b1"
EDGE = "#555555"
