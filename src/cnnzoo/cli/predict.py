"""`cnnzoo predict CHECKPOINT IMAGE...`: the top-k classes of each image."""

from __future__ import annotations

import argparse
import sys

from cnnzoo.ort import MissingDependencyError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("predict", help="classify image files with a trained checkpoint")
    p.add_argument(
        "checkpoint",
        help="a run directory or a .pt checkpoint of cnnzoo train, or a file cnnzoo export "
        "wrote from a run (.onnx, TorchScript)",
    )
    p.add_argument("images", nargs="+", help="PNG/JPEG files")
    p.add_argument("--top-k", type=int, default=5)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.deploy import is_exported_file, predict_exported
    from cnnzoo.train.predict import predict_images

    # An exported file carries its preprocessing and class names (cnnzoo export RUN).
    predict = predict_exported if is_exported_file(args.checkpoint) else predict_images
    try:
        predictions = predict(args.checkpoint, args.images, top_k=args.top_k)
    except MissingDependencyError as error:  # .onnx without onnxruntime: the install line
        print(f"cnnzoo predict: error: {error}", file=sys.stderr)
        return 1
    for prediction in predictions:
        top = ", ".join(f"{name} {p:.1%}" for name, p in prediction.top)
        print(f"{prediction.file}: {top}")
    return 0
