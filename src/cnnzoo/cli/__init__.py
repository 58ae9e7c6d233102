"""The `cnnzoo` command: a thin layer over the Python API, one module per subcommand.

Bad usage or input prints one line to stderr and exits 2; errors of this machine (disk full,
read-only, permission) exit 1 naming the path; Ctrl-C exits 130 and a closed pipe exits quietly.
There is never a traceback unless ``--debug`` (accepted anywhere on the line) asks for it.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Sequence

from cnnzoo import __version__
from cnnzoo._interrupt import restore_default_sigint
from cnnzoo._optional import MissingExtraError
from cnnzoo.cli import (
    bench,
    compare,
    conv,
    data,
    draw,
    evaluate,
    explain,
    export,
    listing,
    predict,
    show,
    train,
    visualize,
    weights,
)
from cnnzoo.cli._common import CLIError, OneLineParser
from cnnzoo.data.download import DownloadError
from cnnzoo.data.limits import LIMITS
from cnnzoo.export import ExportError

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
    explain,
    compare,
    weights,
]


def build_parser() -> OneLineParser:
    parser = OneLineParser(prog="cnnzoo", description="The classic CNNs, faithful and tested.")
    parser.add_argument("--version", action="version", version=f"cnnzoo {__version__}")
    # global options: accepted anywhere on the command line (main() takes them out first)
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    for spec in LIMITS.values():
        parser.add_argument(
            spec.flag,
            type=int,
            metavar="N",
            help=f"most {spec.what} a data file may declare (default {spec.default:_}; "
            f"${spec.env})",
        )
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", parser_class=OneLineParser
    )
    subparsers.required = True
    for module in SUBCOMMANDS:
        module.register(subparsers)
    return parser


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


_FLAGS = {spec.flag: spec for spec in LIMITS.values()}


def _take_global_options(argv: list[str]) -> tuple[list[str], bool, dict[str, str]]:
    """Remove ``--debug`` and the limit flags wherever they are (before a ``--``); returns the
    rest, whether to debug, and the environment settings the limit flags ask for."""
    rest: list[str] = []
    debug = False
    env: dict[str, str] = {}
    k = 0
    while k < len(argv):
        arg = argv[k]
        if arg == "--":
            rest.extend(argv[k:])
            break
        name, eq, value = arg.partition("=")
        if arg == "--debug":
            debug = True
        elif name in _FLAGS:
            if not eq:
                if k + 1 >= len(argv):
                    raise CLIError(f"{name} needs a value (a positive integer)")
                k += 1
                value = argv[k]
            number = value.replace("_", "")
            if not number.isdigit() or int(number) <= 0:
                raise CLIError(f"{name} {value!r}: expected a positive integer")
            env[_FLAGS[name].env] = number
        else:
            rest.append(arg)
        k += 1
    return rest, debug, env


def _os_error_line(error: OSError) -> str:
    """'PATH: reason' for disk full, read-only, permission and other errors of this machine."""
    reason = error.strerror or _one_line(error)
    if error.errno is not None and error.errno in errno.errorcode:
        reason = f"{reason} ({errno.errorcode[error.errno]})"
    path = error.filename if error.filename is not None else None
    return f"{path}: {reason}" if path is not None else reason


def _silence_stdout() -> None:
    # the reader went away (`cnnzoo ... | head`): later writes and the final flush go nowhere
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command: 0 on success, 2 for bad usage or input, 1 for errors of this machine
    (disk full, read-only, permission) or bugs, 130 on Ctrl-C; one line on stderr, no
    traceback unless ``--debug`` (accepted anywhere on the line)."""
    restore_default_sigint()
    command = "cnnzoo"
    debug = False
    saved_env: dict[str, str | None] = {}
    try:
        try:
            args_list, debug, env = _take_global_options(
                list(sys.argv[1:] if argv is None else argv)
            )
        except CLIError as error:
            print(f"cnnzoo: error: {error} (see --help)", file=sys.stderr)
            return 2
        saved_env = {key: os.environ.get(key) for key in env}
        os.environ.update(env)  # limits reach worker processes too
        args = build_parser().parse_args(args_list)
        command = f"cnnzoo {args.command}"
        code = int(args.func(args))
        sys.stdout.flush()  # a closed pipe shows here, not at exit
        return code
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 141  # as if killed by SIGPIPE, like other Unix filters, but without a traceback
    except (
        CLIError,
        ValueError,
        FileNotFoundError,
        IsADirectoryError,
        DownloadError,
    ) as error:
        if debug:
            raise
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except (MissingExtraError, ExportError) as error:  # this installation / the exporter
        if debug:
            raise
        print(f"{command}: error: {_one_line(error)}", file=sys.stderr)
        return 1
    except OSError as error:  # disk full, read-only, permission: this machine, not the input
        if debug:
            raise
        print(f"{command}: error: {_os_error_line(error)}", file=sys.stderr)
        return 1
    except MemoryError:
        if debug:
            raise
        print(f"{command}: error: out of memory", file=sys.stderr)
        return 1
    except Exception as error:  # an unexpected failure still prints one line
        if debug:
            raise
        print(
            f"{command}: internal error: {type(error).__name__}: {_one_line(error)} "
            "(run with --debug for the traceback)",
            file=sys.stderr,
        )
        return 1
    finally:
        for key, old in saved_env.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
