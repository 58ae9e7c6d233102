"""`cnnzoo list [PATTERN]`: the registered models as a table."""

from __future__ import annotations

import argparse

from cnnzoo._format import text_table
from cnnzoo.registry import list_models, model_info


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("list", help="list the registered models")
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style filter, e.g. 'resnet*'"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = list_models(args.pattern)
    if not names:
        print(f"no model matches {args.pattern!r}")
        return 0
    rows = []
    for name in names:
        info = model_info(name)
        c, h, w = info.input_size
        rows.append(
            [
                name,
                info.family,
                f"{info.params:,}",
                "-" if info.macs is None else f"{info.macs:,}",  # the table's exact count
                f"{c}x{h}x{w}",
                str(info.paper.year),
                "yes" if info.torchvision else "",
            ]
        )
    headers = ["model", "family", "params", "MACs", "input", "year", "torchvision"]
    print(text_table(headers, rows, right=[False, False, True, True, True, True, False]))
    return 0
