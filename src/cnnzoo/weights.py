"""Loading local checkpoints: torchvision ``.pth`` files and cnnzoo's own.

Nothing here downloads. ``torch.load(weights_only=True)`` means a checkpoint can hold tensors and
plain containers but never run code when loaded.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from torch import Tensor, nn

__all__ = ["LoadReport", "WeightsMismatchError", "load_weights", "read_state_dict"]

# Wrappers that prefix every key: DistributedDataParallel and torch.compile.
_WRAPPER_PREFIXES = ("module.", "_orig_mod.")


class WeightsMismatchError(ValueError):
    """The checkpoint's keys or shapes do not match the model."""


class LoadReport(NamedTuple):
    """What ``load_weights`` did not load (all empty after a strict load)."""

    missing: list[str]  # in the model, not in the checkpoint
    unexpected: list[str]  # in the checkpoint, not in the model
    mismatched: list[str]  # in both with different shapes: "key: checkpoint (..) vs model (..)"
    skipped_head: list[str]  # left as initialised because drop_head=True


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """The state_dict in a checkpoint file, with DDP / torch.compile prefixes stripped.

    Accepts a bare state_dict, or a dict holding it under ``"model"`` (cnnzoo's trainer) or
    ``"state_dict"`` (a common convention).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    from cnnzoo.train.checkpoint_validation import read_checkpoint

    # bounded like every checkpoint read (#13): zip entries held to the file's size, refused
    # globals named, junk in one line
    loaded = read_checkpoint(path, "weights file", "a state_dict saved with torch.save")
    state = loaded
    if isinstance(loaded, Mapping):
        for key in ("model", "state_dict"):
            if isinstance(loaded.get(key), Mapping):
                state = loaded[key]
                break
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, Tensor) for k, v in state.items()
    ):
        raise ValueError(
            f"{path} holds no state_dict: expected a mapping of parameter names to tensors, "
            "or a checkpoint with one under 'model' or 'state_dict'"
        )
    return {_strip_wrappers(k): v for k, v in state.items()}


def _strip_wrappers(key: str) -> str:
    stripped = True
    while stripped:
        stripped = False
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, stripped = key[len(prefix) :], True
    return key


def _head_prefixes(model: nn.Module) -> list[str]:
    """Module-name prefixes of the classifier(s) ``drop_head`` leaves out."""
    get_classifier = getattr(model, "get_classifier", None)
    if get_classifier is None:
        raise ValueError(
            f"drop_head=True needs a model with get_classifier(); {type(model).__name__} has none"
        )
    head = get_classifier()
    num_classes = getattr(model, "num_classes", None)
    prefixes = []
    for name, module in model.named_modules():
        # The main classifier, and auxiliary classifiers (GoogLeNet/Inception aux heads) that
        # also end in num_classes outputs.
        is_aux_classifier = isinstance(module, nn.Linear) and module.out_features == num_classes
        if name and (module is head or is_aux_classifier):
            prefixes.append(name + ".")
    return prefixes


def load_weights(
    model: nn.Module, path: str | Path, *, strict: bool = True, drop_head: bool = False
) -> LoadReport:
    """Load a local checkpoint into ``model`` in place.

    ``strict=True`` raises ``WeightsMismatchError`` listing missing, unexpected and mis-shaped keys
    if the checkpoint does not fit exactly. ``strict=False`` loads every key that fits and reports
    the rest. ``drop_head=True`` loads everything but the classifier (and aux classifiers), which
    stay as initialised: the way to fine-tune on a different ``num_classes``.
    """
    checkpoint = read_state_dict(path)
    upgrade = getattr(model, "upgrade_state_dict", None)  # a model's own legacy key names
    if upgrade is not None:
        checkpoint = upgrade(checkpoint)
    own = model.state_dict()
    head = _head_prefixes(model) if drop_head else []
    skipped_head = [k for k in checkpoint if any(k.startswith(p) for p in head)]
    wanted = {k: v for k, v in checkpoint.items() if k not in skipped_head}

    # Files saved before BatchNorm counted batches (torchvision's older .pth files) lack
    # num_batches_tracked; BatchNorm fills it in itself, so it is not missing.
    missing = [
        k
        for k in own
        if k not in wanted
        and not k.endswith(".num_batches_tracked")
        and not any(k.startswith(p) for p in head)
    ]
    unexpected = [k for k in wanted if k not in own]
    mismatched = [
        f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
        for k, v in wanted.items()
        if k in own and v.shape != own[k].shape
    ]
    if strict and (missing or unexpected or mismatched):
        raise WeightsMismatchError(_mismatch_message(path, missing, unexpected, mismatched))
    fitting = {k: v for k, v in wanted.items() if k in own and v.shape == own[k].shape}
    model.load_state_dict(fitting, strict=False)
    return LoadReport(missing, unexpected, mismatched, skipped_head)


def _mismatch_message(
    path: str | Path, missing: list[str], unexpected: list[str], mismatched: list[str]
) -> str:
    def listing(label: str, keys: list[str], shown: int = 8) -> str:
        more = f", ... ({len(keys) - shown} more)" if len(keys) > shown else ""
        return f"{label} ({len(keys)}): {', '.join(keys[:shown])}{more}"

    parts = [
        listing(label, keys)
        for label, keys in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("mis-shaped", mismatched),
        )
        if keys
    ]
    hint = " (different num_classes? use drop_head=True)" if mismatched else ""
    return f"checkpoint {path} does not fit the model: " + "; ".join(parts) + hint
