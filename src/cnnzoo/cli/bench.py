"""`cnnzoo bench MODEL`: eager fp32 against the optimised module, side by side."""

from __future__ import annotations

import argparse
import warnings
from collections.abc import Callable

import torch

from cnnzoo._format import human_count, text_table
from cnnzoo.cli._common import CLIError, parse_input_size
from cnnzoo.cli._weights import add_weights_argument, build_model
from cnnzoo.inference import PRECISIONS, BenchResult, native_precision, run_benchmark
from cnnzoo.registry import model_info


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench", help="time a model: eager fp32 against optimised (fused, channels-last, ...)"
    )
    parser.add_argument("model", help="a registered model name (see `cnnzoo list`)")
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="default 1")
    parser.add_argument(
        "--input", metavar="CxHxW", help="input size (default: the model's, e.g. 3x224x224)"
    )
    parser.add_argument(
        "--precision", choices=list(PRECISIONS), default="fp32", help="of the optimised side"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised side")
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (torch default)")
    parser.add_argument("--iters", type=int, default=10, metavar="N", help="timed runs (10)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs (2)")
    add_weights_argument(parser)
    parser.set_defaults(func=run)


def _device(text: str) -> torch.device:
    try:
        device = torch.device(text)
    except RuntimeError:
        raise CLIError(f"unknown device {text!r}: expected cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CLIError("--device cuda: no CUDA device is available here")
    if device.type not in ("cpu", "cuda"):
        raise CLIError(f"unsupported device {text!r}: cpu or cuda")
    return device


def _table(results: tuple[BenchResult, BenchResult]) -> str:
    eager = results[0]

    def row(label: str, cell: Callable[[BenchResult], str]) -> list[str]:
        return [label, *(cell(r) for r in results)]

    rows = [
        row("images/s", lambda r: f"{r.timing.images_per_s:.2f}"),
        row("latency p50 (ms)", lambda r: f"{r.timing.p50_s * 1e3:.1f}"),
        row("latency p95 (ms)", lambda r: f"{r.timing.p95_s * 1e3:.1f}"),
        row("GFLOP/s", lambda r: f"{r.flops_per_s / 1e9:.1f}"),
        row("matmul peak GFLOP/s", lambda r: f"{r.peak_flops_per_s / 1e9:.1f}"),
        row("share of peak", lambda r: f"{r.peak_share:.0%}"),
        row("rel. output error", lambda r: "-" if r.check is None else f"{r.check.rel_error:.1e}"),
        row("speed-up", lambda r: f"{eager.timing.p50_s / r.timing.p50_s:.2f}x"),
    ]
    headers = ["", *(r.label for r in results)]
    return text_table(headers, rows, right=[False, True, True])


def run(args: argparse.Namespace) -> int:
    for option in ("batch_size", "iters", "threads"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise CLIError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        raise CLIError(f"--warmup must be at least 0, got {args.warmup}")
    info = model_info(args.model)
    channels, height, width = parse_input_size(args.input) if args.input else info.input_size
    device = _device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)

    model = build_model(args.model, args.weights, in_channels=channels).to(device)
    example = torch.randn(args.batch_size, channels, height, width, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # emulated precision: a note below
        results = run_benchmark(
            model,
            example,
            precision=args.precision,
            compile=args.compile,
            warmup=args.warmup,
            iters=args.iters,
        )
    where = (
        f"{device.type} ({torch.get_num_threads()} threads)"
        if device.type == "cpu"
        else str(device)
    )
    macs = human_count(results[0].macs_per_image)
    print(
        f"{args.model}, batch {args.batch_size}, input {channels}x{height}x{width}, {where}, "
        f"{macs} MACs per image, {args.iters} timed runs"
    )
    print(_table(results))
    if native_precision(PRECISIONS[args.precision], device) is False:
        print(
            f"note: this {device.type} has no native {args.precision} arithmetic "
            "(PyTorch emulates it): expect it slower than fp32"
        )
    return 0
