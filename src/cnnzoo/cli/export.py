"""`cnnzoo export CHECKPOINT|MODEL --output FILE`: ONNX or TorchScript, checked against PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError, parse_input_size
from cnnzoo.cli._weights import WEIGHTS_HELP, add_weights_argument, build_model
from cnnzoo.export import FORMATS, ExportError, export_model
from cnnzoo.train.predict import model_from_checkpoint

_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".tar")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export", help="export a checkpoint or a model to ONNX or TorchScript, checked"
    )
    parser.add_argument(
        "source", metavar="CHECKPOINT|MODEL", help="a cnnzoo checkpoint file or a model name"
    )
    parser.add_argument("--output", "-o", required=True, metavar="FILE", help="file to write")
    parser.add_argument(
        "--format", choices=FORMATS, help="default: from FILE's suffix (.onnx; .pt, .ts)"
    )
    parser.add_argument(
        "--input", metavar="CxHxW", help="input size (default: the model's, e.g. 3x224x224)"
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="let the batch size vary at run time"
    )
    parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset (exporter default)")
    parser.add_argument(
        "--no-check", action="store_true", help="skip running the file against PyTorch"
    )
    add_weights_argument(parser, WEIGHTS_HELP + " (with a MODEL)")
    parser.set_defaults(func=run)


def _is_path(text: str) -> bool:
    return "/" in text or "\\" in text or text.endswith(_CHECKPOINT_SUFFIXES)


def run(args: argparse.Namespace) -> int:
    output = Path(args.output)
    export_format = args.format or _SUFFIXES.get(output.suffix.lower())
    if export_format is None:
        raise CLIError(
            f"cannot tell the format from {output.name!r}: give --format onnx|torchscript"
        )
    input_size = parse_input_size(args.input) if args.input else None

    source = Path(args.source)
    if source.is_file() or source.is_dir():  # a run directory means its last.pt
        if args.weights is not None:
            raise CLIError("--weights goes with a model name; a checkpoint has its own weights")
        model, _ = model_from_checkpoint(source)  # the trainer's reader: EMA weights if any
        origin = f"checkpoint {source}"
        if input_size is not None and input_size[0] != getattr(model, "in_channels", input_size[0]):
            raise CLIError(
                f"--input {args.input}: the checkpoint's model takes "
                f"{getattr(model, 'in_channels', '?')} channels"
            )
    elif _is_path(args.source):
        raise FileNotFoundError(f"no checkpoint file at {source}")
    else:
        channels = input_size[0] if input_size is not None else None
        model = build_model(args.source, args.weights, in_channels=channels)
        origin = f"{args.source} with " + (
            f"weights {args.weights}" if args.weights else "freshly initialised weights"
        )

    try:
        report = export_model(
            model,
            output,
            format=export_format,
            input_size=input_size,
            dynamic_batch=args.dynamic_batch,
            check=not args.no_check,
            opset=args.opset,
        )
    except ExportError as error:
        print(f"cnnzoo export: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1
    shape = "x".join(str(n) for n in report.input_shape)
    size = f"{report.path.stat().st_size / 1e6:.1f} MB"
    batch = ", dynamic batch" if report.dynamic_batch else ""
    print(f"wrote {report.path} ({report.format}, {size}) from {origin}; input {shape}{batch}")
    if report.check is not None:
        batches = ", ".join(str(b) for b in report.checked_batches)
        print(f"checked against PyTorch on batches of {batches}: {report.check}")
    elif report.note:
        print(f"not checked: {report.note}")
    return 0
