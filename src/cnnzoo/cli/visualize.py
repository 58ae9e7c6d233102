"""`cnnzoo visualize CHECKPOINT`: a trained model's filters and feature maps, as PNG."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "visualize",
        help="draw a trained model's filters and feature maps as PNG grids",
        description="Write filters.png (--filters) and one PNG per layer (--activations IMAGE).",
    )
    parser.add_argument("checkpoint", help="a run directory or a .pt checkpoint of cnnzoo train")
    parser.add_argument(
        "--filters",
        nargs="?",
        const="",
        metavar="LAYER",
        help="tile this convolution's kernels (default: the first convolution)",
    )
    parser.add_argument("--activations", metavar="IMAGE", help="feature maps for this image")
    parser.add_argument(
        "--layers", nargs="+", metavar="LAYER", help="layers for --activations (default: convs)"
    )
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the PNGs")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.train.predict import model_from_checkpoint
    from cnnzoo.visualize import activation_grids, checkpoint_image, filter_grid, save_grid

    if args.filters is None and args.activations is None:
        raise CLIError("give --filters [LAYER] and/or --activations IMAGE")
    if args.layers and args.activations is None:
        raise CLIError("--layers applies to --activations IMAGE")
    model, _ = model_from_checkpoint(args.checkpoint)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    if args.filters is not None:
        layer = args.filters or None
        grid = filter_grid(model, layer)
        written.append(
            save_grid(grid, out / "filters.png", title=f"filters of {layer or 'first conv'}")
        )
    if args.activations is not None:
        image = checkpoint_image(args.checkpoint, args.activations)
        for name, grid in activation_grids(model, image, args.layers).items():
            path = out / f"activations_{name.replace('.', '_')}.png"
            written.append(save_grid(grid, path, title=f"{name}: {grid.shape[-1]} px"))
    for path in written:
        print(f"wrote {path}", file=sys.stderr)
    return 0
