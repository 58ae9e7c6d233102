"""The trainer, top to bottom: ``prepare`` -> ``train_one_epoch`` -> ``evaluate`` -> ``fit``.

Data lives whole on the training device and batches are drawn by index (cnnzoo.data.DeviceLoader);
the learning rate is a function of the step (schedule.Schedule); every source of randomness is
either a function of (seed, epoch, batch) or saved in the checkpoint, so a run resumed from any
step ends with bit-identical weights to the same run left alone (CPU, same seed and threads).
Checkpoints are in checkpoint.py, the run directory's rules in rundir.py, the finished run's
files in artifacts.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from cnnzoo.data import DeviceLoader
from cnnzoo.precision import AUTO, resolve_precision
from cnnzoo.registry import create_model
from cnnzoo.surgery import freeze
from cnnzoo.train import distributed, rundir
from cnnzoo.train.artifacts import final_summary, write_artifacts
from cnnzoo.train.checkpoint import CHECKPOINT_FORMAT, restore_checkpoint
from cnnzoo.train.config import TrainConfig
from cnnzoo.train.ema import EMA
from cnnzoo.train.loaders import build_loaders, load_run_data, resolve_device
from cnnzoo.train.metrics import confusion_matrix
from cnnzoo.train.optim import build_optimizer
from cnnzoo.train.progress import EpochProgress
from cnnzoo.train.run import Interrupted, NonFiniteLossError, Run
from cnnzoo.train.schedule import Schedule
from cnnzoo.train.signals import stop_asked, stop_on_signals
from cnnzoo.train.threads import default_threads

__all__ = [
    "CHECKPOINT_FORMAT",
    "Interrupted",
    "NonFiniteLossError",
    "Run",
    "build_optimizer",
    "evaluate",
    "fit",
    "prepare",
    "train_one_epoch",
]


# --------------------------------------------------------------------------- prepare


def prepare(
    config: TrainConfig, out_dir: Path, *, quiet: bool = False, checkpoint: dict[str, Any] | None
) -> Run:
    """Data, model, optimiser, schedule and loaders for ``config``; restored from ``checkpoint``."""
    torch.set_num_threads(config.threads or default_threads())
    dist_info, device = distributed.setup(resolve_device(config.device))
    asked = config.precision
    # "auto" is decided here, on the device, and saved resolved: a resumed run keeps its precision.
    # Rank 0 decides for all: ranks on machines of different kinds would otherwise each choose.
    precision = distributed.from_main(resolve_precision(asked, device), dist_info)
    config = dataclasses.replace(config, precision=precision)
    if config.precision == "fp16" and device.type != "cuda":
        raise ValueError("fp16 training needs a CUDA device; use --precision bf16 on the CPU")
    torch.manual_seed(config.seed)

    data = load_run_data(config)
    config = data.config
    model_kwargs = config.model_kwargs
    # Pretrained weights only for a new run: a resumed one loads its own checkpoint.
    weights = config.weights if checkpoint is None else None
    model = create_model(config.model, weights=weights, **model_kwargs).to(device)
    built_with = getattr(model, "pretrained_kwargs", None)
    if built_with:  # e.g. googlenet's weights: transform_input on, aux heads dropped
        config = dataclasses.replace(config, model_kwargs={**model_kwargs, **built_with})
    if config.freeze is not None:
        freeze(model, upto=config.freeze)  # before the optimiser: it skips frozen ones
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    train_loader, test_loader = build_loaders(config, data, device, dist_info)
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
        ema=EMA(model, config.ema) if config.ema is not None else None,
        optimizer=build_optimizer(model, config),
        scaler=torch.amp.GradScaler(device.type, enabled=config.precision == "fp16"),
        schedule=Schedule.from_config(config, len(train_loader)),
        train_data=data.train,
        test_data=data.test,
        train_loader=train_loader,
        test_loader=test_loader,
        data_info=data.data_info,
        inference=data.inference,
        quiet=quiet,
    )
    if checkpoint is not None:
        restore_checkpoint(run, checkpoint)
        position = checkpoint["loader"]
        run.log(
            f"resuming {run.config.model} at epoch {position['epoch'] + 1}, "
            f"batch {position['index']} (step {run.step})"
        )
    else:
        if data.train_pipeline.adaptation is not None and data.train_pipeline.adaptation.steps:
            run.log(data.train_pipeline.adaptation.describe())
        if asked == AUTO:
            native = "computes bf16 natively" if config.precision == "bf16" else "no native bf16"
            run.log(f"precision auto: {config.precision} (this {device.type}: {native})")
    return run


# --------------------------------------------------------------------------- train_one_epoch


def _autocast(run: Run) -> contextlib.AbstractContextManager[Any]:
    precision = run.config.precision
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type=run.device.type, dtype=dtype)


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
    loader, optimizer, scaler = run.train_loader, run.optimizer, run.scaler
    sums = run.partial or {"loss": 0.0, "correct": 0.0, "count": 0.0, "seconds": 0.0}
    later = max(0, run.total_steps - (epoch + 1) * len(loader))
    progress = EpochProgress(
        epoch + 1, run.config.epochs, len(loader), quiet=run.quiet, later_steps=later
    )
    progress.live = progress.live and run.dist.is_main
    start = time.perf_counter()
    seconds_before = sums["seconds"]
    lr = float(optimizer.param_groups[0]["lr"])  # if resumed after the epoch's last step
    for x, y in loader:
        lr = run.schedule(run.step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        with _autocast(run):
            loss, logits = _loss(run, run.train_model(_prepare_input(run, x)), y)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(
                f"the loss became {loss.item()} at step {run.step + 1} (epoch {epoch + 1}); "
                "stopped. Try a lower --lr or --clip-grad; the last good checkpoint is kept"
            )
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        if run.config.clip_grad is not None:
            scaler.unscale_(optimizer)
            nn.utils.clip_grad_norm_(run.model.parameters(), run.config.clip_grad)
        scaler.step(optimizer)
        scaler.update()
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
        # every rank leaves after the same step, whichever rank was asked to stop
        run.stop_requested = distributed.any_rank(stop_asked(run), run.dist, run.device)
        if run.stop_requested or run.step >= run.total_steps:
            break
    progress.clear()
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


# --------------------------------------------------------------------------- evaluate


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


def _evaluate_epoch(run: Run) -> dict[str, float]:
    """The reported model's test loss and accuracy, and the raw weights' (the same without EMA)."""
    classes = run.test_data.num_classes
    loss, accuracy, _ = evaluate(run.eval_model, run.test_loader, classes, run)
    raw_loss, raw_accuracy = loss, accuracy
    if run.ema is not None:
        raw_loss, raw_accuracy, _ = evaluate(run.model, run.test_loader, classes, run)
    return {
        "test_loss": loss,
        "test_accuracy": accuracy,
        "raw_test_loss": raw_loss,
        "raw_test_accuracy": raw_accuracy,
    }


# --------------------------------------------------------------------------- fit


def fit(
    config: TrainConfig | None,
    out_dir: str | Path | None = None,
    *,
    resume: str | Path | None = None,
    epochs: int | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    command: list[str] | None = None,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Train ``config`` into ``out_dir`` and return ``final.json``'s content.

    ``out_dir`` must not hold a run already (``overwrite=True`` replaces it). ``resume`` (a run
    directory or its ``last.pt``) continues that run exactly; ``epochs`` (or ``config.epochs``)
    may extend it, and the schedule is rebuilt for the new length. Any other setting of
    ``config`` that differs from the run's raises ``ValueError``.

    Raises :class:`Interrupted` after saving ``last.pt`` when stopped by a signal on any rank
    (or after ``stop_after_steps``), and :class:`NonFiniteLossError` on a NaN/inf loss.
    """
    with rundir.open_run(config, out_dir, resume=resume, epochs=epochs, overwrite=overwrite) as (
        config,
        out,
        checkpoint,
    ):
        try:  # prepare joins the process group: every way out of here leaves it
            run = prepare(config, out, quiet=quiet, checkpoint=checkpoint)
            run.stop_after_steps = stop_after_steps
            rundir.begin(run, checkpoint, command)
            run.log(f"training {run.config.model} on {run.config.data} -> {out}")
            wall_start = time.perf_counter() - sum(r["seconds"] for r in run.history)
            with stop_on_signals(run), distributed.peers_watched(run.dist, out):
                if _loop(run):
                    run.log(f"stopped; {out / 'last.pt'} written. Resume with:")
                    run.log(f"  cnnzoo train --resume {out}")
                    distributed.barrier(run.dist)  # no rank leaves before rank 0 has said so
                    _release_wrapper(run)
                    raise Interrupted(out / "last.pt")
                final = _finish(run, time.perf_counter() - wall_start)
                _release_wrapper(run)
                return final
        finally:
            distributed.teardown()


def _release_wrapper(run: Run) -> None:
    """Free the DDP wrapper while the process group lives and the peers do: left to the
    interpreter's exit (an exception's traceback keeps the run), gloo's threads are destroyed
    in any order and abort the process ("terminate called without an active exception")."""
    if run.train_model is not run.model:
        run.train_model = run.model
        gc.collect()


def _loop(run: Run) -> bool:
    """Train and evaluate epoch by epoch; True when the ranks agreed to stop early (last.pt
    then holds the position)."""
    config, loader = run.config, run.train_loader
    while loader.epoch < config.epochs and run.step < run.total_steps:
        epoch = loader.epoch
        stats = train_one_epoch(run, epoch)
        if run.stop_requested and loader.index != 0:
            if run.dist.is_main:
                rundir.save_position(run)  # mid-epoch: the position says where to pick up
            distributed.barrier(run.dist)
            return True
        loader.set_epoch(epoch + 1)
        run.partial = {}
        tests = _evaluate_epoch(run)
        run.history.append({"epoch": epoch + 1, "step": run.step, **stats, **tests})
        improved = tests["test_accuracy"] > run.best_accuracy
        if improved:
            run.best_accuracy, run.best_epoch = tests["test_accuracy"], epoch + 1
        if run.dist.is_main:
            rundir.commit_epoch(run, improved)
        raw = f" (EMA; raw weights {tests['raw_test_accuracy']:.2%})" if run.ema is not None else ""
        run.log(
            f"epoch {epoch + 1}/{config.epochs}  step {run.step}  lr {stats['lr']:.4g}  "
            f"train loss {stats['train_loss']:.4f} acc {stats['train_accuracy']:.2%}  "
            f"test loss {tests['test_loss']:.4f} acc {tests['test_accuracy']:.2%}{raw}  "
            f"{stats['images_per_second']:,.0f} img/s  {stats['seconds']:.1f}s"
        )
        # A signal may have come during the evaluation or the writes, on one rank only: the
        # ranks agree on it here (the vote also waits for rank 0's writes, as a barrier would).
        run.stop_requested = distributed.any_rank(run.stop_requested, run.dist, run.device)
        if run.stop_requested:
            return True
    return False


def _finish(run: Run, wall_seconds: float) -> dict[str, Any]:
    """The final evaluation; rank 0 writes the artifacts, final.json last."""
    classes = run.test_data.num_classes
    loss, accuracy, confusion = evaluate(run.eval_model, run.test_loader, classes, run)
    final = final_summary(run, loss, accuracy, confusion, wall_seconds)
    if run.dist.is_main:
        write_artifacts(run, final, confusion)
        run.log(
            f"done: test accuracy {accuracy:.2%} (best {run.best_accuracy:.2%} at epoch "
            f"{run.best_epoch}), {wall_seconds:.1f}s; files in {run.out_dir}"
        )
    distributed.barrier(run.dist)  # the ranks leave together, once the run's files exist
    return final
