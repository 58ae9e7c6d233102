"""What the subcommands share: the error type, a parser that fails in one line, input parsing."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

__all__ = ["CLIError", "OneLineParser", "parse_input_size", "size_numbers"]


class CLIError(Exception):
    """Bad usage or input: printed as one line, exit status 2."""


class OneLineParser(argparse.ArgumentParser):
    """argparse prints the usage block on errors; we print one line and exit 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def size_numbers(text: str) -> list[int] | None:
    """'3x224x224' -> [3, 224, 224], '96' -> [96]; None when a part is not an integer."""
    try:
        return [int(p) for p in text.lower().split("x")]
    except ValueError:
        return None


def parse_input_size(text: str) -> tuple[int, int, int]:
    """'3x224x224' -> (3, 224, 224); '224' -> (3, 224, 224); '1x28x28', '28x28' -> (C=3 default)."""
    numbers = size_numbers(text.replace(",", "x"))
    if numbers is None:
        raise CLIError(f"cannot parse input size {text!r}: expected CxHxW, HxW or H")
    if len(numbers) == 1:
        numbers = [3, numbers[0], numbers[0]]
    elif len(numbers) == 2:
        numbers = [3, *numbers]
    if len(numbers) != 3 or any(n <= 0 for n in numbers):
        raise CLIError(f"bad input size {text!r}: expected positive CxHxW, HxW or H")
    return numbers[0], numbers[1], numbers[2]
