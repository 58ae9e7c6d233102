"""Exact layer tables and conv arithmetic: ``summary``, ``check_geometry``, ``conv_output_size``.

Facts are collected on the meta device (``collect``: ``meta`` -> ``trace`` with the per-op rules
of ``geometry``, ``macs``, ``shapes``, ``ops`` -> the dataclasses of ``rows``) and rendered by
pure functions (``render``); the conv arithmetic stands alone (``arithmetic``), and
``check_geometry`` (``check``) applies it to a trace.
"""

from cnnzoo.inspect.arithmetic import (
    ConvArithmetic,
    GeometryError,
    conv_output_size,
    explain_conv_arithmetic,
    pool_output_size,
)
from cnnzoo.inspect.check import GeometryIssue, check_geometry
from cnnzoo.inspect.collect import (
    MACS_CONVENTION,
    LayerRow,
    LayerTable,
    NotRun,
    UncountedOp,
    register_mac_rule,
    summary,
    total_macs,
)

__all__ = [
    "MACS_CONVENTION",
    "ConvArithmetic",
    "GeometryError",
    "GeometryIssue",
    "LayerRow",
    "LayerTable",
    "NotRun",
    "UncountedOp",
    "check_geometry",
    "conv_output_size",
    "explain_conv_arithmetic",
    "pool_output_size",
    "register_mac_rule",
    "summary",
    "total_macs",
]
