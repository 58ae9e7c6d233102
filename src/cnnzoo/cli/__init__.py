"""The `cnnzoo` command: a thin layer over the Python API, one module per subcommand.

Bad usage or input prints one line to stderr and exits 2; there is never a traceback unless
``--debug`` asks for it.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from cnnzoo import __version__
from cnnzoo.cli import (
    bench,
    conv,
    data,
    draw,
    evaluate,
    export,
    listing,
    predict,
    show,
    train,
    visualize,
    weights,
)
from cnnzoo.cli._common import CLIError, OneLineParser

__all__ = ["main"]

# Each module adds its own subparser; a new subcommand is one more entry here.
SUBCOMMANDS = [
    listing,
    data,
    train,
    evaluate,
    predict,
    show,
    conv,
    bench,
    export,
    draw,
    visualize,
    weights,
]


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="cnnzoo", description="The classic CNNs, faithful and tested.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    subparsers.required = True
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except (CLIError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as error:
        if args.debug:
            raise
        print(f"cnnzoo {args.command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"cnnzoo {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # an unexpected failure still prints one line
        if args.debug:
            raise
        print(
            f"cnnzoo {args.command}: internal error: {type(error).__name__}: {_one_line(error)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
