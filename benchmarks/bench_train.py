"""Training images/s of ResNet-20 (CIFAR-shaped data) or LeNet-5 (MNIST-shaped, ``--model
lenet5``): cnnzoo's trainer against the tutorial loop.

Issue 15's target: the trainer at least 2x "the plain tutorial loop (DataLoader over a
TensorDataset, the same model, optimizer and batch size, eager, float32)" on both, with no loss of
accuracy at equal epochs. Every number below comes from this same run.

- The tutorial loop (the target's baseline): ``DataLoader(TensorDataset(x, y), batch_size,
  shuffle=True)`` over the images normalised once up front (float32, the trainer's evaluation
  pipeline), fp32 eager model, ``torch.optim``'s own class with its default implementation,
  ``loss.item()`` per step. It does no augmentation (a TensorDataset cannot); the trainer
  still does its preset's (ResNet-20: pad-crop-flip), so the trainer does more work per image.
- A second baseline, reported beside it: the torchvision-style loop, a DataLoader over a
  per-sample Dataset (uint8 array -> PIL image -> RandomCrop(32, padding=4) ->
  RandomHorizontalFlip -> ToTensor -> Normalize, written here with Pillow and torch as
  torchvision does them), with ``--workers`` worker processes.
- The trainer: cnnzoo.train's own ``prepare`` and ``train_one_epoch`` (DeviceLoader + the preset
  batched, ``build_optimizer``'s optimiser), with and without channels_last, in
  fp32 and, where the device computes it natively (or on request), bf16 autocast; with
  ``--compile``, also ``torch.compile``d (channels_last), whose compile time is reported with the
  number of images after which it pays for itself. The trainer reads data through
  ``load_dataset``; the synthetic set reaches it by patching the name the trainer module looks up
  (``cnnzoo.train.loaders.load_dataset``) for the duration of ``prepare``.

All use the same model, initial weights, optimiser algorithm and settings (the model's default
recipe: SGD + Nesterov for ResNet-20, AdamW for LeNet-5; no decay on 1-D parameters),
learning-rate schedule and batch size (the recipe's unless ``--batch-size``), without EMA (the
tutorial loop has none). Only training steps are timed (no evaluation, in either loop). Data:
random uint8 images in 10 classes (the cost does not depend on content). Contenders are timed
one epoch each, in interleaved rounds after a one-step warm-up, so that load from other processes
hits them alike; the table gives the median and the range over the rounds, and ratios are taken
within a round. Images per CPU second of this process (in-process contenders only) hardly depend
on that load: a cross-check of the wall-clock ratio. The per-sample data path is also timed alone:
its share of a torchvision-style step bounds what any data path can gain there (Amdahl).

Model FLOP utilisation: 3 x the forward FLOPs (2 x ``model_info("resnet20").macs``) per image,
against the peak of ``torch.mm`` on large matrices of the same precision, measured on the spot
(the best product of all rounds), both per CPU second of this process (per wall-clock second for
the loops with worker processes), so that other load cancels out.
With ``--compile``, inductor's caches are switched off or empty: the compile time is a first
run's (kernels compiled for an earlier contender of this run excepted).

Accuracy at equal epochs cannot be judged on random pixels, so it is checked on the embedded real
digits (1,442 train / 355 test, 8x8): the tutorial loop and the fastest trainer variant, same
seeds, initial weights, settings and epochs; test accuracies side by side.

    .venv/bin/python benchmarks/bench_train.py [--model resnet20|lenet5] [--images 512]
        [--batch-size N] [--rounds 3] [--threads 1] [--workers 0] [--precisions auto] [--compile]
        [--check-epochs 2] [--check-seeds 0 1]
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import importlib
import itertools
import os
import platform
import random
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

from cnnzoo import create_model, model_info
from cnnzoo.data import ImageDataset, load_dataset
from cnnzoo.precision import native_precision, resolve_precision
from cnnzoo.train import TrainConfig, loaders, make_config, trainer
from cnnzoo.train.optim import build_optimizer
from cnnzoo.train.schedule import Schedule
from cnnzoo.train.trainer import Run, prepare, train_one_epoch

TARGET_SPEEDUP = 2.0  # issue 15
CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
# per model: the synthetic images' shape, their mean/std, the augmentation both loops apply
CASES = {
    "resnet20": ((3, 32, 32), CIFAR_MEAN, CIFAR_STD, "resnet_cifar"),  # CIFAR-10, pad-crop-flip
    "lenet5": ((1, 32, 32), MNIST_MEAN, MNIST_STD, "none"),  # MNIST padded to 32 (the paper's)
}
CLASSES = tuple(f"class{i}" for i in range(10))
# the per-sample equivalent of each trainer preset the check may use: (padding, flip)
# the accuracy check's optimiser where SGD at 0.05 does not train the model in 2 epochs (the
# paper's LeNet-5, with its scaled tanh and RBF output, learns with AdamW: the lenet5-mnist recipe)
CHECK_SETTINGS: dict[str, dict[str, Any]] = {"lenet5": {"optimizer": "adamw", "lr": 0.005}}
PER_SAMPLE_AUGMENT = {"resnet_cifar": (4, True), "none": (0, False)}


# --------------------------------------------------------------------------- the tutorial loop


class PerSampleImages(Dataset[tuple[Tensor, int]]):
    """What a torchvision dataset + transforms.Compose do, one sample at a time: the uint8 array
    to a PIL image, RandomCrop(size, padding) + RandomHorizontalFlip, ToTensor, Normalize."""

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        mean: Sequence[float],
        std: Sequence[float],
        *,
        padding: int,
        flip: bool,
        size: tuple[int, int] | None = None,
    ) -> None:
        # held as torchvision's datasets hold them: (N, H, W, C) uint8, (N, H, W) for gray
        array = images.permute(0, 2, 3, 1).numpy()
        self.data = array[..., 0] if array.shape[-1] == 1 else array
        self.labels = labels.tolist()
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.padding, self.flip, self.size = padding, flip, size

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[Tensor, int]:
        image = Image.fromarray(self.data[i])
        if self.size is not None and image.size != self.size[::-1]:  # transforms.Resize
            image = image.resize(self.size[::-1], Image.Resampling.BILINEAR)
        if self.padding:
            width, height = image.size
            image = ImageOps.expand(image, border=self.padding, fill=0)
            top = random.randint(0, 2 * self.padding)
            left = random.randint(0, 2 * self.padding)
            image = image.crop((left, top, left + width, top + height))
        if self.flip and random.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        array = np.asarray(image, dtype=np.uint8)
        tensor = torch.from_numpy(array.reshape(*array.shape[:2], -1).copy())  # ToTensor
        tensor = tensor.permute(2, 0, 1).float().div(255)
        return (tensor - self.mean) / self.std, self.labels[i]  # Normalize


def tutorial_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """The trainer's optimiser (algorithm, settings, parameter groups) as a tutorial builds it:
    ``torch.optim``'s own class (with torch's dynamo wrappers) and its default implementation."""
    groups = [
        {k: v for k, v in group.items() if k not in ("fused", "foreach")}
        for group in build_optimizer(model, config).param_groups
    ]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr)
    return torch.optim.AdamW(groups, lr=config.lr)


class TutorialLoop:
    """The loop of the PyTorch tutorials: for x, y in DataLoader: forward, loss, backward, step,
    ``loss.item()``; the learning rate follows the trainer's schedule step by step."""

    def __init__(
        self,
        model: nn.Module,
        loader: DataLoader[tuple[Tensor, int]] | DataLoader[tuple[Tensor, ...]],
        config: TrainConfig,
        schedule: Schedule,
        device: torch.device,
    ) -> None:
        if config.ema or config.clip_grad or config.label_smoothing:
            raise ValueError("the tutorial loop has no EMA, clipping or label smoothing")
        self.model, self.loader, self.config = model.to(device), loader, config
        self.schedule, self.device = schedule, device
        self.optimizer = tutorial_optimizer(model, config)
        self.step = 0
        self.running_loss = 0.0

    def train_epoch(self, max_batches: int | None = None) -> int:
        """One epoch (or its first ``max_batches``); returns the number of images seen."""
        self.model.train()
        images = 0
        for x, y in itertools.islice(self.loader, max_batches):
            x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            lr = self.schedule(self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(self.model(x), y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            self.running_loss += loss.item()
            self.step += 1
            images += len(y)
        return images


def tutorial_loader(
    data: ImageDataset,
    *,
    batch_size: int,
    workers: int,
    train: bool,
    augment: str,
    seed: int,
    drop_last: bool,
    pin_memory: bool = False,
    size: tuple[int, int] | None = None,
) -> DataLoader[tuple[Tensor, int]]:
    padding, flip = PER_SAMPLE_AUGMENT[augment] if train else (0, False)
    dataset = PerSampleImages(
        data.images, data.labels, data.mean, data.std, padding=padding, flip=flip, size=size
    )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=train,
        num_workers=workers,
        persistent_workers=workers > 0,
        drop_last=drop_last and train,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
    )


@torch.no_grad()
def tutorial_accuracy(model: nn.Module, loader: DataLoader[tuple[Tensor, int]]) -> float:
    model.eval()
    device = next(model.parameters()).device
    correct = total = 0
    for x, y in loader:
        logits = model(x.to(device))
        correct += int((logits.argmax(1).cpu() == y).sum())
        total += len(y)
    return correct / total


# --------------------------------------------------------------------------- the trainer


def trainer_run(config: TrainConfig, train: ImageDataset, test: ImageDataset, out: Path) -> Run:
    """``prepare(config)`` on in-memory data: the run's data module imported ``load_dataset`` by
    name, so that is the name patched (only while ``prepare`` reads the data)."""

    def in_memory(name: Any, data_dir: Any = None, split: str = "train", **_: Any) -> ImageDataset:
        return train if split == "train" else test

    with mock.patch.object(loaders, "load_dataset", in_memory):
        return prepare(config, out, quiet=True, checkpoint=None)


def trainer_epoch(run: Run, max_steps: int | None = None) -> int:
    """One whole epoch of ``train_one_epoch`` (or its first ``max_steps``, through the trainer's
    own early stop); returns the number of images seen."""
    loader = run.train_loader
    if loader.index:  # a warm-up stopped mid-epoch: start the next epoch from its first batch
        loader.set_epoch(loader.epoch + 1)
    run.partial, run.stop_requested = {}, False
    run.stop_after_steps = run.step + max_steps if max_steps else None
    train_one_epoch(run, loader.epoch)
    return int(run.partial["count"])


# --------------------------------------------------------------------------- measuring


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class MatmulPeak:
    """FLOP/s of ``torch.mm`` on n x n matrices of ``dtype``, the best of 3 products; timed once
    per round, under the same load as the training it is compared with. ``cpu_rates``: FLOP per
    CPU second of this process (all its threads), where other load hardly counts."""

    dtype: torch.dtype
    device: torch.device
    n: int
    rates: list[float] = field(default_factory=list)
    cpu_rates: list[float] = field(default_factory=list)

    @classmethod
    def sized(cls, dtype: torch.dtype, device: torch.device, max_size: int = 2048) -> MatmulPeak:
        """n doubled from 256 until one product takes 0.1 s or n reaches ``max_size`` (an
        emulated dtype stays small and quick)."""
        peak = cls(dtype, device, 256)
        while peak.n < max_size and 2 * peak.n**3 / peak.measure() < 0.1:
            peak.n *= 2
        peak.rates.clear()
        return peak

    def measure(self) -> float:
        a = torch.randn(self.n, self.n, device=self.device).to(self.dtype)
        b = torch.randn(self.n, self.n, device=self.device).to(self.dtype)
        torch.mm(a, b)  # warm-up
        best = best_cpu = float("inf")
        for _ in range(3):
            synchronize(self.device)
            start, cpu_start = time.perf_counter(), time.process_time()
            torch.mm(a, b)
            synchronize(self.device)
            best = min(best, time.perf_counter() - start)
            best_cpu = min(best_cpu, max(time.process_time() - cpu_start, 1e-9))
        self.rates.append(2 * self.n**3 / best)
        self.cpu_rates.append(2 * self.n**3 / best_cpu)
        return self.rates[-1]


@dataclass
class Contender:
    name: str
    epoch: Callable[[int | None], int]  # (max_steps) -> images
    device: torch.device
    config: TrainConfig | None = None  # the trainer's; None: the tutorial loop (fp32)
    in_process: bool = True  # False: DataLoader workers do part of the work
    rates: list[float] = field(default_factory=list)  # images per wall-clock second
    cpu_rates: list[float] = field(default_factory=list)  # images per CPU second of this process

    @property
    def precision(self) -> str:
        return self.config.precision if self.config is not None else "fp32"

    def measure(self) -> None:
        """Time one epoch. CPU seconds of this process hardly depend on load from other
        processes; they count all the work only where no worker processes share it."""
        synchronize(self.device)
        start, cpu_start = time.perf_counter(), time.process_time()
        images = self.epoch(None)
        synchronize(self.device)
        self.rates.append(images / (time.perf_counter() - start))
        self.cpu_rates.append(images / max(time.process_time() - cpu_start, 1e-9))


def spread(values: Sequence[float], fmt: str) -> str:
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


# --------------------------------------------------------------------------- accuracy check


def accuracy_check(args: argparse.Namespace, fast: TrainConfig) -> None:
    """Test accuracy of the tutorial loop and of the trainer's ``fast`` variant on the embedded
    digits after the same epochs, seeds and settings."""
    MODEL = args.model
    settings = CHECK_SETTINGS.get(MODEL, {})
    train, test = load_dataset("digits", split="train"), load_dataset("digits", split="test")
    print(
        f"\naccuracy at equal epochs: {train.name} ({len(train)} train / {len(test)} test, "
        f"{'x'.join(map(str, train.image_size))}), {args.check_epochs} epochs, batch "
        f"{args.check_batch_size}, augment {args.check_augment}, "
        f"{settings.get('optimizer', fast.optimizer)} {fast.schedule} "
        f"lr {settings.get('lr', fast.lr)}; "
        f"tutorial loop vs trainer {fast.precision}{' channels_last' * fast.channels_last}"
    )
    print(f"{'seed':>6}  {'tutorial':>9}  {'trainer':>9}")
    results: list[tuple[float, float]] = []
    for seed in args.check_seeds:
        check = make_config(
            MODEL,
            "fast",
            data="digits",
            epochs=args.check_epochs,
            batch_size=args.check_batch_size,
            augment=args.check_augment,
            precision=fast.precision,
            channels_last=fast.channels_last,
            threads=args.threads,
            device=args.device,
            seed=seed,
            **settings,
        )
        with tempfile.TemporaryDirectory() as out:
            run = prepare(check, Path(out), quiet=True, checkpoint=None)
        torch.manual_seed(seed)  # prepare seeds the same way just before building its model
        model = create_model(MODEL, num_classes=train.num_classes, in_channels=train.image_size[0])
        start_state = run.model.state_dict()
        if any(not torch.equal(v, start_state[k].cpu()) for k, v in model.state_dict().items()):
            raise RuntimeError("the two loops do not start from the same weights")
        random.seed(seed)
        size = tuple(run.inference["input_size"][1:])  # what the trainer adapts the data to
        loader = tutorial_loader(
            train,
            batch_size=check.batch_size,
            workers=0,
            train=True,
            augment=check.augment,
            seed=seed,
            drop_last=run.train_loader.drop_last,
            size=size,  # type: ignore[arg-type]
        )
        tutorial = TutorialLoop(model, loader, run.config, run.schedule, run.device)
        for epoch in range(check.epochs):
            tutorial.train_epoch()
            run.train_loader.set_epoch(epoch)
            run.partial = {}
            train_one_epoch(run, epoch)
        last_lrs = {o.param_groups[0]["lr"] for o in (tutorial.optimizer, run.optimizer)}
        if tutorial.step != run.step or len(last_lrs) != 1:
            raise RuntimeError(
                f"unequal runs: {tutorial.step} and {run.step} steps, last rates {last_lrs}"
            )
        test_loader = tutorial_loader(
            test,
            batch_size=1000,
            workers=0,
            train=False,
            augment="none",
            seed=seed,
            drop_last=False,
            size=size,  # type: ignore[arg-type]
        )
        ours = trainer.evaluate(run.eval_model, run.test_loader, test.num_classes, run)[1]
        theirs = tutorial_accuracy(tutorial.model, test_loader)
        results.append((theirs, ours))
        print(f"{seed:>6}  {theirs:>9.2%}  {ours:>9.2%}")
    mean_theirs = statistics.mean(r[0] for r in results)
    mean_ours = statistics.mean(r[1] for r in results)
    difference = 100 * (mean_ours - mean_theirs)
    print(
        f"{'mean':>6}  {mean_theirs:>9.2%}  {mean_ours:>9.2%}  (trainer {difference:+.2f} points)"
    )
    verdict = "met" if difference >= -args.check_tolerance else "NOT met"
    print(
        f"no loss of accuracy (trainer mean no more than {args.check_tolerance:.1f} points below "
        f"the tutorial loop's): {verdict}"
    )


# --------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(CASES), default="resnet20")
    parser.add_argument("--images", type=int, default=512, help="synthetic training images")
    parser.add_argument("--batch-size", type=int, help="default: the model's recipe's")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per contender")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (DataLoader workers always use 1); 1 is robust on a shared CPU",
    )
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[0],
        help="worker processes of the torchvision-style loops (none: not timed)",
    )
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["auto"],
        choices=["auto", "fp32", "bf16"],
        help="trainer precisions; auto: fp32, and bf16 where the device computes it natively",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time the trainer torch.compiled (channels_last): minutes of compiling",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--check-epochs", type=int, default=2, help="0 skips the accuracy check")
    parser.add_argument("--check-batch-size", type=int, default=32)
    parser.add_argument("--check-seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--check-augment",
        default="none",
        choices=sorted(PER_SAMPLE_AUGMENT),
        help="none by default: resnet_cifar's 4-pixel shift is half an 8x8 digit",
    )
    parser.add_argument("--check-tolerance", type=float, default=1.0, help="percentage points")
    args = parser.parse_args()
    if args.compile:  # time a first compile, not a cache hit from an earlier run
        importlib.import_module("torch._inductor.config").fx_graph_cache = False
        importlib.import_module("torch._functorch.config").enable_autograd_cache = False
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    wall_start = time.perf_counter()

    MODEL = args.model
    shape, mean, std, augment = CASES[MODEL]
    recipe = make_config(MODEL)
    batch_size = args.batch_size or recipe.batch_size
    info = model_info(MODEL)
    assert info.macs is not None, f"{MODEL} has no MACs in its metadata"
    flops_per_image = 3 * 2 * info.macs  # forward + backward (twice the forward), batch 1
    print(
        f"{MODEL} training on {args.images} random images (uint8 {'x'.join(map(str, shape))}, 10 "
        f"classes), batch {batch_size}, {recipe.optimizer} (recipe {recipe.recipe}), trainer "
        f"augmentation {augment}; torch {torch.__version__}, "
        f"{platform.machine()} {torch.backends.cpu.get_cpu_capability()}, device {device}"
    )
    print(
        f"threads: torch {torch.get_num_threads()} (OMP_NUM_THREADS="
        f"{os.environ.get('OMP_NUM_THREADS', 'unset')}), {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at start"
    )

    peaks: dict[str, MatmulPeak] = {}
    natives: dict[str, bool | None] = {}
    for precision, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peaks[precision] = MatmulPeak.sized(dtype, device)
        natives[precision] = native_precision(dtype, device)
    precisions = ["fp32"] if "auto" in args.precisions else list(args.precisions)
    if "auto" in args.precisions and natives["bf16"]:
        precisions.append("bf16")
    elif "auto" in args.precisions:
        print(
            "bf16 autocast: not timed, this device has no native bf16 (it would only slow "
            "training down; --precisions fp32 bf16 times it anyway)"
        )
    defaults = (resolve_precision(recipe.precision, device), recipe.channels_last, recipe.compile)
    if defaults[0] not in precisions:  # the trainer's defaults are always timed
        precisions.append(defaults[0])

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (args.images, *shape), dtype=np.uint8))
    labels = torch.from_numpy(rng.integers(0, 10, args.images))
    data = ImageDataset("synthetic", "train", images, labels, CLASSES, mean, std, "random")
    test = ImageDataset(
        "synthetic", "test", images[:256], labels[:256], CLASSES, mean, std, "random"
    )

    def config(
        precision: str = "fp32", channels_last: bool = False, compile: bool = False
    ) -> TrainConfig:
        return make_config(
            MODEL,
            data="synthetic",
            epochs=1_000_000,  # never the last epoch: the schedule stays in its first steps
            batch_size=batch_size,
            augment=augment,
            precision=precision,
            channels_last=channels_last,
            compile=compile,
            ema=None,  # the tutorial loop has none
            threads=args.threads,
            device=args.device,
        )

    contenders: list[Contender] = []
    out = tempfile.TemporaryDirectory()
    base = trainer_run(config(), data, test, Path(out.name))  # the tutorial's settings and steps

    def tutorial(loader: Any) -> TutorialLoop:
        torch.manual_seed(base.config.seed)  # the trainer's initial weights
        model = create_model(MODEL, num_classes=10, in_channels=shape[0])
        return TutorialLoop(model, loader, base.config, base.schedule, device)

    # The issue's baseline: the images normalised once (the trainer's evaluation pipeline), in a
    # TensorDataset. It is the one ratios to the target are taken against.
    assert base.test_loader.transform is not None
    tensors = TensorDataset(base.test_loader.transform(data.images, None), data.labels)
    tensor_loader = DataLoader(
        tensors,
        batch_size=batch_size,
        shuffle=True,
        drop_last=base.train_loader.drop_last,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(0),
    )
    baseline = Contender(
        "tutorial: DataLoader(TensorDataset), fp32", tutorial(tensor_loader).train_epoch, device
    )
    contenders.append(baseline)
    for workers in args.workers:
        loader = tutorial_loader(
            data,
            batch_size=batch_size,
            workers=workers,
            train=True,
            augment=augment,
            seed=0,
            drop_last=base.train_loader.drop_last,
            pin_memory=device.type == "cuda",
        )
        contenders.append(
            Contender(
                f"torchvision-style: per-sample PIL, {workers} workers, fp32",
                tutorial(loader).train_epoch,
                device,
                in_process=workers == 0,
            )
        )
    variants = [(p, cl, False) for p in precisions for cl in (False, True)]
    variants += [(p, True, True) for p in precisions if args.compile]
    for precision, channels_last, compiled in variants:
        run = trainer_run(config(precision, channels_last, compiled), data, test, Path(out.name))
        name = f"trainer {precision}" + " channels_last" * channels_last + " compiled" * compiled
        contenders.append(
            Contender(name, functools.partial(trainer_epoch, run), device, run.config)
        )

    # The per-sample data path alone (no model): its share of a 0-worker torchvision-style step
    # bounds what any data path can gain there (Amdahl).
    data_only = tutorial_loader(
        data,
        batch_size=batch_size,
        workers=0,
        train=True,
        augment=augment,
        seed=0,
        drop_last=base.train_loader.drop_last,
    )

    def data_epoch(max_batches: int | None) -> int:
        return sum(len(y) for _, y in itertools.islice(data_only, max_batches))

    data_path = Contender("per-sample data path alone", data_epoch, torch.device("cpu"))

    warmups: dict[str, float] = {}
    for contender in contenders:  # warm-up: one step each (allocations, kernel selection, compile)
        if contender.config is not None and contender.config.compile:
            # an empty inductor cache: compiled kernels of earlier runs are not reused
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = tempfile.mkdtemp(dir=out.name)
        start = time.perf_counter()
        contender.epoch(1)
        warmups[contender.name] = time.perf_counter() - start
    ratios: dict[str, list[float]] = {c.name: [] for c in contenders}
    cpu_ratios: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(args.rounds):  # interleaved: load from elsewhere hits every contender alike
        for contender in contenders:
            contender.measure()
        data_path.measure()
        for peak in peaks.values():
            peak.measure()
        for contender in contenders:
            ratios[contender.name].append(contender.rates[-1] / baseline.rates[-1])
            cpu_ratios[contender.name].append(contender.cpu_rates[-1] / baseline.cpu_rates[-1])
    out.cleanup()

    width = max(len(c.name) for c in contenders)
    header = (
        f"{'':<{width}}  {'images/s, median (range)':>24}  {'vs tutorial':>18}  "
        f"{'GFLOP/s':>7}  {'MFU':>6}  {'images/CPU-s':>12}  {'vs, per CPU-s':>18}"
    )
    print(f"\n{args.rounds} rounds of one epoch ({len(base.train_loader)} steps) each")
    for precision, peak in peaks.items():
        native = {True: "native", False: "emulated", None: "native?"}[natives[precision]]
        gflops = [r / 1e9 for r in peak.rates]
        cpu_gflops = [r / 1e9 for r in peak.cpu_rates]
        print(
            f"matmul peak {precision} ({peak.n}x{peak.n}, {native}): "
            f"{spread(gflops, ',.1f')} GFLOP/s, {spread(cpu_gflops, ',.1f')} per CPU second"
        )
    print(header)
    print("-" * len(header))
    for contender in contenders:
        achieved = statistics.median(contender.rates) * flops_per_image
        busy = statistics.median(contender.cpu_rates if contender.in_process else contender.rates)
        peak = peaks[contender.precision]
        utilisation = (
            busy * flops_per_image / max(peak.cpu_rates if contender.in_process else peak.rates)
        )
        per_cpu = "-"
        per_cpu_ratio = "-"
        if contender.in_process:
            per_cpu = f"{statistics.median(contender.cpu_rates):,.1f}"
            per_cpu_ratio = spread(cpu_ratios[contender.name], ".2f")
        print(
            f"{contender.name:<{width}}  {spread(contender.rates, ',.1f'):>24}  "
            f"{spread(ratios[contender.name], '.2f'):>18}  "
            f"{achieved / 1e9:>7.2f}  {utilisation:>6.1%}  {per_cpu:>12}  {per_cpu_ratio:>18}"
        )
    print(
        f"(MFU: {flops_per_image / 1e6:.1f} MFLOP per training image = 3 x 2 x "
        f"{info.macs:,} forward MACs; GFLOP/s per wall-clock second; MFU: per CPU second over "
        "the best matmul product per CPU second of the contender's precision, per wall-clock "
        "second for loops with workers)"
    )
    trainers = [c for c in contenders if c.config is not None]
    fast = max(trainers, key=lambda c: statistics.median(ratios[c.name]))
    speedup = statistics.median(ratios[fast.name])
    verdict = "met" if speedup >= TARGET_SPEEDUP else "NOT met"
    if max(ratios[fast.name]) > 2 * min(ratios[fast.name]):
        # e.g. 2 threads on a loaded 2-core machine: OpenMP waits on preempted threads
        verdict = "no verdict: the rounds' ratios differ more than 2x (too much other load)"
    print(
        f"fast path ({fast.name}): {speedup:.2f}x the tutorial loop over a TensorDataset, "
        f"{statistics.median(cpu_ratios[fast.name]):.2f}x per CPU second "
        f"(target {TARGET_SPEEDUP}x): {verdict}"
    )
    # The model's own settings (SPEED_SETTINGS: precision auto and channels_last for ResNet-20)
    plain = next(
        c
        for c in trainers
        if c.config is not None
        and (c.config.precision, c.config.channels_last, c.config.compile) == defaults
    )
    print(
        f"  the trainer's defaults for {MODEL} ({plain.name}): "
        f"{statistics.median(ratios[plain.name]):.2f}x, "
        f"{statistics.median(cpu_ratios[plain.name]):.2f}x per CPU second"
    )
    styled = [c for c in contenders if c.name.startswith("torchvision-style")]
    if styled:
        best = max(styled, key=lambda c: statistics.median(c.rates))
        versus = [f / b for f, b in zip(fast.rates, best.rates, strict=True)]
        print(f"  against the best torchvision-style loop ({best.name}): {spread(versus, '.2f')}x")
    serial = next((c for c in styled if c.in_process), None)
    if serial is not None:
        share = statistics.median(serial.cpu_rates) / statistics.median(data_path.cpu_rates)
        print(
            f"  the per-sample data path alone (no model, "
            f"{statistics.median(data_path.rates):,.0f} images/s) is {share:.1%} of a 0-worker "
            f"torchvision-style step's CPU time: a faster data path alone gains at most "
            f"{1 / (1 - share):.2f}x over that loop"
        )
    for contender in trainers:
        if contender.config is None or not contender.config.compile:
            continue
        eager = next(
            c
            for c in trainers
            if c.config is not None
            and c.config == dataclasses.replace(contender.config, compile=False)
        )
        step = batch_size / statistics.median(eager.rates)
        compile_seconds = warmups[contender.name] - step
        # a step's saving per CPU second (robust to load); the compile time is wall-clock
        saved = 1 / statistics.median(eager.cpu_rates) - 1 / statistics.median(contender.cpu_rates)
        pays = (
            f"pays for itself after {compile_seconds / saved:,.0f} images"
            if saved > 0
            else "never pays for itself (no faster than eager)"
        )
        print(f"  {contender.name}: {compile_seconds:.0f}s of compiling (wall-clock); {pays}")

    if args.check_epochs > 0:
        assert fast.config is not None
        accuracy_check(args, fast.config)
    print(
        f"\ntotal {time.perf_counter() - wall_start:.0f}s, load average "
        f"{os.getloadavg()[0]:.1f} at the end"
    )


if __name__ == "__main__":
    main()
