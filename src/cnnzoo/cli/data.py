"""`cnnzoo data download NAME` and `cnnzoo data info NAME`: fetch and inspect datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError, OneLineParser
from cnnzoo.data import (
    DATASETS,
    DatasetError,
    DownloadError,
    dataset_spec,
    default_data_dir,
    download_dataset,
    load_dataset,
)
from cnnzoo.data.preview import sample_grid, save_grid


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("data", help="download and inspect datasets")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", parser_class=OneLineParser)
    actions.required = True
    names = ", ".join(DATASETS)

    download = actions.add_parser("download", help="fetch a dataset's files, checksum-verified")
    download.add_argument("name", help=f"one of: {names}")
    download.add_argument("--data-dir", type=Path, help=f"default: {default_data_dir()}")
    download.add_argument(
        "--mirror",
        action="append",
        default=[],
        metavar="URL",
        help="a base URL tried before the official sources (repeatable)",
    )
    download.add_argument(
        "--timeout", type=float, default=30.0, help="seconds per connection and per read"
    )
    download.add_argument(
        "--deadline",
        type=float,
        help="seconds for all attempts at one file (default: 10 min plus its size at 100 kB/s)",
    )
    download.add_argument("--quiet", action="store_true", help="no progress output")
    download.set_defaults(func=run_download)

    info = actions.add_parser("info", help="sizes, classes, mean/std and a PNG of samples")
    info.add_argument("name", help=f"one of: {names}; or an image folder")
    info.add_argument("--data-dir", type=Path, help=f"default: {default_data_dir()}")
    info.add_argument(
        "--grid", type=Path, help="where to write the sample PNG (default: NAME-samples.png)"
    )
    info.add_argument("--per-class", type=int, default=8, help="samples per class in the grid")
    info.set_defaults(func=run_info)


def run_download(args: argparse.Namespace) -> int:
    try:
        paths = download_dataset(
            args.name,
            args.data_dir,
            mirrors=args.mirror,
            timeout=args.timeout,
            deadline=args.deadline,
            stream=None if args.quiet else sys.stderr,
        )
    except (DatasetError, DownloadError) as error:
        raise CLIError(str(error)) from None
    for path in paths:
        print(path)
    return 0


def _stats(values: tuple[float, ...]) -> str:
    return ", ".join(f"{v:.4f}" for v in values)


def run_info(args: argparse.Namespace) -> int:
    try:
        train = load_dataset(args.name, args.data_dir, "train")
        test = load_dataset(args.name, args.data_dir, "test")
    except DatasetError as error:
        raise CLIError(str(error)) from None
    spec = dataset_spec(args.name) if "/" not in args.name else None
    c, h, w = train.image_size
    shown = ", ".join(train.classes[:12]) + (", ..." if train.num_classes > 12 else "")
    counts = " ".join(f"{n}" for n in train.class_counts()[:20])
    lines = [
        f"{train.name}: {spec.about if spec else 'image folder'}",
        f"source:   {train.source}",
        *([f"licence:  {spec.licence}"] if spec and spec.licence else []),
        f"images:   {c}x{h}x{w} uint8",
        f"train:    {len(train)} images",
        f"test:     {len(test)} images",
        f"classes:  {train.num_classes}: {shown}",
        f"per class (train): {counts}" + (" ..." if train.num_classes > 20 else ""),
        f"mean:     {_stats(train.mean)}",
        f"std:      {_stats(train.std)}",
    ]
    grid_path = args.grid or Path(f"{train.name}-samples.png")
    grid = sample_grid(train, per_class=args.per_class)
    save_grid(grid, grid_path)
    rows = min(train.num_classes, 20)
    lines.append(f"samples:  {grid_path} ({rows} classes x {args.per_class}, train split)")
    print("\n".join(lines))
    return 0
