"""Images/s of cnnzoo's on-device pipeline against the usual per-sample pipeline, same run.

The baseline is the tutorial recipe: a Dataset that turns each stored array into a PIL image,
per-sample RandomCrop(32, padding=4) + RandomHorizontalFlip + ToTensor + Normalize (written
here with Pillow and torch, as torchvision does them), under torch's DataLoader. Ours: the whole
uint8 set on the device, batches gathered by index, the ``resnet_cifar`` preset batched. Both
produce normalised float batches of CIFAR-shaped data (random pixels: the cost does not depend
on content).

    .venv/bin/python benchmarks/bench_data.py [--batch-size 128] [--workers 0 2] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Iterable

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import DataLoader, Dataset

from cnnzoo.data import DeviceLoader, build_pipeline

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PerSampleCIFAR(Dataset[tuple[torch.Tensor, int]]):
    """What torchvision.datasets.CIFAR10 + transforms.Compose do per sample."""

    def __init__(self, data: np.ndarray, labels: np.ndarray) -> None:
        self.data, self.labels = data, labels  # (N, 32, 32, 3) uint8, as CIFAR10.data
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.data[i])
        image = ImageOps.expand(image, border=4, fill=0)  # RandomCrop(32, padding=4)
        top, left = random.randint(0, 8), random.randint(0, 8)
        image = image.crop((left, top, left + 32, top + 32))
        if random.random() < 0.5:  # RandomHorizontalFlip
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        tensor = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())  # ToTensor
        tensor = tensor.permute(2, 0, 1).float().div(255)
        return (tensor - self.mean) / self.std, int(self.labels[i])  # Normalize


def images_per_second(
    make_batches: Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]], min_seconds: float
) -> tuple[float, float]:
    """Images per wall-clock second and per CPU second of this process, over whole epochs
    repeated until ``min_seconds`` have passed (every contender timed over a similar window)."""
    count, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        count += sum(x.shape[0] for x, _ in make_batches())
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return count / elapsed, count / max(time.process_time() - cpu_start, 1e-9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    parser.add_argument("--rounds", type=int, default=3, help="best of this many rounds")
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one measurement")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads of the main process (DataLoader "
        "workers always use 1); 1 is fair to the per-sample loader and robust on a shared CPU",
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (args.images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.images)
    print(
        f"{args.images} CIFAR-shaped images, batch {args.batch_size}, torch threads "
        f"{torch.get_num_threads()}, device {args.device}"
    )

    contenders: dict[str, Callable[[], Iterable[tuple[torch.Tensor, torch.Tensor]]]] = {}
    for workers in args.workers:
        loader = DataLoader(
            PerSampleCIFAR(data, labels),
            batch_size=args.batch_size,
            shuffle=True,
            num_workers=workers,
            persistent_workers=workers > 0,
        )
        contenders[f"per-sample DataLoader, {workers} workers"] = lambda loader=loader: loader

    pipe = build_pipeline("resnet_cifar", mean=MEAN, std=STD, train=True, data_size=(3, 32, 32))
    ours = DeviceLoader(
        torch.from_numpy(data).permute(0, 3, 1, 2).contiguous(),
        torch.from_numpy(labels),
        batch_size=args.batch_size,
        transform=pipe,
        device=args.device,
    )

    def our_epoch() -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
        yield from ours
        if ours.device.type == "cuda":
            torch.cuda.synchronize()

    contenders["cnnzoo DeviceLoader + resnet_cifar"] = our_epoch

    # rounds interleaved, best of each: a shared machine's load hits every contender alike
    wall = dict.fromkeys(contenders, 0.0)
    cpu = dict.fromkeys(contenders, 0.0)
    for _ in range(args.rounds):
        for name, make in contenders.items():
            w, c = images_per_second(make, args.seconds)
            wall[name], cpu[name] = max(wall[name], w), max(cpu[name], c)

    ours_name = "cnnzoo DeviceLoader + resnet_cifar"
    baseline = max(v for k, v in wall.items() if k != ours_name)
    width = max(map(len, contenders))
    print(f"{'':<{width}}  {'images/s':>10}  {'ratio':>6}  {'images/CPU-s':>12}")
    for name in contenders:
        # CPU time is this process's: meaningful where no worker processes do the work
        in_process = name == ours_name or name.endswith(" 0 workers")
        per_cpu = f"{cpu[name]:>12,.0f}" if in_process else f"{'-':>12}"
        print(f"{name:<{width}}  {wall[name]:>10,.0f}  {wall[name] / baseline:>5.1f}x  {per_cpu}")
    print(
        f"speed-up over the best per-sample loader (wall clock): {wall[ours_name] / baseline:.1f}x"
    )
    zero = next((k for k in contenders if k.endswith(" 0 workers")), None)
    if zero is not None:
        print(
            f"speed-up per CPU second over the 0-worker loader (robust to other load on the "
            f"machine): {cpu[ours_name] / cpu[zero]:.1f}x"
        )


if __name__ == "__main__":
    main()
