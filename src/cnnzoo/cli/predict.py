"""`cnnzoo predict CHECKPOINT IMAGE...` or `cnnzoo predict MODEL --weights W IMAGE...`: the
top-k classes of each image."""

from __future__ import annotations

import argparse
from pathlib import Path

from cnnzoo.cli._common import CLIError
from cnnzoo.cli._weights import add_weights_argument


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser(
        "predict",
        help="classify image files with a trained checkpoint or pretrained ImageNet weights",
    )
    p.add_argument(
        "checkpoint",
        metavar="CHECKPOINT|MODEL",
        help="a run directory or .pt checkpoint of cnnzoo train, a file cnnzoo export wrote from a "
        "run (.onnx, TorchScript), or a model name with --weights",
    )
    p.add_argument("images", nargs="+", help="PNG/JPEG files")
    p.add_argument("--top-k", type=int, default=5)
    add_weights_argument(
        p,
        "with a MODEL: its pretrained weights (DEFAULT, IMAGENET1K_V2, ... or a file); images "
        "go through exactly those weights' evaluation transform",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.top_k < 1:
        raise CLIError(f"--top-k must be at least 1, got {args.top_k}")
    if args.weights is not None:
        from cnnzoo.pretrained import predict, resolve_weights
        from cnnzoo.registry import model_info

        model_info(args.checkpoint)  # a wrong model or weights name fails before any file
        resolve_weights(args.checkpoint, args.weights)
        for file in args.images:
            if not Path(file).is_file():
                raise FileNotFoundError(f"no image file at {file}")
        predictions = predict(args.checkpoint, args.images, weights=args.weights, top_k=args.top_k)
        for imagenet in predictions:
            print(f"{imagenet.file}:")
            for name, p in imagenet.top:
                print(f"  {p:7.2%}  {name}")
        return 0
    if not Path(args.checkpoint).exists():
        from cnnzoo.registry import list_models

        if args.checkpoint in list_models():
            raise CLIError(
                f"{args.checkpoint} is a model name: add --weights DEFAULT (or a weights file) "
                "to classify with pretrained ImageNet weights"
            )
    from cnnzoo.deploy import is_exported_file, predict_exported
    from cnnzoo.train.predict import predict_images

    # An exported file carries its preprocessing and class names (cnnzoo export RUN).
    predict_files = predict_exported if is_exported_file(args.checkpoint) else predict_images
    for prediction in predict_files(args.checkpoint, args.images, top_k=args.top_k):
        top = ", ".join(f"{name} {p:.1%}" for name, p in prediction.top)
        print(f"{prediction.file}: {top}")
    return 0
