"""A model to trace on the meta device: built there, or a copy with meta twins of its tensors.

A registered name is built directly under ``torch.device("meta")`` with the random
initialisation skipped; a user's ``nn.Module`` is deep-copied with every parameter, buffer and
tensor attribute replaced by an empty meta twin (shared weights stay shared), so the user's
model is never modified, moved or hooked, whatever happens during the trace.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnzoo.registry import create_model

# ---- preparing a meta model -------------------------------------------------------------------

# In-place methods that change a tensor's metadata, not just its values: never skipped.
_METADATA_INPLACE = {
    "requires_grad_",
    "resize_",
    "resize_as_",
    "set_",
    "as_strided_",
    "squeeze_",
    "unsqueeze_",
    "t_",
    "transpose_",
    "swapdims_",
    "swapaxes_",
    "share_memory_",
    "detach_",
    "rename_",
    "retain_grad",
}


class _SkipMetaInit(TorchFunctionMode):
    """While building on meta, value-only in-place ops (``normal_``, ``uniform_``, ``fill_``,
    ``mul_``...) have nothing to write: skip them. Besides time, this avoids the first meta
    ``normal_`` importing torch._dynamo (several seconds) through its Python reference kernel."""

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: Sequence[Any] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        # nn.init functions arrive with everything in kwargs (``tensor=``), methods in args.
        target = args[0] if args else kwargs.get("tensor")
        if (
            name.endswith("_")
            and not name.startswith("_")
            and name not in _METADATA_INPLACE
            and isinstance(target, Tensor)
            and target.is_meta
        ):
            return target
        return func(*args, **kwargs)


def build_meta(name: str, **model_kwargs: Any) -> nn.Module:
    """A registered model on the meta device, without running its initialisation."""
    with torch.device("meta"), _SkipMetaInit():
        return create_model(name, **model_kwargs)


def _meta_twin(tensor: Tensor) -> Tensor:
    twin = torch.empty_like(tensor, device="meta")
    if isinstance(tensor, nn.Parameter):
        return nn.Parameter(twin, requires_grad=tensor.requires_grad)
    return twin


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose tensors are empty meta twins; the model is not touched.

    Seeding deepcopy's memo with the twins means no tensor data is ever copied, and a tensor
    reached twice (shared weights, tied modules) maps to the same twin.
    """
    memo: dict[int, Any] = {}
    for module in model.modules():
        tensors = itertools.chain(
            module._parameters.values(),
            module._buffers.values(),
            (v for v in vars(module).values() if isinstance(v, Tensor)),
        )
        for tensor in tensors:
            if tensor is not None and id(tensor) not in memo:
                memo[id(tensor)] = _meta_twin(tensor)
    try:
        return copy.deepcopy(model, memo)
    except Exception as error:
        raise ValueError(
            f"cannot copy {type(model).__name__} to trace it on the meta device: "
            f"{type(error).__name__}: {error}"
        ) from error
