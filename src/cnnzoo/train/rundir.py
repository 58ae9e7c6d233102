"""A run directory belongs to one run: claiming it, locking it, and keeping its files consistent.

``last.pt`` is the run's commit record: an epoch is done when ``last.pt`` holding it has been
renamed into place. Everything else is derived from it and written after it: ``best.pt`` (a hard
link to that ``last.pt`` when the epoch improved), ``metrics.csv`` (rewritten from its history),
and at the end the artifacts with ``final.json`` last. A crash (kill -9, disk full) at any write
boundary therefore leaves either the previous state or the new ``last.pt`` with some derived files
behind it; :func:`repair` rebuilds those from ``last.pt`` and removes temporary files when the
run is resumed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import torch

from cnnzoo.precision import AUTO
from cnnzoo.train import distributed
from cnnzoo.train.artifacts import ARTIFACTS
from cnnzoo.train.checkpoint import (
    atomic_link,
    atomic_save,
    atomic_write_text,
    checkpoint_state,
    load_checkpoint,
)
from cnnzoo.train.checkpoint import versions as _versions
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.metrics import write_metrics
from cnnzoo.train.schedule import Schedule

if TYPE_CHECKING:
    from cnnzoo.train.run import Run

__all__ = [
    "EXPORTS",
    "RUN_FILES",
    "begin",
    "claim",
    "commit_epoch",
    "default_out_dir",
    "locked",
    "open_run",
    "repair",
    "resume_dir",
    "resumed_config",
    "save_position",
    "write_config",
]

RUN_FILES = ("config.json", "metrics.csv", "last.pt", "best.pt", *ARTIFACTS)
# What `cnnzoo export RUN` writes into the run (cli/export.py). They are copies of the run's
# weights: a run that trains on (resume) or is replaced (overwrite) removes them, rather than
# leave an export of other weights beside it.
EXPORTS = ("model.onnx", "model-int8.onnx", "model.pt")
LOCK = ".lock"
# config fields a resumed run may change: the length (the schedule is rebuilt for it) and how
# many threads compute it
CHANGEABLE_ON_RESUME = ("epochs", "threads")


def default_out_dir(config: TrainConfig) -> Path:
    data = Path(config.data).name if config.data else "digits"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{data}-{stamp}"


def _check_directory(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"run directory {out} is a file; expected a directory (or a new name)")


def claim(out: Path, *, overwrite: bool) -> None:
    """Make ``out`` ready for a new run: refuse one that holds a run unless ``overwrite``, in
    which case the old run's files (only those) are removed. Call with the lock held."""
    held = [name for name in RUN_FILES if (out / name).exists()]
    if held and not overwrite:
        raise ValueError(
            f"{out} already holds a run ({', '.join(held[:3])}); continue it with --resume {out}, "
            "or replace it with --overwrite"
        )
    for name in held:
        (out / name).unlink()
    if held:
        _remove_exports(out)
    _remove_leftovers(out)


@contextmanager
def locked(out: Path, *, enabled: bool = True) -> Iterator[None]:
    """An exclusive lock on ``out`` for the duration of a run (``flock``: released by the kernel
    when the process ends, kill -9 included, so a stale lock never blocks a resume)."""
    _check_directory(out)
    out.mkdir(parents=True, exist_ok=True)
    if not enabled:
        yield
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not protected from each other there
        yield
        return
    handle: IO[str] = (out / LOCK).open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise ValueError(
                f"{out} is in use by another run ({owner}); wait for it, or choose another --out"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}\n")
        handle.flush()
        yield
    finally:
        handle.close()  # closing releases the lock


@contextmanager
def open_run(
    config: TrainConfig | None,
    out_dir: str | Path | None,
    *,
    resume: str | Path | None,
    epochs: int | None,
    overwrite: bool,
) -> Iterator[tuple[TrainConfig, Path, dict[str, Any] | None]]:
    """Lock the run directory and yield (config, directory, checkpoint to resume or None): a new
    run claims its directory; a resumed one gets its saved config, changed only as allowed."""
    is_main = distributed.env_rank() == 0
    if resume is not None:
        out = resume_dir(resume)
        if out_dir is not None and Path(out_dir).resolve() != out.resolve():
            raise ValueError(f"--out {out_dir} and --resume {resume} name different runs")
    elif config is None:
        raise ValueError("fit needs a config, or a run to resume")
    else:
        out = Path(out_dir) if out_dir is not None else default_out_dir(config)
    with locked(out, enabled=is_main):
        if resume is None:
            assert config is not None
            config = normalise_paths(config)
            if epochs is not None:
                config = dataclasses.replace(config, epochs=epochs)
            if is_main:
                claim(out, overwrite=overwrite)
            yield config, out, None
            return
        checkpoint = load_checkpoint(out / "last.pt")
        saved = TrainConfig.from_dict(checkpoint["config"])
        config = resumed_config(saved, config, epochs=epochs)
        done = len(checkpoint["history"]) + bool(checkpoint["partial"])
        if config.epochs < done:
            raise ValueError(
                f"the run in {out} has trained {done} epochs; --epochs must be at least {done}"
            )
        steps_done = config.max_steps is not None and checkpoint["step"] >= config.max_steps
        finished = not checkpoint["partial"] and (
            checkpoint["loader"]["epoch"] >= config.epochs or steps_done
        )
        if finished and (out / "final.json").is_file():
            raise ValueError(
                f"the run in {out} finished its {len(checkpoint['history'])} epochs; nothing to "
                f"resume (extend it with --resume {out} --epochs N, N > {config.epochs})"
            )
        yield config, out, checkpoint


def begin(run: Run, checkpoint: dict[str, Any] | None, command: list[str] | None) -> None:
    """Before the first step: a new run writes config.json; a resumed one is repaired after a
    crash and, when extended, rebuilds its schedule and says so."""
    if checkpoint is None:
        if run.dist.is_main:
            write_config(run, command, [])
        return
    saved = TrainConfig.from_dict(checkpoint["config"])
    out, config = run.out_dir, run.config
    if run.dist.is_main:
        for line in repair(run):
            run.log(f"after an interrupted write: {line}")
        for name in _remove_exports(out):
            run.log(f"removed {name}: exported before the run trained on; export it again")
    if config.epochs == saved.epochs:
        return
    old = Schedule.from_config(saved, len(run.train_loader))
    run.log(
        f"extending the run from {saved.epochs} to {config.epochs} epochs: the {config.schedule} "
        f"schedule now spans {run.total_steps} steps (was {old.total_steps}); the rate at step "
        f"{run.step} goes from {old(run.step):.4g} to {run.schedule(run.step):.4g}"
    )
    if run.dist.is_main:
        document = read_config(out)
        extension = {
            "step": run.step,
            "epochs": [saved.epochs, config.epochs],
            "command": command or sys.argv,
        }
        extensions = [*document.get("extensions", []), extension]
        (out / "final.json").unlink(missing_ok=True)  # the run is no longer finished
        write_config(run, document.get("command", command), extensions)
    distributed.barrier(run.dist)


def resume_dir(resume: str | Path) -> Path:
    """The run directory a ``--resume`` argument names: the directory or its ``last.pt``. Other
    files are refused: resuming ``best.pt`` would rewind the run and rewrite its history."""
    path = Path(resume)
    if path.is_dir():
        return path
    if path.name == "last.pt" and path.is_file():
        return path.parent
    if path.is_file():
        raise ValueError(
            f"--resume {path}: a run continues from its directory (its last.pt); "
            f"resuming {path.name} would rewrite the run's history. To train on from these "
            "weights, start a new run"
        )
    raise FileNotFoundError(f"no run to resume at {path}")


def resumed_config(
    saved: TrainConfig, requested: TrainConfig | None, *, epochs: int | None = None
) -> TrainConfig:
    """The config a resumed run continues with: the saved one, with the changes allowed on
    resume (:data:`CHANGEABLE_ON_RESUME`). Any other difference in ``requested`` is refused."""
    config = saved
    if requested is not None:
        requested = normalise_paths(requested)
        for f in dataclasses.fields(TrainConfig):
            new, old = getattr(requested, f.name), getattr(saved, f.name)
            if f.name in CHANGEABLE_ON_RESUME:
                continue
            if f.name == "data" and new is None:
                continue
            if f.name == "precision" and new == AUTO:  # the run saved what auto chose
                continue
            if f.name == "model_kwargs" and all(old.get(k) == v for k, v in new.items()):
                continue
            if new != old:
                raise ValueError(
                    f"{f.name} cannot change when resuming (the run has {f.name}={old!r}, "
                    f"asked for {new!r}); only {' and '.join(CHANGEABLE_ON_RESUME)} can. "
                    "Start a new run for other settings"
                )
        config = dataclasses.replace(config, epochs=requested.epochs, threads=requested.threads)
    if epochs is not None:
        config = dataclasses.replace(config, epochs=epochs)
    return config


def normalise_paths(config: TrainConfig) -> TrainConfig:
    """Data paths stored absolute, so that a run resumes and evaluates from any directory.
    A registered dataset name stays a name."""
    from cnnzoo.data.catalog import dataset_spec

    data = config.data
    if data is not None and (dataset_spec(data) is None or "/" in data) and Path(data).exists():
        data = str(Path(data).resolve())
    data_dir = str(Path(config.data_dir).resolve()) if config.data_dir else None
    return dataclasses.replace(config, data=data, data_dir=data_dir)


def write_config(run: Run, command: list[str] | None, extensions: list[dict[str, Any]]) -> None:
    document = {
        **run.config.to_dict(),
        "data_info": run.data_info,
        "inference": run.inference,
        "versions": _versions(),
        "command": command or sys.argv,
        "world_size": run.dist.world_size,
        "extensions": extensions,
    }
    atomic_write_text(json.dumps(document, indent=2) + "\n", run.out_dir / "config.json")


def read_config(out: Path) -> dict[str, Any]:
    try:
        document = json.loads((out / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return document if isinstance(document, dict) else {}


def save_position(run: Run) -> None:
    """``last.pt`` for a stop mid-epoch (no derived file changes: no epoch finished)."""
    atomic_save(checkpoint_state(run), run.out_dir / "last.pt")


def commit_epoch(run: Run, improved: bool) -> None:
    """The end of an epoch on disk, in commit order: last.pt, then best.pt, then metrics.csv."""
    out = run.out_dir
    atomic_save(checkpoint_state(run), out / "last.pt")
    if improved:
        atomic_link(out / "last.pt", out / "best.pt")
    write_metrics(out / "metrics.csv", run.history)


def _remove_exports(out: Path) -> list[str]:
    removed = [name for name in EXPORTS if (out / name).is_file()]
    for name in removed:
        (out / name).unlink()
    return removed


def _remove_leftovers(out: Path) -> list[str]:
    removed = []
    for name in RUN_FILES:
        for tmp in out.glob(f".{name}.*.tmp"):
            tmp.unlink(missing_ok=True)
            removed.append(tmp.name)
    return removed


def repair(run: Run) -> list[str]:
    """Bring the files derived from ``last.pt`` back in line with it after a crash: remove
    temporary files, rewrite ``metrics.csv`` from its history, and re-link ``best.pt`` when
    ``last.pt`` is the best epoch but ``best.pt`` is not it. Returns what was done."""
    out = run.out_dir
    done = [f"removed {name}" for name in _remove_leftovers(out)]
    write_metrics(out / "metrics.csv", run.history)
    epochs = len(run.history)
    if run.best_epoch and run.best_epoch == epochs and not run.partial:
        best = out / "best.pt"
        best_epochs = -1
        if best.is_file():
            try:
                saved = torch.load(best, map_location="cpu", weights_only=True)
                best_epochs = len(saved.get("history", ()))
            except Exception:  # a damaged best.pt is replaced below
                best_epochs = -1
        if best_epochs != epochs:
            atomic_link(out / "last.pt", best)
            done.append(f"best.pt set to epoch {epochs}")
    return done
