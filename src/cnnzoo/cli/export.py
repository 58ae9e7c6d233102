"""`cnnzoo export MODEL|RUN [-o FILE] [--int8 --calibrate DATA]`: ONNX or TorchScript, checked
against PyTorch, with a run's preprocessing and class names inside; int8 through onnxruntime."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cnnzoo.cli._common import CLIError, parse_input_size
from cnnzoo.cli._weights import WEIGHTS_HELP, add_weights_argument
from cnnzoo.deploy import CALIBRATION_BATCH_SIZE, export_int8, load_source, source_metadata
from cnnzoo.export import FORMATS, ExportError, export_model
from cnnzoo.ort import CALIBRATION_METHODS

_SUFFIXES = {".onnx": "onnx", ".pt": "torchscript", ".ts": "torchscript"}


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "export", help="export a run or a model to ONNX (fp32 or int8) or TorchScript, checked"
    )
    parser.add_argument(
        "source",
        metavar="MODEL|RUN",
        help="a model name, or a run directory / checkpoint of cnnzoo train",
    )
    parser.add_argument(
        "--output",
        "-o",
        metavar="FILE",
        help="file to write (default: RUN/model[-int8].onnx, or ./MODEL[-int8].onnx)",
    )
    parser.add_argument(
        "--format", choices=FORMATS, help="default: from FILE's suffix (.onnx; .pt, .ts), or onnx"
    )
    parser.add_argument(
        "--input", metavar="CxHxW", help="input size of a model (a run's is the trained one)"
    )
    parser.add_argument(
        "--dynamic-batch", action="store_true", help="let the batch size vary at run time"
    )
    parser.add_argument("--opset", type=int, metavar="N", help="ONNX opset (exporter default)")
    parser.add_argument(
        "--no-check", action="store_true", help="skip running the file against PyTorch"
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="static int8 quantisation with onnxruntime (QDQ, per-channel weights)",
    )
    parser.add_argument(
        "--calibrate",
        metavar="DATA",
        help="images to calibrate int8 on: a dataset name or image folder "
        "(default for a run: its own training images)",
    )
    parser.add_argument(
        "--calibration-batches",
        type=int,
        default=8,
        metavar="N",
        help=f"batches of {CALIBRATION_BATCH_SIZE} images (default 8)",
    )
    parser.add_argument(
        "--calibration-method", choices=CALIBRATION_METHODS, default="minmax", help="minmax"
    )
    parser.add_argument("--data-dir", metavar="DIR", help="where named datasets are found")
    add_weights_argument(parser, WEIGHTS_HELP + " (with a MODEL)")
    parser.set_defaults(func=run)


def _output(args: argparse.Namespace, source_text: str, name: str, suffix: str) -> Path:
    if args.output:
        return Path(args.output)
    stem = f"model{'-int8' if args.int8 else ''}{suffix}"
    source = Path(source_text)
    if source.is_dir():
        return source / stem
    if source.is_file():
        return source.parent / stem
    return Path(f"{name}{'-int8' if args.int8 else ''}{suffix}")


def run(args: argparse.Namespace) -> int:
    export_format = args.format or (
        _SUFFIXES.get(Path(args.output).suffix.lower()) if args.output else "onnx"
    )
    if export_format is None:
        raise CLIError(
            f"cannot tell the format from {Path(args.output).name!r}: "
            "give --format onnx|torchscript"
        )
    if args.int8 and export_format != "onnx":
        raise CLIError("--int8 writes ONNX: use an .onnx output or --format onnx")
    if not args.int8 and args.calibrate:
        raise CLIError("--calibrate is for --int8")
    if args.calibration_batches < 1:
        raise CLIError(f"--calibration-batches must be at least 1, got {args.calibration_batches}")
    input_size = parse_input_size(args.input) if args.input else None
    try:
        return _export(args, export_format, input_size)
    except ExportError as error:
        print(f"cnnzoo export: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 1


def _export(
    args: argparse.Namespace, export_format: str, input_size: tuple[int, int, int] | None
) -> int:
    source = load_source(args.source, input_size, args.weights)
    if source.model is None:
        raise CLIError(f"{args.source}: export takes a model name or a run, not an ONNX file")
    suffix = ".onnx" if export_format == "onnx" else ".pt"
    output = _output(args, args.source, source.name, suffix)
    shape = "x".join(str(n) for n in source.input_size)
    if args.int8:
        result = export_int8(
            source,
            output,
            calibrate=args.calibrate,
            calibration_batches_count=args.calibration_batches,
            method=args.calibration_method,
            data_dir=args.data_dir,
        )
        size = f"{result.path.stat().st_size / 1e6:.1f} MB"
        print(
            f"wrote {result.path} (onnx int8, {size}) from {source.origin}; input {shape}, "
            f"dynamic batch; calibrated on {result.calibration_batches} batches of "
            f"{CALIBRATION_BATCH_SIZE} ({args.calibration_method})"
        )
        print(
            f"int8 against fp32 outputs on a calibration batch: relative {result.max_rel_error:.1e}"
        )
        if result.accuracy:
            fp32, int8 = result.accuracy["fp32"], result.accuracy["int8"]
            print(
                f"accuracy on the held-out split ({result.test_images} images): "
                f"fp32 {fp32:.2%}, int8 {int8:.2%} ({(int8 - fp32) * 100:+.2f} points)"
            )
        else:
            print("no accuracy: the model is untrained (export a run to measure it)")
        return 0

    report = export_model(
        source.model,
        output,
        format=export_format,
        input_size=source.input_size,
        dynamic_batch=args.dynamic_batch,
        check=not args.no_check,
        opset=args.opset,
        metadata=source_metadata(source),
    )
    shape = "x".join(str(n) for n in report.input_shape)
    size = f"{report.path.stat().st_size / 1e6:.1f} MB"
    batch = ", dynamic batch" if report.dynamic_batch else ""
    print(
        f"wrote {report.path} ({report.format}, {size}) from {source.origin}; input {shape}{batch}"
    )
    if source.preprocessing is not None:
        print(
            f"embedded: {len(source.preprocessing.classes)} class names, preprocessing "
            f"{source.preprocessing.pipeline()}"
        )
    if report.check is not None:
        batches = ", ".join(str(b) for b in report.checked_batches)
        print(f"checked against PyTorch on batches of {batches}: {report.check}")
    elif report.note:
        print(f"not checked: {report.note}")
    return 0
