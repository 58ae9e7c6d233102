"""`--weights` for every subcommand that builds a registered model, and the build itself."""

from __future__ import annotations

import argparse
from typing import Any

from torch import nn

__all__ = ["WEIGHTS_HELP", "add_weights_argument", "build_model", "with_weights"]

WEIGHTS_HELP = (
    "pretrained weights: DEFAULT, an entry such as IMAGENET1K_V2 (see `cnnzoo weights`), or a "
    "weights file; downloaded once into $TORCH_HOME/hub/checkpoints"
)


def add_weights_argument(parser: argparse.ArgumentParser, help: str = WEIGHTS_HELP) -> None:
    parser.add_argument("--weights", metavar="NAME|FILE", help=help)


def with_weights(model: str | nn.Module, args: argparse.Namespace) -> str | nn.Module:
    """For `show` and `draw`: a registered name stays a name (traced without real weights)
    unless ``--weights`` is given, which builds it with them (a file is checked to fit); a
    model from ``package.module:Factory`` gets the file loaded."""
    weights = getattr(args, "weights", None)
    if weights is None:
        return model
    if isinstance(model, str):
        return build_model(model, weights)
    from cnnzoo.weights import load_weights

    load_weights(model, weights)
    return model


def build_model(name: str, weights: str | None, **kwargs: Any) -> nn.Module:
    """``create_model(name, weights=weights, **kwargs)``; unset (None) options are left out."""
    from cnnzoo.registry import create_model

    return create_model(name, weights=weights, **kwargs)
