"""`cnnzoo draw MODEL`: the architecture diagram as SVG, PNG or a self-contained HTML page."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError
from cnnzoo.cli._weights import add_weights_argument, with_weights
from cnnzoo.cli.show import _input_size, _positive, load_model


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "draw",
        help="draw a model's architecture diagram (SVG, PNG or HTML page)",
        description=(
            "Trace MODEL on the meta device and draw its data flow: boxes for layers or "
            "blocks, arrows for branches and skip connections, frames for stages."
        ),
    )
    parser.add_argument(
        "model", help="a registered name (see `cnnzoo list`) or package.module:Factory"
    )
    parser.add_argument("--input", metavar="CxHxW", help="input size (default: the model's)")
    parser.add_argument(
        "--depth",
        type=_positive,
        metavar="N",
        help="1: the model's children, 2: blocks (ResNet, Inception); default: every layer",
    )
    parser.add_argument("--format", choices=("svg", "png", "html"), default=None)
    parser.add_argument(
        "--output", "-o", metavar="FILE", help="write to FILE (default: MODEL.FORMAT)"
    )
    add_weights_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.draw import draw

    model = with_weights(load_model(args.model), args)
    size = _input_size(args.input, model)
    suffix = Path(args.output).suffix.lstrip(".").lower() if args.output else ""
    fmt = args.format or (suffix if suffix in ("svg", "png", "html") else "svg")
    if args.output:
        output = Path(args.output)
    else:
        stem = args.model if ":" not in args.model else type(model).__name__
        output = Path(f"{stem.replace(':', '_')}.{fmt}")
    if output.is_dir():
        raise CLIError(f"--output {output} is a directory")
    draw(model, size, depth=args.depth, format=fmt, output=output)
    print(f"wrote {output}", file=sys.stderr)
    return 0
