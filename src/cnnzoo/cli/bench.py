"""`cnnzoo bench MODEL|RUN|FILE.onnx`: PyTorch eager and optimised, ONNX Runtime fp32 and int8,
timed side by side in one run (with accuracy, for a run)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

from cnnzoo._format import human_count, text_table
from cnnzoo.cli._common import CLIError, parse_input_size
from cnnzoo.cli._weights import add_weights_argument
from cnnzoo.deploy import CALIBRATION_BATCH_SIZE, bench_runtimes, load_source, results_json
from cnnzoo.export import atomic_path
from cnnzoo.inference import BenchResult, emulation_slowdown
from cnnzoo.precision import AUTO, PRECISIONS, native_precision, resolve_precision


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "bench",
        help="time a model, run or .onnx file: torch eager/optimised, ONNX Runtime fp32/int8",
    )
    parser.add_argument(
        "source",
        metavar="MODEL|RUN|FILE.onnx",
        help="a model name, a run directory / checkpoint, or an exported .onnx file",
    )
    parser.add_argument("--batch-size", type=int, default=1, metavar="N", help="default 1")
    parser.add_argument(
        "--input", metavar="CxHxW", help="input size of a model (default: its own, 3x224x224...)"
    )
    parser.add_argument(
        "--precision",
        choices=[AUTO, *PRECISIONS],
        default=AUTO,
        help="of the optimised torch side; auto: bf16 where native, else fp32",
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the optimised side")
    parser.add_argument(
        "--calibrate",
        metavar="DATA",
        help="int8 calibration images for a model (a run uses its own; default: random inputs)",
    )
    parser.add_argument("--calibration-batches", type=int, default=4, metavar="N", help="default 4")
    parser.add_argument(
        "--data", metavar="DATA", help="measure a run's accuracy on DATA's test split"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="where named datasets are found")
    parser.add_argument(
        "--no-accuracy", action="store_true", help="skip a run's accuracy (timing only)"
    )
    parser.add_argument("--threads", type=int, metavar="N", help="CPU threads (torch default)")
    parser.add_argument("--iters", type=int, default=10, metavar="N", help="timed runs (10)")
    parser.add_argument("--warmup", type=int, default=2, metavar="N", help="untimed runs (2)")
    parser.add_argument(
        "--json", metavar="FILE", help="also write the results as JSON records ('-': stdout)"
    )
    add_weights_argument(parser)
    parser.set_defaults(func=run)


def _table(results: list[BenchResult]) -> str:
    baseline = results[0]

    def row(label: str, cell: Callable[[BenchResult], str]) -> list[str]:
        return [label, *(cell(r) for r in results)]

    def optional(value: float | None, text: Callable[[float], str]) -> str:
        return "-" if value is None else text(value)

    rows = [
        row("images/s", lambda r: f"{r.timing.images_per_s:.2f}"),
        row("latency p50 (ms)", lambda r: f"{r.timing.p50_s * 1e3:.1f}"),
        row("latency p95 (ms)", lambda r: f"{r.timing.p95_s * 1e3:.1f}"),
        row("speed-up", lambda r: f"{baseline.timing.p50_s / r.timing.p50_s:.2f}x"),
        row("GFLOP/s", lambda r: optional(r.flops_per_s, lambda v: f"{v / 1e9:.1f}")),
        row("share of peak", lambda r: optional(r.peak_share, lambda v: f"{v:.0%}")),
        row(
            "rel. output error",
            lambda r: optional(r.check.rel_error if r.check else None, "{:.1e}".format),
        ),
    ]
    if any(r.accuracy is not None for r in results):
        rows.append(row("accuracy", lambda r: optional(r.accuracy, lambda v: f"{v:.2%}")))
    headers = ["", *(r.label for r in results)]
    return text_table(headers, rows, right=[False, *([True] * len(results))])


def run(args: argparse.Namespace) -> int:
    for option in ("batch_size", "iters", "threads", "calibration_batches"):
        value = getattr(args, option)
        if value is not None and value < 1:
            raise CLIError(f"--{option.replace('_', '-')} must be at least 1, got {value}")
    if args.warmup < 0:
        raise CLIError(f"--warmup must be at least 0, got {args.warmup}")
    if args.threads:
        torch.set_num_threads(args.threads)
    input_size = parse_input_size(args.input) if args.input else None
    source = load_source(args.source, input_size, args.weights)
    results = bench_runtimes(
        source,
        batch_size=args.batch_size,
        precision=args.precision,
        compile=args.compile,
        calibrate=args.calibrate,
        calibration_batches_count=args.calibration_batches,
        accuracy=not args.no_accuracy,
        data=args.data,
        warmup=args.warmup,
        iters=args.iters,
        data_dir=args.data_dir,
    )
    macs = results[0].macs_per_image
    shape = "x".join(str(v) for v in source.input_size)
    print(
        f"{source.name}, batch {args.batch_size}, input {shape}, cpu "
        f"({torch.get_num_threads()} threads), "
        f"{'?' if macs is None else human_count(macs)} MACs per image, {args.iters} timed runs"
    )
    print(_table(results))
    print(
        f"speed-up against {results[0].label}; share of peak: against a matmul of the same "
        "precision measured natively now (- where there is none: int8, emulated bf16)"
    )
    calibrated = "random inputs (timing only)"
    if source.trained or args.calibrate:
        calibrated = f"real images ({args.calibrate or 'the run data'})"
    if any(r.precision == "int8" for r in results) and results[0].runtime != "onnxruntime":
        print(
            f"int8: onnxruntime static QDQ, calibrated on {args.calibration_batches} batches "
            f"of {CALIBRATION_BATCH_SIZE} {calibrated}"
        )
    if args.precision != AUTO:
        dtype = PRECISIONS[resolve_precision(args.precision)]
        if native_precision(dtype) is False:
            print(
                f"note: this cpu has no native {args.precision} arithmetic (PyTorch emulates "
                f"it): a matmul probe ran {emulation_slowdown(dtype):.1f}x slower than fp32"
            )
    if args.json:
        text = results_json(results)
        if args.json == "-":
            sys.stdout.write(text)
        else:
            with atomic_path(Path(args.json)) as tmp:
                tmp.write_text(text, encoding="utf-8")
            print(f"wrote {args.json}")
    return 0
