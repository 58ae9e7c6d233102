"""MAC rules: the multiply-accumulates of one aten op, or of a module that counts itself.

The convention (``MACS_CONVENTION``): weight multiply-accumulates of convolutions, linear layers
and other matrix products, no bias adds, norms, activations or pooling. Ops with arithmetic
that no rule here (nor torch's own flop counter) can count are reported as uncounted.

A module whose dense forward runs more arithmetic than the model defines (LeNet-5's sparse C3
run as a dense conv) implements :class:`CountsOwnMacs`; the tracer asks it, generic code knows
no model. ``register_mac_rule`` does the same for a module type one cannot edit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from cnnzoo.inspect.ops import _CONVOLUTIONS, _REDUCTIONS, _arg, _first_tensor, _name, _numel

# Ops that are free under the convention (no weight multiply-accumulates): norms, pooling,
# reductions, copies, joins, shape changes, creation. Pointwise ops (activations, residual adds,
# bias adds, scaling) and views are recognised by their aten tags instead.
_FREE = {
    *_REDUCTIONS,  # the reductions geometry knows too (ops.py): one list
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
    "_native_batch_norm_legit_functional",
    "batch_norm",
    "_batch_norm_impl_index",
    "native_layer_norm",
    "layer_norm",
    "native_group_norm",
    "group_norm",
    "instance_norm",
    "rms_norm",
    "_fused_rms_norm",
    "softmax",
    "_softmax",
    "_safe_softmax",
    "log_softmax",
    "_log_softmax",
    "cumsum",
    "sort",
    "topk",
    "clone",
    "contiguous",
    "_to_copy",
    "copy",
    "empty",
    "empty_like",
    "empty_strided",
    "zeros",
    "zeros_like",
    "ones",
    "ones_like",
    "full",
    "full_like",
    "new_zeros",
    "new_ones",
    "new_empty",
    "new_empty_strided",
    "new_full",
    "scalar_tensor",
    "arange",
    "linspace",
    "eye",
    "fill",
    "zero",
    "cat",
    "stack",
    "constant_pad_nd",
    "pad",
    "index",
    "index_select",
    "index_copy",
    "index_put",
    "index_fill",
    "gather",
    "scatter",
    "scatter_add",
    "scatter_reduce",
    "masked_fill",
    "masked_scatter",
    "masked_select",
    "_unsafe_view",
    "reshape",
    "repeat",
    "repeat_interleave",
    "flip",
    "roll",
    "tril",
    "triu",
    "native_dropout",
    "dropout",
    "feature_dropout",
    "alpha_dropout",
    "bernoulli",
    "rand",
    "rand_like",
    "randn",
    "randn_like",
    "randint",
    "uniform",
    "normal",
    "lift_fresh",
    "lift_fresh_copy",
    "resize",
    "set",
    "im2col",
    "col2im",
    "pixel_shuffle",
    "pixel_unshuffle",
    "channel_shuffle",
    "native_channel_shuffle",
    "embedding",
    "one_hot",
    "split_with_sizes_copy",
    "unbind_copy",
    "view_copy",
    "expand_copy",
    "permute_copy",
    "slice_copy",
    "select_copy",
    "unsqueeze_copy",
    "squeeze_copy",
    "t_copy",
    "transpose_copy",
    "detach_copy",
    "alias_copy",
    "_local_scalar_dense",
    "sym_size",
    "sym_stride",
    "sym_numel",
    "sym_storage_offset",
    "_assert_async",
    "_assert_scalar",
    "_functional_assert_async",
}
_FREE_PATTERN = re.compile(
    r"^(max_pool|avg_pool|_adaptive_avg_pool|adaptive_avg_pool|adaptive_max_pool|"
    r"fractional_max_pool|lp_pool|upsample_|_upsample_|reflection_pad|replication_pad|"
    r"_pad_|_reshape)"
)


def _is_free(func: Any) -> bool:
    if torch.Tag.pointwise in func.tags or func.is_view:
        return True
    name = _name(func)
    return name in _FREE or bool(_FREE_PATTERN.match(name))


def _attention_macs(query: Tensor, key: Tensor, value: Tensor) -> int:
    # softmax(Q K^T) V: L x S scores of E-long dot products, then L x Ev outputs of S-long sums.
    batch = _numel(query.shape[:-2])
    length, embed = int(query.shape[-2]), int(query.shape[-1])
    source = int(key.shape[-2])
    return batch * length * source * (embed + int(value.shape[-1]))


def count_macs(func: Any, args: Sequence[Any], kwargs: dict[str, Any], out: Any) -> int | None:
    """Multiply-accumulates of one aten op under the table's convention; None if it carries
    arithmetic that no rule (ours or torch's flop counter) can count."""
    name = _name(func)
    if name in _CONVOLUTIONS:
        weight = _arg(func, args, kwargs, "weight")
        batch_input = args[0]
        transposed = bool(_arg(func, args, kwargs, "transposed"))
        # Each output unit (or, transposed, each input unit) meets every weight of its group.
        positions = batch_input.shape if transposed else _first_tensor(out).shape
        return int(positions[0]) * _numel(positions[2:]) * int(weight.numel())
    if name in ("mm", "addmm"):
        a, b = (args[0], args[1]) if name == "mm" else (args[1], args[2])
        return int(a.shape[0]) * int(a.shape[1]) * int(b.shape[1])
    if name in ("bmm", "baddbmm"):
        a, b = (args[0], args[1]) if name == "bmm" else (args[1], args[2])
        return int(a.shape[0]) * int(a.shape[1]) * int(a.shape[2]) * int(b.shape[2])
    if name in ("mv", "addmv"):
        a = args[0] if name == "mv" else args[1]
        return int(a.shape[0]) * int(a.shape[1])
    if name in ("dot", "vdot"):
        return int(args[0].numel())
    if name in ("addr", "outer", "ger"):
        a, b = (args[1], args[2]) if name == "addr" else (args[0], args[1])
        return int(a.numel()) * int(b.numel())
    if name.startswith("_scaled_dot_product") and "backward" not in name:
        return _attention_macs(args[0], args[1], args[2])
    from torch.utils.flop_counter import flop_registry

    packet = func.overloadpacket
    if packet in flop_registry:
        return int(flop_registry[packet](*args, **kwargs, out_val=out)) // 2
    if _is_free(func):
        return 0
    return None


# ---- modules that count themselves ---------------------------------------------------------


@runtime_checkable
class CountsOwnMacs(Protocol):
    """A module whose forward runs more arithmetic than the model defines (a sparse connection
    table run as a dense convolution with zero weights) says what one call costs. The tracer
    then takes this number for the call instead of summing its ops."""

    def table_macs(self, input: Tensor, output: Tensor) -> int:
        """MACs of one call under ``MACS_CONVENTION``, batch included."""
        ...


MacRule = Callable[[nn.Module, Tensor, Tensor], int]
_MAC_RULES: dict[type[nn.Module], MacRule] = {}


def register_mac_rule(module_type: type[nn.Module], rule: MacRule) -> None:
    """Count a module type's MACs with ``rule(module, input, output)`` instead of its ops.

    For module classes one cannot give a ``table_macs`` method (:class:`CountsOwnMacs`).
    """
    _MAC_RULES[module_type] = rule


def module_macs(module: nn.Module, input: Tensor, output: Tensor) -> int | None:
    """A module call's MACs when the module counts itself (or has a registered rule), else None."""
    for cls in type(module).__mro__:
        if cls in _MAC_RULES:
            return int(_MAC_RULES[cls](module, input, output))
    if isinstance(module, CountsOwnMacs):
        return int(module.table_macs(input, output))
    return None
