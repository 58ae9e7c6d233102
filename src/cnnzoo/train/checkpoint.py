"""Checkpoints: the format, atomic writes, weights-only loading, and saving/restoring a run.

A checkpoint is a plain dict (``torch.load(weights_only=True)`` reads it; no code runs):

- ``format``: ``"cnnzoo-checkpoint-2"`` (version 1, written before the EMA warm-up and the
  ``inference`` entry, still loads: its EMA resumes with the fixed decay it was trained with);
- ``model``: the bare model's state_dict; ``ema``: the EMA's (``module.``-prefixed keys and
  ``n_averaged``) or None, ``ema_warmup``: whether its decay warms up;
  ``optimizer``, ``scaler``, ``rng``, ``loader`` (epoch, batch index);
- ``config``: :class:`TrainConfig` as a dict; ``data``: the training set's name, classes,
  mean/std and image size; ``inference``: what a deployed model needs (see
  :func:`inference_info`, also in ``config.json``);
- ``step``, ``best_accuracy``, ``best_epoch``, ``history`` (one dict per finished epoch),
  ``partial`` (sums of the epoch in progress), ``versions``.
"""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import torch

from cnnzoo.train.checkpoint_validation import read_checkpoint, validate_checkpoint

if TYPE_CHECKING:
    from cnnzoo.data import ImageDataset, Pipeline
    from cnnzoo.train.run import Run

__all__ = [
    "CHECKPOINT_FORMAT",
    "atomic_save",
    "atomic_write_text",
    "capture_rng",
    "checkpoint_state",
    "data_info",
    "inference_info",
    "load_checkpoint",
    "restore_checkpoint",
    "restore_rng",
]

CHECKPOINT_FORMAT = "cnnzoo-checkpoint-2"
READABLE_FORMATS = ("cnnzoo-checkpoint-1", CHECKPOINT_FORMAT)

# Called with a label at every write boundary (a temporary file complete, a rename done); tests
# set it to end the process there (os._exit, as kill -9 would) and check what survives.
FAULT_HOOK: Callable[[str], None] | None = None


def write_boundary(label: str) -> None:
    if FAULT_HOOK is not None:
        FAULT_HOOK(label)


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[Any], None], mode: str) -> None:
    """Write through a temporary file in the same folder, fsync, then rename: a reader (or a
    crash) sees the old file or the new one, never half of one. mkstemp creates files 0600;
    they get the permissions the user's umask gives any other new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else "utf-8") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        write_boundary(f"{path.name}: written")
        os.replace(tmp, path)
        write_boundary(f"{path.name}: renamed")
    except BaseException as error:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.filename is None:  # disk full: name it (#13)
            raise OSError(error.errno, error.strerror, str(path)) from None
        raise


def atomic_save(obj: Any, path: str | Path) -> None:
    """``torch.save`` atomically (temporary file, fsync, rename)."""
    _atomic_write(Path(path), lambda f: torch.save(obj, f), "wb")


def atomic_write_text(text: str, path: str | Path) -> None:
    """Write a text file atomically (temporary file, fsync, rename)."""
    _atomic_write(Path(path), lambda f: f.write(text), "w")


def atomic_link(source: Path, path: Path) -> None:
    """Make ``path`` hold exactly ``source``'s current content, atomically: a hard link renamed
    into place (no second serialisation; a later atomic write of ``source`` replaces its name,
    not this inode), or a copy where the filesystem has no hard links."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.link.tmp")
    tmp.unlink(missing_ok=True)
    try:
        try:
            os.link(source, tmp)
        except OSError:
            atomic_save(torch.load(source, map_location="cpu", weights_only=True), path)
            return
        write_boundary(f"{path.name}: written")
        os.replace(tmp, path)
        write_boundary(f"{path.name}: renamed")
    except BaseException as error:
        tmp.unlink(missing_ok=True)
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
    """Put back what :func:`capture_rng` saved. A damaged state raises ``ValueError`` in one
    line: without it the run cannot go on exactly as it would have."""
    try:
        torch.set_rng_state(state["torch"])
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))
        np.random.set_state(
            ("MT19937", state["numpy"].numpy().astype(np.uint32), int(state["numpy_pos"]), 0, 0.0)
        )
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (AttributeError, IndexError, KeyError, RuntimeError, TypeError, ValueError) as error:
        reason = (str(error).strip().splitlines() or [""])[0]
        raise ValueError(
            f"the checkpoint's random state is damaged ({type(error).__name__}: {reason}); "
            "the run cannot resume exactly from it"
        ) from None


def versions() -> dict[str, str]:
    import platform

    import cnnzoo

    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # TorchVersion is not plain data
        "cnnzoo": cnnzoo.__version__,
    }


def data_info(train: ImageDataset, test: ImageDataset) -> dict[str, Any]:
    """The training data's facts, as checkpoints and config.json (``data_info``) hold them."""
    return {
        "name": train.name,
        "classes": list(train.classes),
        "mean": list(train.mean),
        "std": list(train.std),
        "image_size": list(train.image_size),
        "train_images": len(train),
        "test_images": len(test),
    }


def inference_info(
    data: ImageDataset,
    pipeline: Pipeline,
    mean: tuple[float, ...] | None = None,
    std: tuple[float, ...] | None = None,
) -> dict[str, Any]:
    """What a model trained on ``data`` expects at inference (``config.json`` and checkpoints
    hold it under ``inference``): the input size (C, H, W) it was trained on, the class names in
    output order, and the preprocessing: uint8 images of ``data_size`` adapted by ``resize``
    (``pad``: black borders centred, ``resize``: bilinear, ``none``), scaled to 0..1, then
    normalised per channel with ``mean``/``std`` (the data's, or the pretrained weights' when
    fine-tuning). ``steps`` is the exact evaluation pipeline."""
    from cnnzoo.data.transforms import PadTo, Resize

    resize: dict[str, Any] = {"mode": "none"}
    for step in pipeline.adaptation.steps if pipeline.adaptation is not None else ():
        if isinstance(step, PadTo):
            resize = {"mode": "pad", "size": list(step.size)}
        elif isinstance(step, Resize):
            resize = {"mode": "resize", "size": list(step.size), "interpolation": "bilinear"}
    return {
        "input_size": list(pipeline.output_size(data.image_size)),
        "data_size": list(data.image_size),
        "classes": list(data.classes),
        "mean": list(data.mean if mean is None else mean),
        "std": list(data.std if std is None else std),
        "resize": resize,
        "steps": str(pipeline),
    }


def checkpoint_state(run: Run) -> dict[str, Any]:
    """Everything that resumes ``run`` exactly where it is now."""
    return {
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "config": run.config.to_dict(),
        "data": run.data_info,
        "inference": run.inference,
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler.is_enabled() else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "ema_warmup": run.ema.warmup if run.ema is not None else None,
        "rng": capture_rng(),
        "loader": run.train_loader.state_dict(),
        "step": run.step,
        "best_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "partial": run.partial,
        "versions": versions(),
    }


def restore_checkpoint(run: Run, checkpoint: dict[str, Any]) -> None:
    """Put ``run`` back in the state :func:`checkpoint_state` saved."""
    fmt = checkpoint.get("format", READABLE_FORMATS[0])
    if fmt not in READABLE_FORMATS:
        raise ValueError(
            f"checkpoint format {fmt!r} is not one this cnnzoo reads: {READABLE_FORMATS}"
        )
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scaler.is_enabled() and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    if run.ema is not None and checkpoint.get("ema"):
        run.ema.load_state_dict(checkpoint["ema"])
        # format 1 averaged with a fixed decay: a run begun so keeps doing so
        run.ema.warmup = bool(checkpoint.get("ema_warmup", fmt != "cnnzoo-checkpoint-1"))
    run.train_loader.load_state_dict(checkpoint["loader"])
    run.step = int(checkpoint["step"])
    run.best_accuracy = float(checkpoint["best_accuracy"])
    run.best_epoch = int(checkpoint["best_epoch"])
    run.history = list(checkpoint["history"])
    run.partial = dict(checkpoint["partial"])
    restore_rng(checkpoint["rng"])
