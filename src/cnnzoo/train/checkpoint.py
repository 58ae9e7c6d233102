"""Checkpoints: atomic writes, weights-only loading, and the RNG states exact resume needs."""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from cnnzoo.train.checkpoint_validation import read_checkpoint, validate_checkpoint

__all__ = ["atomic_save", "atomic_write_text", "capture_rng", "load_checkpoint", "restore_rng"]


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then rename: a reader (or a crash)
    never sees a half-written checkpoint."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # disk full: name it (#13)
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a text file through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # disk full: name it (#13)
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """A cnnzoo training checkpoint, loaded with ``weights_only=True`` (no code can run).

    Raises ``ValueError`` for a file that is not one of ours or whose contents are out of bounds
    (:mod:`cnnzoo.train.checkpoint_validation`).
    """
    path = Path(path)
    if path.is_dir():
        path = path / "last.pt"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    # contents held to the file's size, sane limits and the registry before use (#13)
    checkpoint = read_checkpoint(path)
    if not isinstance(checkpoint, dict) or not {"model", "config"} <= checkpoint.keys():
        raise ValueError(
            f"{path} is not a cnnzoo checkpoint: expected a dict with 'model' and 'config' "
            "(a bare state_dict loads with cnnzoo.load_weights instead)"
        )
    return validate_checkpoint(checkpoint, path)


def capture_rng() -> dict[str, Any]:
    """Every global random state a training step may draw from (dropout, Python, NumPy)."""
    numpy_state = cast(tuple[Any, ...], np.random.get_state())
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),  # (version, tuple of ints, float | None): plain data
        "numpy": torch.from_numpy(numpy_state[1].astype(np.int64)),
        "numpy_pos": int(numpy_state[2]),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    np.random.set_state(
        ("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0)
    )
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
