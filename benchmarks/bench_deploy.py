"""CPU deployment, every runtime side by side in one run: PyTorch eager fp32, PyTorch optimised
(``optimize_for_inference``, precision auto), ONNX Runtime fp32 and ONNX Runtime int8 (static,
QDQ, per-channel weights, onnxruntime's own quantiser).

Issue 16's targets on the project's 2-core CPU:
- speed: ResNet-50 at batch 8 (224x224), ONNX Runtime int8 >= 3x eager fp32 (goal 3.5x);
- accuracy: LeNet-5 and ResNet-20 trained on the embedded digits keep int8 top-1 within 0.5
  points of fp32 on the held-out split (int8 calibrated on the run's own training images).

Every ratio compares numbers timed in the same call, in alternating rounds, so that load from
the other users of the machine hits every runtime alike; the load average is printed before
and after. The accuracy part trains both runs first (about a minute on 2 idle cores) unless
``--runs`` names existing ones.

    .venv/bin/python benchmarks/bench_deploy.py [--batch-size 8] [--iters 8] [--repeats 2]
        [--runs LENET5_RUN RESNET20_RUN] [--skip-speed] [--skip-accuracy]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
from pathlib import Path

import torch

from cnnzoo.deploy import bench_runtimes, export_int8, load_source

SPEED_TARGET = 3.0
SPEED_GOAL = 3.5
ACCURACY_TOLERANCE_POINTS = 0.5


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} CPUs"


def speed(batch_size: int, iters: int, repeats: int) -> None:
    source = load_source("resnet50")
    print(f"resnet50, batch {batch_size}, 3x224x224, {torch.get_num_threads()} threads; {_load()}")
    ratios = []
    for repeat in range(repeats):
        results = bench_runtimes(source, batch_size=batch_size, warmup=1, iters=iters)
        eager = results[0]
        print(f"  run {repeat + 1}:")
        for result in results:
            ratio = eager.timing.p50_s / result.timing.p50_s
            share = "-" if result.peak_share is None else f"{result.peak_share:.0%}"
            print(
                f"    {result.label:<22}{result.timing.images_per_s:>8.2f} img/s"
                f"  p50 {result.timing.p50_s * 1e3:>7.1f} ms  p95 {result.timing.p95_s * 1e3:>7.1f}"
                f" ms  {ratio:>5.2f}x  peak share {share}"
            )
        int8 = next(r for r in results if r.precision == "int8")
        ratios.append(eager.timing.p50_s / int8.timing.p50_s)
        print(f"    ({_load()})")
    worst = min(ratios)
    verdict = "met" if worst >= SPEED_TARGET else "NOT met"
    goal = "met" if worst >= SPEED_GOAL else "not met"
    print(
        f"  int8 / eager fp32: {', '.join(f'{r:.2f}x' for r in ratios)}; target >= "
        f"{SPEED_TARGET:g}x {verdict} (worst run), goal {SPEED_GOAL:g}x {goal}"
    )


def _train(model: str, out: Path, epochs: int | None) -> Path:
    from cnnzoo.train import fit, make_config

    overrides = {} if epochs is None else {"epochs": epochs}
    fit(make_config(model, **overrides), out, quiet=True)
    return out


def accuracy(runs: list[str] | None, work: Path) -> None:
    if runs is None:
        print(f"training lenet5 (recipe default) and resnet20 (15 epochs) on digits; {_load()}")
        runs = [
            str(_train("lenet5", work / "lenet5", None)),
            str(_train("resnet20", work / "resnet20", 15)),
        ]
    for run in runs:
        source = load_source(run)
        result = export_int8(source, work / f"{source.name}-int8.onnx")
        fp32, int8 = result.accuracy["fp32"], result.accuracy["int8"]
        points = (int8 - fp32) * 100
        verdict = "met" if abs(points) <= ACCURACY_TOLERANCE_POINTS else "NOT met"
        print(
            f"{source.name:<10} test {result.test_images} images: ONNX fp32 {fp32:.2%}, int8 "
            f"{int8:.2%} ({points:+.2f} points; within {ACCURACY_TOLERANCE_POINTS} {verdict}); "
            f"calibrated on {result.calibration_batches} batches of training images"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="whole speed runs (noise check)")
    parser.add_argument("--runs", nargs=2, metavar=("LENET5_RUN", "RESNET20_RUN"))
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(
        f"torch {torch.__version__}, {platform.machine()}, "
        f"{torch.backends.cpu.get_cpu_capability()}"
    )
    if not args.skip_speed:
        speed(args.batch_size, args.iters, args.repeats)
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory(prefix="bench-deploy-") as work:
            accuracy(args.runs, Path(work))


if __name__ == "__main__":
    main()
