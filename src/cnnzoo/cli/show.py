"""`cnnzoo show MODEL`: the exact layer table of a registered model or of your own."""

from __future__ import annotations

import argparse
import importlib
import os
import shutil
import sys

from torch import nn

from cnnzoo.cli._common import CLIError, parse_input_size
from cnnzoo.cli._weights import add_weights_argument, with_weights

FORMATS = ("text", "md", "csv", "json", "latex", "html")


def _positive(text: str) -> int:
    value = _integer(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative(text: str) -> int:
    value = _integer(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def _integer(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "show",
        help="print a model's exact layer table (shapes, params, MACs, receptive fields)",
        description=(
            "Trace MODEL on the meta device (no real memory, no real compute) and print one row "
            "per layer call with its shapes, parameters, MACs and receptive field."
        ),
    )
    parser.add_argument(
        "model", help="a registered name (see `cnnzoo list`) or package.module:Factory"
    )
    parser.add_argument(
        "--input",
        metavar="CxHxW",
        help="input size without the batch: CxHxW, HxW or H (default: the model's)",
    )
    parser.add_argument("--batch-size", type=_positive, default=1, metavar="N")
    parser.add_argument(
        "--depth", type=_non_negative, metavar="N", help="show rows down to this depth only"
    )
    parser.add_argument("--format", choices=FORMATS, default="text")
    parser.add_argument(
        "--columns",
        help="default, wide, all, or a comma-separated list of: layer, type, input, output, "
        "window, kernel, stride, padding, dilation, groups, params, macs, flops, rf, jump, ... "
        "(not for json)",
    )
    parser.add_argument(
        "--width",
        type=_positive,
        metavar="N",
        help="text table width (default: the terminal's, 120 when not a terminal)",
    )
    parser.add_argument("--output", "-o", metavar="FILE", help="write to FILE, not stdout")
    add_weights_argument(parser)
    parser.set_defaults(func=run)


def load_model(spec: str) -> str | nn.Module:
    """A registered name as is; ``package.module:Factory`` imported (from the current directory
    too) and, unless it already is a module, called without arguments."""
    if ":" not in spec:
        return spec
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise CLIError(f"bad model {spec!r}: expected package.module:Factory")
    sys.path.insert(0, os.getcwd())  # as `python -m` would: the user's own package
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise CLIError(f"cannot import {module_name!r}: {error}") from None
    finally:
        sys.path.pop(0)
    target: object = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise CLIError(f"{module_name!r} has no attribute {attribute!r}") from None
    if isinstance(target, nn.Module):
        return target
    if not callable(target):
        raise CLIError(f"{spec} is neither an nn.Module nor callable")
    try:
        model = target()
    except TypeError as error:
        raise CLIError(f"cannot call {spec}() without arguments: {error}") from None
    if not isinstance(model, nn.Module):
        raise CLIError(f"{spec}() returned {type(model).__name__}, not an nn.Module")
    return model


def _input_size(text: str | None, model: str | nn.Module) -> tuple[int, ...] | None:
    """The (C, H, W) to trace; HxW and H take the model's own channel count."""
    if text is None:
        if isinstance(model, nn.Module) and getattr(model, "model_name", None) is None:
            raise CLIError(f"give --input for {type(model).__name__}: it is not a registered model")
        return None
    size = parse_input_size(text)
    if len(text.lower().replace(",", "x").split("x")) < 3:
        if isinstance(model, str):
            from cnnzoo.registry import model_info

            channels = model_info(model).input_size[0]
        else:
            channels = int(getattr(model, "in_channels", size[0]))
        size = (channels, size[1], size[2])
    return size


def run(args: argparse.Namespace) -> int:
    from cnnzoo.inspect import summary

    model = with_weights(load_model(args.model), args)
    size = _input_size(args.input, model)
    table = summary(model, size, batch_size=args.batch_size, depth=args.depth)
    if args.format == "json":
        if args.columns:
            raise CLIError("--columns does not apply to --format json (it has every field)")
        text = table.to_json()
    else:
        render = {
            "text": table.to_text,
            "md": table.to_markdown,
            "csv": table.to_csv,
            "latex": table.to_latex,
            "html": table.to_html,
        }[args.format]
        if args.format == "text":
            width = args.width
            if width is None and not args.output and sys.stdout.isatty():
                width = max(shutil.get_terminal_size().columns, 40)
            text = table.to_text(columns=args.columns, width=width)
        else:
            text = render(columns=args.columns)
    if args.output:
        from cnnzoo.draw import write_atomically

        write_atomically(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0
