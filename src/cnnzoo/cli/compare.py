"""`cnnzoo compare MODEL...`: one row per model (size, compute, memory, latency here, acc@1)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError, parse_input_size

FORMATS = ("text", "md", "csv", "json", "html")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "compare",
        help="compare models: params, MACs, memory (inference and training), latency, acc@1",
        description=(
            "One row per model: parameters, MACs, activation memory at batch 1 and --batch-size, "
            "a training-memory estimate (weights + gradients + optimizer state + activations "
            "saved for backward), latency measured on this machine, and the ImageNet acc@1 of "
            "known weights."
        ),
    )
    parser.add_argument("models", nargs="+", metavar="MODEL")
    parser.add_argument("--input", metavar="CxHxW", help="input size (default: each model's)")
    parser.add_argument("--batch-size", type=int, default=32, help="for memory (default 32)")
    parser.add_argument(
        "--optimizer", default="sgd", help="for training memory: sgd (momentum), adamw, adam, ..."
    )
    parser.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (0: none)")
    parser.add_argument("--weights", metavar="W", help="weights (for acc@1 and latency)")
    parser.add_argument("--no-latency", action="store_true", help="skip the latency runs")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model")
    parser.add_argument("--threads", type=int, help="torch threads for the latency runs")
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument("-o", "--output", metavar="FILE", help="write the table here")
    parser.add_argument("--plot", metavar="FILE.png|svg", help="scatter: acc@1 or MACs vs latency")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cnnzoo.compare import compare
    from cnnzoo.train.checkpoint import atomic_write_text

    if args.batch_size < 1:
        raise CLIError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.repeats < 1:
        raise CLIError(f"--repeats must be at least 1, got {args.repeats}")
    if args.plot and args.no_latency:
        raise CLIError("--plot needs the latency runs: drop --no-latency")
    if args.plot and Path(args.plot).suffix.lower() not in (".png", ".svg"):
        raise CLIError(f"--plot file must end in .png or .svg, got {args.plot!r}")
    if args.threads is not None:
        if args.threads < 1:
            raise CLIError(f"--threads must be at least 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    size = parse_input_size(args.input) if args.input else None
    result = compare(
        args.models,
        size,
        batch_size=args.batch_size,
        optimizer=args.optimizer,
        momentum=args.momentum,
        weights=args.weights,
        latency=not args.no_latency,
        repeats=args.repeats,
    )
    text = {
        "text": result.to_text,
        "md": result.to_markdown,
        "csv": result.to_csv,
        "json": result.to_json,
        "html": result.to_html,
    }[args.format]()
    if args.output:
        atomic_write_text(text, args.output)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if args.plot:
        print(f"wrote {result.plot(args.plot)}", file=sys.stderr)
    return 0
