"""`cnnzoo weights [PATTERN]`: the published pretrained weights, and which are cached here."""

from __future__ import annotations

import argparse

from cnnzoo._format import text_table


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "weights",
        help="list the pretrained ImageNet weights (accuracy, size, cached or not)",
        description=(
            "torchvision 0.28's published ImageNet-1K weights for the torchvision-compatible "
            "models: acc@1/acc@5 at the listed evaluation size, file size, and whether the file "
            "is already in torch.hub's cache ($TORCH_HOME/hub/checkpoints)."
        ),
    )
    parser.add_argument(
        "pattern", nargs="?", default="*", help="shell-style filter on the model, e.g. 'resnet*'"
    )
    parser.set_defaults(func=run)


def _percent(value: float | None) -> str:
    return f"{value:.3f}" if value is not None else "-"


def run(args: argparse.Namespace) -> int:
    from cnnzoo.pretrained import list_weights, weights_cache_dir
    from cnnzoo.registry import list_models

    entries = list_weights(args.pattern)
    if not entries:
        print(f"no weights for a model matching {args.pattern!r} (see `cnnzoo weights`)")
        return 0
    registered = set(list_models())
    rows = []
    for e in entries:
        t = e.transform
        rows.append(
            [
                e.model,
                e.name + (" *" if e.default else ""),
                _percent(e.acc1),
                _percent(e.acc5),
                f"{t.resize_size}/{t.crop_size}",
                f"{e.file_size_mb:.1f} MB" if e.file_size_mb is not None else "-",
                "yes" if e.is_cached() else "",
                "" if e.model in registered else "not in this build",
            ]
        )
    headers = ["model", "weights", "acc@1", "acc@5", "resize/crop", "size", "cached", "note"]
    right = [False, False, True, True, True, True, False, False]
    print(text_table(headers, rows, right=right).rstrip())
    print(f"* DEFAULT. ImageNet-1K val accuracy (torchvision 0.28). Cache: {weights_cache_dir()}")
    return 0
