"""Inference speed of ``optimize_for_inference`` against eager fp32, measured in the same run.

Issue 7's targets, for ResNet-50 at batch 8 and 224x224 on the project's 2-core CPU: optimised
bf16 at least 2x eager fp32 with a relative output error under 2e-2, and optimised fp32 no
slower than eager. Each line times eager fp32 and one optimised variant alternately (so that
load from elsewhere hits both) and prints their ratio; every ratio compares numbers from the
same call.

    .venv/bin/python benchmarks/bench_inference.py [--model resnet50] [--batch-size 8]
        [--iters 6] [--precisions fp32 bf16] [--compile] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import warnings

import torch

from cnnzoo import create_model, model_info
from cnnzoo.inference import PRECISIONS, native_precision, run_benchmark

BF16_TARGET_SPEEDUP = 2.0
BF16_TARGET_ERROR = 2e-2


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet50")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    parser.add_argument("--compile", action="store_true", help="also time torch.compile'd")
    parser.add_argument("--threads", type=int)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    info = model_info(args.model)
    model = create_model(args.model).eval()
    example = torch.randn(args.batch_size, *info.input_size)
    print(
        f"{args.model}, batch {args.batch_size}, input {'x'.join(map(str, info.input_size))}; "
        f"torch {torch.__version__}, {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"
    )
    for precision in args.precisions:
        native = native_precision(PRECISIONS[precision], "cpu")
        if native is False:
            print(f"  ({precision}: no native support on this CPU, PyTorch emulates it)")
    header = f"{'variant':<26}{'eager img/s':>12}{'opt img/s':>11}{'ratio':>8}{'rel err':>10}"
    print(header)
    print("-" * len(header))
    variants = [(p, False) for p in args.precisions]
    if args.compile:
        variants += [(p, True) for p in args.precisions]
    ratios = {}
    for precision, compiled in variants:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the emulation notice, said above
            eager, optimised = run_benchmark(
                model,
                example,
                precision=precision,
                compile=compiled,
                warmup=args.warmup,
                iters=args.iters,
            )
        ratio = eager.timing.p50_s / optimised.timing.p50_s
        ratios[precision, compiled] = ratio
        error = optimised.check.rel_error if optimised.check else float("nan")
        label = f"optimised {precision}" + (" compiled" if compiled else "")
        print(
            f"{label:<26}{eager.timing.images_per_s:>12.2f}{optimised.timing.images_per_s:>11.2f}"
            f"{ratio:>7.2f}x{error:>10.1e}"
        )
        if precision == "bf16" and not compiled:
            met = ratio >= BF16_TARGET_SPEEDUP and error < BF16_TARGET_ERROR
            print(
                f"  target bf16 >= {BF16_TARGET_SPEEDUP:g}x eager fp32, error < "
                f"{BF16_TARGET_ERROR:g}: {'met' if met else 'NOT met'}"
            )
        if precision == "fp32" and not compiled:
            print(f"  target fp32 no slower than eager: {'met' if ratio >= 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()
