"""What a checkpoint may ask for, checked before anything is built from it (#13).

``weights_only`` loading already keeps a checkpoint from running code. What it still trusts is
the checkpoint's *contents*: a ``num_classes`` of 10**12 in ``model_kwargs`` makes the model
builder allocate terabytes, a zip entry can decompress far past the file's size, a tensor can
be a zero-stride view promising more elements than the file holds. Here each of those is held
to the file's own size, sane limits and the registry: the model is built on the ``meta`` device
(no memory) and its parameter shapes compared with the checkpoint's tensors before the real one
is built. Every refusal is a :class:`CheckpointError` (a ``ValueError``) naming the file, what
is wrong and what is expected.
"""

from __future__ import annotations

import math
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from cnnzoo.data.limits import limit
from cnnzoo.registry import create_model, list_models

__all__ = [
    "MAX_CLASSES",
    "CheckpointError",
    "check_model_state",
    "read_checkpoint",
    "validate_checkpoint",
]

MAX_CLASSES = 100_000  # ImageNet-21k has 21,841; nothing in this zoo needs more
MAX_CHANNELS = 4096
_MAX_INT = 100_000  # any other integer model argument (widths, groups)
_MAX_ITEMS = 64  # entries of a list argument, keys of model_kwargs
_MAX_TEXT = 4096  # a class name, a path in the config
_MAX_TENSORS = 100_000  # state_dict entries; ResNet-1202 has ~7,300
_ZIP_SLACK = 1 << 20  # torch.save stores entries uncompressed: their sizes sum to the file's


class CheckpointError(ValueError):
    """A checkpoint refused for its contents; the message names the file."""


def _first_line(error: BaseException) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def _check_zip(path: Path, size: int, kind: str, expected: str) -> None:
    """A torch zip checkpoint may not decompress to more than the file holds (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, ValueError, EOFError) as error:
        raise CheckpointError(
            f"{path}: not a {kind} (a damaged zip archive: {_first_line(error)}; "
            f"expected {expected})"
        ) from None
    declared = sum(e.file_size for e in entries)
    if len(entries) > 4 * _MAX_TENSORS or declared > size + _ZIP_SLACK:
        raise CheckpointError(
            f"{path}: its {len(entries)} zip entries declare {declared} bytes in a {size}-byte "
            "file (expected uncompressed entries, as torch.save writes them)"
        )


def _refused_globals(path: Path, error: BaseException) -> list[str]:
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # a damaged file: fall back to torch's message
        found = []
    return found or re.findall(r"GLOBAL ([\w.]+)", str(error))


def read_checkpoint(
    path: str | Path,
    kind: str = "cnnzoo checkpoint",
    expected: str = "a file written by cnnzoo train",
) -> Any:
    """``torch.load(path, weights_only=True)`` after checking the archive against the file's size.
    ``kind`` and ``expected`` word the errors (a training checkpoint, a weights file).

    A file torch cannot read is one :class:`CheckpointError` line; a pickle naming a global that
    weights-only loading refuses names that global (nothing in the file was run). Errors reading
    the file itself (permission, I/O) propagate as :class:`OSError`.
    """
    path = Path(path)
    with open(path, "rb") as f:  # OSError (permission, a folder) is the caller's to report
        size = os.fstat(f.fileno()).st_size
        is_zip = zipfile.is_zipfile(f)
    if is_zip:
        _check_zip(path, size, kind, expected)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        refused = _refused_globals(path, error)
        if refused:
            raise CheckpointError(
                f"{path}: not a {kind}: refused the global {', '.join(refused[:5])}, "
                "which such a file never needs (nothing in it was run; expected only tensors "
                "and plain data)"
            ) from None
        detail = str(error).split("WeightsUnpickler error:")[-1]
        raise CheckpointError(
            f"{path}: not a {kind} (weights-only loading refused it: "
            f"{_first_line(ValueError(detail))}; nothing in it was run)"
        ) from None
    except OSError:
        raise
    except Exception as error:  # junk of any shape: KeyError, RuntimeError, EOFError, ...
        raise CheckpointError(
            f"{path}: not a {kind} (torch.load could not read it: "
            f"{type(error).__name__}: {_first_line(error)}; expected {expected})"
        ) from None


def _check_value(value: Any, where: str, max_int: int = _MAX_INT, depth: int = 0) -> None:
    if value is None or (isinstance(value, bool | str) and len(str(value)) <= _MAX_TEXT):
        return
    if isinstance(value, int):
        if abs(value) > max_int:
            raise CheckpointError(f"{where} = {value}: expected an integer of at most {max_int}")
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise CheckpointError(f"{where} = {value}: expected a finite number")
        return
    if isinstance(value, list | tuple) and depth == 0 and len(value) <= _MAX_ITEMS * 16:
        for k, item in enumerate(value):
            _check_value(item, f"{where}[{k}]", max_int, depth + 1)
        return
    shown = repr(value)[:60]
    raise CheckpointError(
        f"{where} = {shown}: expected a number, a short string or a short list of them"
    )


def _check_int(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CheckpointError(f"{where} = {str(value)[:60]}: expected an integer in {low}..{high}")
    return value


def _check_model_kwargs(config: Mapping[str, Any], where: str) -> dict[str, Any]:
    kwargs = config.get("model_kwargs")
    kwargs = {} if kwargs is None else kwargs  # never `or`: the value may be anything
    if not isinstance(kwargs, dict) or len(kwargs) > _MAX_ITEMS:
        raise CheckpointError(f"{where}: model_kwargs must be a dict of at most {_MAX_ITEMS} keys")
    for key, value in kwargs.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise CheckpointError(f"{where}: model_kwargs key {key!r} is not an argument name")
        if isinstance(value, list | tuple) and len(value) > _MAX_ITEMS:
            raise CheckpointError(f"{where}: model_kwargs.{key} has over {_MAX_ITEMS} items")
        _check_value(value, f"{where}: model_kwargs.{key}")
    if "num_classes" in kwargs:
        _check_int(kwargs["num_classes"], f"{where}: model_kwargs.num_classes", 1, MAX_CLASSES)
    if "in_channels" in kwargs:
        _check_int(kwargs["in_channels"], f"{where}: model_kwargs.in_channels", 1, MAX_CHANNELS)
    return dict(kwargs)


def _check_dense(tensor: torch.Tensor, name: str, where: str) -> None:
    if tensor.layout != torch.strided or tensor.is_quantized:
        raise CheckpointError(f"{where}: {name} is not a dense tensor")
    # a view may not promise more elements than its storage holds (a zero-stride bomb)
    needed = tensor.numel() * tensor.element_size()
    held = tensor.untyped_storage().nbytes() - tensor.storage_offset() * tensor.element_size()
    if needed > held:
        raise CheckpointError(
            f"{where}: {name} has shape {tuple(tensor.shape)} but its storage holds only "
            f"{held} bytes (expected a dense tensor, as torch.save writes a state_dict)"
        )


def _check_tensors(state: Any, where: str) -> dict[str, torch.Tensor]:
    if not isinstance(state, dict) or len(state) > _MAX_TENSORS:
        raise CheckpointError(f"{where}: expected a state_dict (a dict of named tensors)")
    for name, tensor in state.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{where}: entry {str(name)[:60]!r} is not a named tensor")
        _check_dense(tensor, name, where)
    return state


def _check_every_tensor(obj: Any, where: str) -> None:
    """Every tensor anywhere (optimizer state, RNG states) is dense: none can expand on use."""
    stack: list[tuple[Any, str, int]] = [(obj, "", 0)]
    seen = 0
    while stack:
        item, name, depth = stack.pop()
        seen += 1
        if depth > 32 or seen > 16 * _MAX_TENSORS:
            raise CheckpointError(f"{where}: nested too deeply or too large (at {name[:80]})")
        if isinstance(item, torch.Tensor):
            _check_dense(item, name, where)
        elif isinstance(item, dict):
            stack.extend((v, f"{name}.{k}"[:200], depth + 1) for k, v in item.items())
        elif isinstance(item, list | tuple):
            stack.extend((v, f"{name}[{i}]"[:200], depth + 1) for i, v in enumerate(item))


def check_model_state(
    model: str, model_kwargs: Mapping[str, Any], state: Mapping[str, torch.Tensor], where: str
) -> None:
    """Build ``model`` with ``model_kwargs`` on the meta device (no memory) and require ``state``
    to have exactly its parameter and buffer names and shapes."""
    if model not in list_models():
        raise CheckpointError(
            f"{where}: unknown model {model[:60]!r} (expected a registered model, see "
            "`cnnzoo list`)"
        )
    try:
        with torch.device("meta"):
            expected = create_model(model, **model_kwargs).state_dict()
    except Exception as error:  # the builder's own checks: bad widths, unknown arguments
        raise CheckpointError(
            f"{where}: model_kwargs {dict(model_kwargs)} do not build {model}: {_first_line(error)}"
        ) from None
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        raise CheckpointError(
            f"{where}: the weights do not match {model}: missing {missing[:3]}, unexpected "
            f"{extra[:3]} (expected the state_dict of {model} with {dict(model_kwargs)})"
        )
    for key, tensor in expected.items():
        if tuple(state[key].shape) != tuple(tensor.shape):
            raise CheckpointError(
                f"{where}: {key} has shape {tuple(state[key].shape)}, {model} with "
                f"{dict(model_kwargs)} expects {tuple(tensor.shape)}"
            )


def _check_input_size(size: Any, where: str) -> None:
    """config.input_size (`--input`): None, or [height, width] within the image-size limit
    (eval and predict resize images to it)."""
    if size is None:
        return
    if not isinstance(size, list | tuple) or len(size) != 2:
        raise CheckpointError(f"{where}: config.input_size must be [height, width] or None")
    _check_height_width(size, 0, f"{where}: config.input_size")


def _check_height_width(size: Any, first: int, name: str) -> None:
    """``size[first]``, ``size[first + 1]``: positive integers whose product (an image's pixels)
    is within the image-pixel limit."""
    height = _check_int(size[first], f"{name}[{first}]", 1, _MAX_INT)
    width = _check_int(size[first + 1], f"{name}[{first + 1}]", 1, _MAX_INT)
    if height * width > limit("image_pixels"):
        raise CheckpointError(
            f"{name} {height}x{width} is over the limit of {limit('image_pixels')} pixels per image"
        )


def _check_data(data: Any, kwargs: Mapping[str, Any], where: str) -> None:
    if not isinstance(data, dict):
        raise CheckpointError(f"{where}: 'data' must be a dict describing the training data")
    if not isinstance(data.get("name", ""), str):
        raise CheckpointError(f"{where}: data.name must be a string")
    classes = data.get("classes")
    if (
        not isinstance(classes, list | tuple)
        or not 1 <= len(classes) <= MAX_CLASSES
        or not all(isinstance(c, str) and len(c) <= _MAX_TEXT for c in classes)
    ):
        raise CheckpointError(
            f"{where}: data.classes must be a list of 1..{MAX_CLASSES} class names"
        )
    if "num_classes" in kwargs and kwargs["num_classes"] != len(classes):
        raise CheckpointError(
            f"{where}: {len(classes)} class names but model_kwargs.num_classes = "
            f"{kwargs['num_classes']} (expected them equal)"
        )
    size = data.get("image_size")
    if not isinstance(size, list | tuple) or len(size) != 3:
        raise CheckpointError(f"{where}: data.image_size must be [channels, height, width]")
    channels = _check_int(size[0], f"{where}: data.image_size[0]", 1, MAX_CHANNELS)
    _check_height_width(size, 1, f"{where}: data.image_size")
    for key in ("mean", "std"):
        values = data.get(key)
        if (
            not isinstance(values, list | tuple)
            or len(values) != channels
            or not all(isinstance(v, int | float) and math.isfinite(v) for v in values)
        ):
            raise CheckpointError(
                f"{where}: data.{key} must be {channels} finite numbers (one per channel)"
            )
    if any(v <= 0 for v in data["std"]):
        raise CheckpointError(f"{where}: data.std must be positive")


def validate_checkpoint(checkpoint: Any, path: str | Path) -> dict[str, Any]:
    """Hold a loaded checkpoint's config, model arguments, tensors and data description to sane
    limits and the registry (see the module docstring); returns it unchanged."""
    where = str(path)
    if not isinstance(checkpoint, dict) or not {"model", "config", "data"} <= checkpoint.keys():
        raise CheckpointError(
            f"{where} is not a cnnzoo checkpoint: expected a dict with 'model', 'config' and "
            "'data' (a bare state_dict loads with cnnzoo.load_weights instead)"
        )
    config = checkpoint["config"]
    if not isinstance(config, dict) or not isinstance(config.get("model"), str):
        raise CheckpointError(f"{where}: 'config' must be a dict naming the model")
    for key, value in config.items():
        if key != "model_kwargs":  # the trainer checks their meaning on resume
            _check_value(value, f"{where}: config.{key}", max_int=1 << 62)
    kwargs = _check_model_kwargs(config, where)
    _check_input_size(config.get("input_size"), where)
    _check_data(checkpoint["data"], kwargs, where)
    _check_every_tensor(checkpoint, where)
    model = config["model"]
    check_model_state(model, kwargs, _check_tensors(checkpoint["model"], f"{where}: model"), where)
    ema = checkpoint.get("ema")
    if ema is not None and not (isinstance(ema, dict) and not ema):  # None or {}: no EMA
        averaged = _check_tensors(ema, f"{where}: ema")
        prefix = "module."
        inner = {k[len(prefix) :]: v for k, v in averaged.items() if k.startswith(prefix)}
        check_model_state(model, kwargs, inner, f"{where}: ema")
    return checkpoint
