"""`cnnzoo eval CHECKPOINT`: accuracy, per-class accuracy and the confusion matrix."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("eval", help="evaluate a trained checkpoint on a test split")
    p.add_argument("checkpoint", help="a run directory or a .pt checkpoint of cnnzoo train")
    p.add_argument("--data", help="dataset (default: the one it was trained on)")
    p.add_argument("--data-dir")
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="cpu")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.train.predict import evaluate_checkpoint

    result = evaluate_checkpoint(
        args.checkpoint,
        args.data,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        device=args.device,
    )
    print(f"test accuracy {result.accuracy:.2%}  loss {result.loss:.4f}  ({result.images} images)")
    width = max(len(c) for c in result.classes)
    print("per-class accuracy:")
    for name, accuracy in zip(result.classes, result.per_class_accuracy, strict=True):
        print(f"  {name:>{width}}  {accuracy:.2%}")
    if len(result.classes) <= 20:
        print("confusion matrix (rows: true, columns: predicted):")
        cell = max(len(str(int(result.confusion.max()))), width)
        print(" " * (width + 2) + " ".join(f"{c:>{cell}}" for c in result.classes))
        for name, row in zip(result.classes, result.confusion.tolist(), strict=True):
            print(f"  {name:>{width}}" + "".join(f" {v:>{cell}}" for v in row))
    return 0
