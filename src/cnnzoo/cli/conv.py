"""`cnnzoo conv --input W --kernel F [--stride S] [--padding P] [--dilation D]`: conv arithmetic."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "conv",
        help="the output size of a conv or pool window, and what PyTorch does when it is not whole",
        description=(
            "Print (W - D(F - 1) - 1 + 2P) / S + 1 with the numbers in, what PyTorch makes of a "
            "fractional result (conv and pooling floor it, ceil_mode pooling rounds up) and the "
            "paddings and input sizes that fit exactly."
        ),
    )
    parser.add_argument("--input", type=int, required=True, metavar="W", help="input size")
    parser.add_argument("--kernel", type=int, required=True, metavar="F", help="kernel size")
    parser.add_argument("--stride", type=int, default=1, metavar="S")
    parser.add_argument("--padding", type=int, default=0, metavar="P")
    parser.add_argument("--dilation", type=int, default=1, metavar="D")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.inspect.arithmetic import explain_conv_arithmetic

    arithmetic = explain_conv_arithmetic(
        args.input, args.kernel, args.stride, args.padding, args.dilation
    )
    print(arithmetic.to_text())
    return 0
