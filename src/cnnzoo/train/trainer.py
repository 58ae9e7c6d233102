"""The trainer: ``train_one_epoch``, ``evaluate`` and ``fit``, in that order.

Data lives whole on the training device and batches are drawn by index (cnnzoo.data.DeviceLoader);
the learning rate is a function of the step (schedule.lr_at); every source of randomness is either
a function of (seed, epoch, batch) or saved in the checkpoint, so a run resumed from any step ends
with bit-identical weights to the same run left alone (CPU, same seed and threads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import platform
import signal
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import cnnzoo
from cnnzoo.data import DeviceLoader, ImageDataset, Pipeline, build_pipeline, load_dataset
from cnnzoo.registry import create_model, model_info
from cnnzoo.train import distributed
from cnnzoo.train.checkpoint import (
    atomic_save,
    atomic_write_text,
    capture_rng,
    load_checkpoint,
    restore_rng,
)
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.metrics import (
    append_metrics,
    confusion_matrix,
    per_class_accuracy,
    write_confusion_csv,
)
from cnnzoo.train.progress import EpochProgress
from cnnzoo.train.schedule import lr_at

__all__ = [
    "CHECKPOINT_FORMAT",
    "Interrupted",
    "NonFiniteLossError",
    "Run",
    "evaluate",
    "fit",
    "prepare",
    "train_one_epoch",
]

CHECKPOINT_FORMAT = "cnnzoo-checkpoint-1"


class Interrupted(Exception):
    """Training stopped early on request (SIGINT/SIGTERM); ``last.pt`` holds the position."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"interrupted; resume with: cnnzoo train --resume {checkpoint.parent}")
        self.checkpoint = checkpoint


class NonFiniteLossError(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Run:
    """Everything one training run holds; built by :func:`prepare`."""

    config: TrainConfig
    out_dir: Path
    device: torch.device
    dist: distributed.DistInfo
    model: nn.Module  # the bare model (checkpoints save this one's state_dict)
    train_model: nn.Module  # what the step calls: model, compiled and/or DDP-wrapped
    ema: AveragedModel | None
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    train_data: ImageDataset
    test_data: ImageDataset
    train_loader: DeviceLoader
    test_loader: DeviceLoader
    total_steps: int
    warmup_steps: int
    quiet: bool = False
    step: int = 0  # optimiser steps taken
    best_accuracy: float = -1.0
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    partial: dict[str, float] = field(default_factory=dict)  # sums of the epoch in progress
    stop_requested: bool = False
    stop_after_steps: int | None = None  # for tests: behave as if interrupted after this step

    @property
    def eval_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def log(self, message: str) -> None:
        if self.dist.is_main:
            print(message, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- set-up


def _autocast(run: Run) -> contextlib.AbstractContextManager[Any]:
    precision = run.config.precision
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=run.device.type, dtype=dtype)


def _build_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    # No weight decay on biases and norm parameters (1-D tensors): decaying a BN scale only
    # fights the normalisation.
    decay = [p for p in model.parameters() if p.requires_grad and p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.requires_grad and p.ndim <= 1]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            groups,
            lr=config.lr,
            momentum=config.momentum,
            nesterov=config.nesterov and config.momentum > 0,  # Nesterov needs momentum
        )
    return torch.optim.AdamW(groups, lr=config.lr)


def _resolve_device(name: str) -> str:
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA device is available here; use --device cpu")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise ValueError(f"unknown device {name!r}: expected cpu or cuda[:N]")
    return name


def prepare(
    config: TrainConfig, out_dir: Path, *, quiet: bool = False, checkpoint: dict[str, Any] | None
) -> Run:
    """Data, model, optimiser and loaders for ``config``; restored from ``checkpoint`` if given."""
    if config.threads:
        torch.set_num_threads(config.threads)
    dist_info, device = distributed.setup(_resolve_device(config.device))
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a CUDA device; use --precision bf16 on the CPU")
    torch.manual_seed(config.seed)

    info = model_info(config.model)
    data = config.data or "digits"
    train_data = load_dataset(data, config.data_dir, "train", seed=config.seed)
    test_data = load_dataset(data, config.data_dir, "test", seed=config.seed)
    # The model is built for the data's channels (no information is thrown away or repeated);
    # the size is adapted to the model when it cannot take the data's (cnnzoo.data.transforms).
    channels = train_data.image_size[0]
    model_kwargs = {
        **config.model_kwargs,
        "num_classes": train_data.num_classes,
        "in_channels": channels,
    }
    config = dataclasses.replace(config, data=data, model_kwargs=model_kwargs)
    model_input = (channels, info.input_size[1], info.input_size[2])
    mean, std, policy = train_data.mean, train_data.std, "auto"
    if config.weights is not None:  # fine-tuning: the weights' mean/std at their input size
        from cnnzoo.pretrained import finetune_input

        known = finetune_input(config.model, config.weights, channels)
        if known is not None:
            mean, std, model_input = known
            policy = "model"

    def pipeline(train: bool) -> Pipeline:
        return build_pipeline(
            config.augment,
            mean=mean,
            std=std,
            train=train,
            data_size=train_data.image_size,
            model_input=model_input,
            min_size=info.min_size,
            fixed_size=info.fixed_size,
            policy=policy,  # type: ignore[arg-type]
        )

    train_pipeline, test_pipeline = pipeline(True), pipeline(False)
    # Pretrained weights only for a new run: a resumed one loads its own checkpoint.
    weights = config.weights if checkpoint is None else None
    model = create_model(config.model, weights=weights, **model_kwargs).to(device)
    if config.freeze is not None:
        cnnzoo.freeze(model, upto=config.freeze)  # before the optimiser: it skips frozen ones
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    ema = None
    if config.ema is not None:
        ema = AveragedModel(
            model,
            multi_avg_fn=get_ema_multi_avg_fn(config.ema),  # type: ignore[no-untyped-call]
            use_buffers=True,
        )
    optimizer = _build_optimizer(model, config)
    scaler = torch.amp.GradScaler("cuda") if config.precision == "fp16" else None

    train_loader = DeviceLoader(
        train_data.images,
        train_data.labels,
        batch_size=config.batch_size,
        shuffle=True,
        seed=config.seed,
        drop_last=len(train_data) >= 4 * config.batch_size * dist_info.world_size,
        transform=train_pipeline,
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
    )
    test_loader = DeviceLoader(
        test_data.images,
        test_data.labels,
        batch_size=config.eval_batch_size,
        shuffle=False,
        transform=test_pipeline,
        device=device,
        rank=dist_info.rank,
        world_size=dist_info.world_size,
        pad_shards=False,
    )
    steps_per_epoch = len(train_loader)
    total_steps = config.epochs * steps_per_epoch
    if config.max_steps is not None:
        total_steps = min(total_steps, config.max_steps)
    train_model: nn.Module = model
    if config.compile:
        train_model = torch.compile(model)  # type: ignore[assignment]
    if dist_info.enabled:
        device_ids = [device.index] if device.type == "cuda" else None
        train_model = DistributedDataParallel(train_model, device_ids=device_ids)

    run = Run(
        config=config,
        out_dir=out_dir,
        device=device,
        dist=dist_info,
        model=model,
        train_model=train_model,
        ema=ema,
        optimizer=optimizer,
        scaler=scaler,
        train_data=train_data,
        test_data=test_data,
        train_loader=train_loader,
        test_loader=test_loader,
        total_steps=total_steps,
        warmup_steps=round(config.warmup_epochs * steps_per_epoch),
        quiet=quiet,
    )
    if checkpoint is not None:
        _restore(run, checkpoint)
    elif train_pipeline.adaptation is not None and train_pipeline.adaptation.steps:
        run.log(train_pipeline.adaptation.describe())
    return run


# --------------------------------------------------------------------------- the loop


def _loss(run: Run, output: Any, target: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy of the main logits plus the weighted aux-head losses (GoogLeNet/Inception
    in training mode return a namedtuple whose first field is the main logits)."""
    smoothing = run.config.label_smoothing
    if isinstance(output, Tensor):
        return F.cross_entropy(output, target, label_smoothing=smoothing), output
    logits, *aux = output
    weight = float(getattr(run.model, "aux_loss_weight", run.config.aux_weight))
    loss = F.cross_entropy(logits, target, label_smoothing=smoothing)
    for aux_logits in aux:
        if aux_logits is not None:
            loss = loss + weight * F.cross_entropy(aux_logits, target, label_smoothing=smoothing)
    return loss, logits


def _prepare_input(run: Run, x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last) if run.config.channels_last else x


def train_one_epoch(run: Run, epoch: int) -> dict[str, float]:
    """Train to the end of ``epoch`` (from the loader's position: mid-epoch after a resume)."""
    run.model.train()
    loader = run.train_loader
    sums = run.partial or {"loss": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}
    progress = EpochProgress(epoch + 1, run.config.epochs, len(loader), quiet=run.quiet)
    progress.live = progress.live and run.dist.is_main
    start = time.perf_counter()
    seconds_before = sums["seconds"]
    lr = float(run.optimizer.param_groups[0]["lr"])  # if resumed after the epoch's last step
    for x, y in loader:
        lr = lr_at(
            run.step,
            total_steps=run.total_steps,
            base_lr=run.config.lr,
            schedule=run.config.schedule,
            warmup_steps=run.warmup_steps,
            warmup_lr=run.config.warmup_lr,
            milestones=run.config.milestones,
        )
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        with _autocast(run):
            loss, logits = _loss(run, run.train_model(_prepare_input(run, x)), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at step {run.step + 1} (epoch {epoch + 1}); "
                "stopped. Try a lower --lr or --clip-grad; the last good checkpoint is kept"
            )
        run.optimizer.zero_grad(set_to_none=True)
        if run.scaler is not None:
            run.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            run.scaler.unscale_(run.optimizer)
        else:
            loss.backward()  # type: ignore[no-untyped-call]
        if run.config.clip_grad is not None:
            nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_grad)
        if run.scaler is not None:
            run.scaler.step(run.optimizer)
            run.scaler.update()
        else:
            run.optimizer.step()
        if run.ema is not None:
            run.ema.update_parameters(run.model)
        run.step += 1

        batch_loss = float(loss.detach())
        correct = float((logits.detach().argmax(1) == y).sum())
        sums["loss"] += batch_loss * len(y)
        sums["correct"] += correct
        sums["count"] += len(y)
        progress.update(loader.index, len(y), batch_loss, correct / len(y))
        sums["seconds"] = seconds_before + time.perf_counter() - start
        run.partial = sums
        if run.stop_after_steps is not None and run.step >= run.stop_after_steps:
            run.stop_requested = True
        if run.stop_requested or run.step >= run.total_steps:
            break
    totals = distributed.all_reduce_sum(
        torch.tensor([sums["loss"], sums["correct"], sums["count"]], dtype=torch.float64),
        run.dist,
    )
    return {
        "train_loss": float(totals[0] / totals[2]),
        "train_accuracy": float(totals[1] / totals[2]),
        "seconds": sums["seconds"],
        "images_per_second": sums["count"] * run.dist.world_size / max(sums["seconds"], 1e-9),
        "lr": lr,
    }


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DeviceLoader, num_classes: int, run: Run | None = None
) -> tuple[float, float, Tensor]:
    """Test loss, accuracy and confusion matrix (summed over ranks when distributed)."""
    model.eval()
    device = loader.device
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    loader.set_epoch(0)
    for x, y in loader:
        if run is not None:
            x = _prepare_input(run, x)
        with _autocast(run) if run is not None else contextlib.nullcontext():
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum").double()
        confusion += confusion_matrix(y, logits.argmax(1), num_classes)
    if run is not None:
        distributed.all_reduce_sum(confusion, run.dist)
        distributed.all_reduce_sum(loss_sum, run.dist)
    count = int(confusion.sum())
    accuracy = float(confusion.diagonal().sum()) / max(count, 1)
    return float(loss_sum) / max(count, 1), accuracy, confusion.cpu()


@contextlib.contextmanager
def _stop_on_signals(run: Run) -> Iterator[None]:
    """SIGINT/SIGTERM ask the loop to stop after the current step (handled in the main thread)."""

    def request_stop(signum: int, frame: FrameType | None) -> None:
        if run.stop_requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        run.stop_requested = True
        run.log(f"\n{signal.Signals(signum).name}: finishing the current step, then saving")

    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, request_stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def fit(
    config: TrainConfig | None,
    out_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``config`` (or continue the run in ``resume``, whose saved config wins) and return
    ``final.json``'s content.

    Raises :class:`Interrupted` after saving ``last.pt`` when stopped by a signal (or after
    ``stop_after_steps``), and :class:`NonFiniteLossError` on a NaN/inf loss.
    """
    checkpoint = None
    if resume is not None:
        checkpoint = load_checkpoint(resume)
        config = TrainConfig.from_dict(checkpoint["config"])
        out_dir = Path(resume) if Path(resume).is_dir() else Path(resume).parent
    elif config is None:
        raise ValueError("fit needs a config, or a run to resume")
    out = Path(out_dir) if out_dir is not None else _default_out_dir(config)
    out.mkdir(parents=True, exist_ok=True)
    run = prepare(config, out, quiet=quiet, checkpoint=checkpoint)
    run.stop_after_steps = stop_after_steps
    if run.dist.is_main and checkpoint is None:
        _write_config(run, command)
        (out / "metrics.csv").unlink(missing_ok=True)
    run.log(f"training {run.config.model} on {run.config.data} -> {out}")
    wall_start = time.perf_counter() - sum(r["seconds"] for r in run.history)
    try:
        with _stop_on_signals(run):
            _loop(run)
        if run.stop_requested:
            raise Interrupted(out / "last.pt")
        return _finish(run, time.perf_counter() - wall_start)
    finally:
        distributed.teardown(run.dist)


def _loop(run: Run) -> None:
    config = run.config
    while run.train_loader.epoch < config.epochs and run.step < run.total_steps:
        epoch = run.train_loader.epoch
        stats = train_one_epoch(run, epoch)
        if run.stop_requested and run.train_loader.index != 0:
            _save(run, "last.pt")  # mid-epoch: the position says where to pick up
            return
        run.train_loader.set_epoch(epoch + 1)
        run.partial = {}
        test_loss, test_accuracy, _ = evaluate(
            run.eval_model, run.test_loader, run.test_data.num_classes, run
        )
        row = {
            "epoch": epoch + 1,
            "step": run.step,
            **stats,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }
        run.history.append(row)
        improved = test_accuracy > run.best_accuracy
        if improved:
            run.best_accuracy, run.best_epoch = test_accuracy, epoch + 1
        if run.dist.is_main:
            append_metrics(run.out_dir / "metrics.csv", row)
            _save(run, "last.pt")
            if improved:
                _save(run, "best.pt")
        distributed.barrier(run.dist)
        run.log(
            f"epoch {epoch + 1}/{config.epochs}  step {run.step}  lr {stats['lr']:.4g}  "
            f"train loss {stats['train_loss']:.4f} acc {stats['train_accuracy']:.2%}  "
            f"test loss {test_loss:.4f} acc {test_accuracy:.2%}  "
            f"{stats['images_per_second']:,.0f} img/s  {stats['seconds']:.1f}s"
        )
        if run.stop_requested:
            return


# --------------------------------------------------------------------------- files


def _default_out_dir(config: TrainConfig) -> Path:
    data = Path(config.data).name if config.data else "digits"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{config.model}-{data}-{stamp}"


def _versions() -> dict[str, str]:
    return {
        "python": platform.python_version(),
        "torch": str(torch.__version__),  # TorchVersion is not plain data
        "cnnzoo": cnnzoo.__version__,
    }


def _write_config(run: Run, command: list[str] | None) -> None:
    document = {
        **run.config.to_dict(),
        "data_info": _data_info(run),
        "versions": _versions(),
        "command": command or sys.argv,
        "world_size": run.dist.world_size,
    }
    atomic_write_text(json.dumps(document, indent=2) + "\n", run.out_dir / "config.json")


def _data_info(run: Run) -> dict[str, Any]:
    data = run.train_data
    return {
        "name": data.name,
        "classes": list(data.classes),
        "mean": list(data.mean),
        "std": list(data.std),
        "image_size": list(data.image_size),
        "train_images": len(data),
        "test_images": len(run.test_data),
    }


def _save(run: Run, name: str) -> None:
    checkpoint = {
        "format": CHECKPOINT_FORMAT,
        "model": run.model.state_dict(),
        "config": run.config.to_dict(),
        "data": _data_info(run),
        "optimizer": run.optimizer.state_dict(),
        "scaler": run.scaler.state_dict() if run.scaler is not None else None,
        "ema": run.ema.state_dict() if run.ema is not None else None,
        "rng": capture_rng(),
        "loader": run.train_loader.state_dict(),
        "step": run.step,
        "best_accuracy": run.best_accuracy,
        "best_epoch": run.best_epoch,
        "history": run.history,
        "partial": run.partial,
        "versions": _versions(),
    }
    atomic_save(checkpoint, run.out_dir / name)


def _restore(run: Run, checkpoint: dict[str, Any]) -> None:
    run.model.load_state_dict(checkpoint["model"])
    run.optimizer.load_state_dict(checkpoint["optimizer"])
    if run.scaler is not None and checkpoint.get("scaler"):
        run.scaler.load_state_dict(checkpoint["scaler"])
    if run.ema is not None and checkpoint.get("ema"):
        run.ema.load_state_dict(checkpoint["ema"])
    run.train_loader.load_state_dict(checkpoint["loader"])
    run.step = int(checkpoint["step"])
    run.best_accuracy = float(checkpoint["best_accuracy"])
    run.best_epoch = int(checkpoint["best_epoch"])
    run.history = list(checkpoint["history"])
    run.partial = dict(checkpoint["partial"])
    restore_rng(checkpoint["rng"])
    position = checkpoint["loader"]
    run.log(
        f"resuming {run.config.model} at epoch {position['epoch'] + 1}, "
        f"batch {position['index']} (step {run.step})"
    )


def _finish(run: Run, wall_seconds: float) -> dict[str, Any]:
    """Final evaluation, final.json, curves and the confusion matrix (rank 0 writes)."""
    loss, accuracy, confusion = evaluate(
        run.eval_model, run.test_loader, run.test_data.num_classes, run
    )
    images = sum(r["images_per_second"] * r["seconds"] for r in run.history)
    train_seconds = sum(r["seconds"] for r in run.history)
    final = {
        "model": run.config.model,
        "data": run.config.data,
        "test_accuracy": accuracy,
        "test_loss": loss,
        "epochs": len(run.history),
        "steps": run.step,
        "wall_seconds": round(wall_seconds, 3),
        "images_per_second": images / train_seconds if train_seconds else math.nan,
        "best_epoch": run.best_epoch,
        "best_test_accuracy": run.best_accuracy,
        "per_class_accuracy": dict(
            zip(run.test_data.classes, per_class_accuracy(confusion), strict=True)
        ),
    }
    if run.dist.is_main:
        from cnnzoo.report import write_report
        from cnnzoo.train.plots import plot_confusion, plot_curves

        out = run.out_dir
        atomic_write_text(json.dumps(final, indent=2) + "\n", out / "final.json")
        write_confusion_csv(out / "confusion.csv", confusion, run.test_data.classes)
        plot_confusion(out / "confusion.png", confusion, run.test_data.classes)
        plot_curves(out / "curves.png", run.history)
        write_report(out, final, run.config.to_dict(), run.history)  # issue 8: report.html
        run.log(
            f"done: test accuracy {accuracy:.2%} (best {run.best_accuracy:.2%} at epoch "
            f"{run.best_epoch}), {wall_seconds:.1f}s; files in {out}"
        )
    return final
