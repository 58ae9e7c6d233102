"""`cnnzoo explain MODEL|RUN IMAGE... --method gradcam|saliency|occlusion`: one PNG per image
with the heat map over the image, the predicted and target classes and their probabilities."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo._optional import require
from cnnzoo.cli._common import CLIError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "explain",
        help="Grad-CAM, saliency or occlusion maps of a prediction, as PNG",
        description=(
            "For each image write OUT/<image>_<method>.png: the heat map over the image as the "
            "model sees it, with the predicted and target classes and their probabilities."
        ),
    )
    parser.add_argument("source", metavar="MODEL|RUN", help="a registered model or a run/.pt")
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    parser.add_argument("--method", required=True, choices=("gradcam", "saliency", "occlusion"))
    parser.add_argument(
        "--target", metavar="CLASS", help="class name or index (default: predicted)"
    )
    parser.add_argument(
        "--layer", metavar="NAME", help="Grad-CAM layer (default: last spatial feature stage)"
    )
    parser.add_argument("--weights", metavar="W", help="weights for a registered MODEL")
    parser.add_argument("--window", type=int, metavar="PX", help="occlusion square side")
    parser.add_argument("--stride", type=int, metavar="PX", help="occlusion step")
    parser.add_argument("--out", default=".", metavar="DIR", help="folder for the PNGs")
    parser.set_defaults(func=run)


def _pretrained() -> Any:
    """The pretrained-weights table, when this build has one (it carries categories and the
    evaluation transform of each weights entry)."""
    try:
        return importlib.import_module("cnnzoo.pretrained")
    except ImportError:
        return None


def _from_run(source: Path, files: list[Path]) -> tuple[nn.Module, Tensor, list[str]]:
    from cnnzoo.data.folder import decode_images
    from cnnzoo.train.predict import _eval_pipeline, model_from_checkpoint

    model, checkpoint = model_from_checkpoint(source)
    c, h, w = (int(v) for v in checkpoint["data"]["image_size"])
    batch = decode_images(files, (h, w), workers=1, channels=c)
    inputs = _eval_pipeline(checkpoint, (c, h, w))(batch)
    return model, inputs, [str(name) for name in checkpoint["data"]["classes"]]


def _from_name(
    name: str, weights: str | None, files: list[Path]
) -> tuple[nn.Module, Tensor, list[str]]:
    from cnnzoo.data.folder import decode_images
    from cnnzoo.layers import IMAGENET_MEAN, IMAGENET_STD
    from cnnzoo.registry import create_model, model_info

    info = model_info(name)  # an unknown name raises with the nearest registered ones
    model = create_model(name, weights=weights or None).eval()
    c, h, w = info.input_size
    classes = [str(i) for i in range(int(getattr(model, "num_classes", info.num_classes)))]
    table = _pretrained()
    entry = None
    if weights and table is not None and not Path(weights).exists():
        try:
            entry = table.get_weights(name, weights)
        except (ValueError, KeyError):
            entry = None
    if entry is not None:
        inputs = torch.stack([entry.transform(file) for file in files])
        if len(classes) == 1000:
            classes = list(table.imagenet_categories())
        return model, inputs, classes
    batch = decode_images(files, (h, w), workers=1, channels=c).float() / 255
    if c == 3:  # the torchvision convention for ImageNet-shaped inputs
        mean, std = torch.tensor(IMAGENET_MEAN), torch.tensor(IMAGENET_STD)
    else:
        mean, std = torch.full((c,), 0.5), torch.full((c,), 0.5)
    return model, (batch - mean.view(1, c, 1, 1)) / std.view(1, c, 1, 1), classes


def _class_index(text: str, classes: Sequence[str]) -> int:
    if text in classes:
        return list(classes).index(text)
    if text.lstrip("-").isdigit() and 0 <= int(text) < len(classes):
        return int(text)
    shown = ", ".join(classes[:10]) + (", ..." if len(classes) > 10 else "")
    raise CLIError(
        f"unknown target class {text!r}: expected a name ({shown}) or 0..{len(classes) - 1}"
    )


def _display(x: Tensor) -> Tensor:
    """The model's input, min-max scaled per image, for display: exactly what the map explains."""
    low, high = x.amin(), x.amax()
    return (x - low) / (high - low).clamp_min(1e-12)


def _output_names(files: Sequence[Path], method: str) -> list[str]:
    names: list[str] = []
    for file in files:
        name, k = f"{file.stem}_{method}.png", 2
        while name in names:  # the same stem in two folders
            name, k = f"{file.stem}-{k}_{method}.png", k + 1
        names.append(name)
    return names


def run(args: argparse.Namespace) -> int:
    from cnnzoo.explain import default_layer, explain, save_overlay

    require("captum.attr", "cnnzoo explain")
    files = [Path(p) for p in args.images]
    for file in files:
        if not file.is_file():
            raise FileNotFoundError(f"no image file at {file}")
    if args.method != "gradcam" and args.layer:
        raise CLIError("--layer applies to --method gradcam")
    if args.method != "occlusion" and (args.window or args.stride):
        raise CLIError("--window and --stride apply to --method occlusion")
    for flag in ("window", "stride"):
        if getattr(args, flag) is not None and getattr(args, flag) < 1:
            raise CLIError(f"--{flag} must be a positive number of pixels")
    source = Path(args.source)
    if source.exists():
        if args.weights:
            raise CLIError("--weights applies to a registered MODEL; a run has its own weights")
        model, inputs, classes = _from_run(source, files)
    else:
        model, inputs, classes = _from_name(args.source, args.weights, files)
    target = None if args.target is None else _class_index(args.target, classes)
    layer = args.layer
    if args.method == "gradcam" and layer is None:
        layer = default_layer(model, inputs[:1])
        print(f"gradcam layer: {layer} (the last spatial stage of feature_info)", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        probabilities = model.eval()(inputs).float().softmax(dim=1)
    for i, (file, name) in enumerate(zip(files, _output_names(files, args.method), strict=True)):
        predicted = int(probabilities[i].argmax())
        wanted = predicted if target is None else target
        heat = explain(
            model,
            inputs[i],
            args.method,
            target=wanted,
            layer=layer,
            window=args.window,
            stride=args.stride,
        )
        where = f" at {layer}" if args.method == "gradcam" else ""
        summary = (
            f"predicted {classes[predicted]} ({probabilities[i, predicted]:.1%}), "
            f"target {classes[wanted]} ({probabilities[i, wanted]:.1%})"
        )
        path = save_overlay(
            _display(inputs[i]),
            heat,
            out / name,
            title=f"{file.name}: {summary}\n{args.method}{where}",
        )
        print(f"{file}: {summary} -> {path}")
    return 0
