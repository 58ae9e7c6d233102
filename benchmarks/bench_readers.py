"""What the hostile-input checks of issue #13 cost on honest files, against unchecked reads in the
same run (ratios: checked / unchecked time; 1.0 is free).

- IDX: ``read_idx`` (header first, gzip streamed in 1 MiB blocks, never past the declared size)
  against ``gzip.decompress`` of the whole file then ``np.frombuffer``, on an MNIST-sized
  training images file (60000x28x28, random pixels).
- CIFAR: ``safe_loads`` (every opcode parsed before the restricted unpickler runs) against the
  restricted unpickler alone, on a CIFAR-10-sized batch (10000 rows of 3072 bytes and labels).
- Image folder: ``scan_images`` (headers through a size-capped file object) against
  ``Image.open`` on each path, over 200 small PNGs.
- Checkpoint: ``load_checkpoint`` (zip check, weights-only load, limits, meta-device shapes)
  against ``torch.load(weights_only=True)``, on a ResNet-18 checkpoint.

    .venv/bin/python benchmarks/bench_readers.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import gzip
import io
import pickle
import struct
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cnnzoo import create_model
from cnnzoo.data.cifar import RestrictedUnpickler, safe_loads
from cnnzoo.data.folder import scan_images
from cnnzoo.data.idx import read_idx
from cnnzoo.train.checkpoint import load_checkpoint
from cnnzoo.train.config import TrainConfig


def _best(fn: Callable[[], object], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        # IDX
        images = rng.integers(0, 256, (60000, 28, 28), dtype=np.uint8)
        idx = root / "train-images-idx3-ubyte.gz"
        idx.write_bytes(
            gzip.compress(struct.pack(">HBBIII", 0, 8, 3, 60000, 28, 28) + images.tobytes(), 6)
        )

        def unchecked_idx() -> object:
            raw = gzip.decompress(idx.read_bytes())
            return np.frombuffer(raw, np.uint8, offset=16).reshape(60000, 28, 28).copy()

        # CIFAR
        batch = pickle.dumps(
            {
                b"data": rng.integers(0, 256, (10000, 3072), dtype=np.uint8),
                b"labels": rng.integers(0, 10, 10000).tolist(),
            },
            protocol=2,
        )

        def unchecked_cifar() -> object:
            return RestrictedUnpickler(io.BytesIO(batch), encoding="bytes").load()

        # image folder
        pngs = []
        for k in range(200):
            path = root / f"{k}.png"
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path)
            pngs.append(path)

        def unchecked_scan() -> object:
            sizes = []
            for path in pngs:
                with Image.open(path) as image:
                    sizes.append(image.size)
            return sizes

        # checkpoint
        model = create_model("resnet18", num_classes=10, in_channels=3)
        checkpoint = root / "last.pt"
        torch.save(
            {
                "model": model.state_dict(),
                "config": TrainConfig(
                    model="resnet18", model_kwargs={"num_classes": 10, "in_channels": 3}
                ).to_dict(),
                "data": {
                    "name": "x",
                    "classes": [str(c) for c in range(10)],
                    "mean": [0.5] * 3,
                    "std": [0.25] * 3,
                    "image_size": [3, 32, 32],
                },
                "ema": None,
            },
            checkpoint,
        )

        rows = [
            ("IDX 60000x28x28 .gz", lambda: read_idx(idx), unchecked_idx),
            ("CIFAR batch pickle", lambda: safe_loads(batch, "b"), unchecked_cifar),
            ("200 PNG headers", lambda: scan_images(pngs), unchecked_scan),
            (
                "ResNet-18 checkpoint",
                lambda: load_checkpoint(checkpoint),
                lambda: torch.load(checkpoint, weights_only=True),
            ),
        ]
        print(f"{'reader':<22} {'checked s':>10} {'unchecked s':>12} {'ratio':>6}")
        for name, checked, unchecked in rows:
            ours = _best(checked, args.rounds)
            base = _best(unchecked, args.rounds)
            print(f"{name:<22} {ours:>10.4f} {base:>12.4f} {ours / base:>6.2f}")


if __name__ == "__main__":
    main()
