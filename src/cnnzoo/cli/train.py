"""`cnnzoo train MODEL`: train a model (embedded digits by default), resumable, on CPU or GPUs."""

from __future__ import annotations

import argparse
import sys

from cnnzoo.cli._common import CLIError
from cnnzoo.cli._weights import add_weights_argument
from cnnzoo.train.config import OPTIMIZERS, PRECISIONS, RECIPES, make_config
from cnnzoo.train.schedule import SCHEDULES

HELP = "train a model; under torchrun, with DistributedDataParallel"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("train", help=HELP, description=HELP)
    p.add_argument("model", nargs="?", help="a registered model (omit with --resume)")
    # Every option defaults to None: unset flags leave the recipe's values alone.
    p.add_argument("--data", help="dataset name (digits, mnist, cifar10, ...) or image folder")
    p.add_argument("--data-dir", help="where dataset files are found")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", help="augmentation preset (see cnnzoo.data.PRESETS)")
    p.add_argument("--precision", choices=PRECISIONS)
    p.add_argument("--channels-last", action="store_true", default=None)
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--ema", type=float, metavar="DECAY", help="evaluate an EMA of the weights")
    p.add_argument("--clip-grad", type=float, metavar="NORM")
    p.add_argument("--seed", type=int)
    p.add_argument("--threads", type=int)
    p.add_argument("--device", help="cpu, cuda or cuda:N")
    p.add_argument(
        "--recipe",
        choices=sorted(RECIPES),
        help="named defaults (default: fast; finetune with --weights)",
    )
    add_weights_argument(
        p,
        "start from pretrained weights (DEFAULT, IMAGENET1K_V1, ... or a file) with a new head "
        "for the data's classes; implies --recipe finetune",
    )
    p.add_argument(
        "--freeze",
        metavar="MODULE|auto|none",
        help="freeze the model up to and including MODULE (finetune: auto, up to stride 8)",
    )
    p.add_argument("--out", help="run directory (default runs/MODEL-DATA-TIMESTAMP)")
    p.add_argument("--resume", metavar="DIR|FILE", help="continue a run exactly where it stopped")
    p.add_argument("-q", "--quiet", action="store_true", help="one line per epoch, no bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cnnzoo.train.trainer import Interrupted, NonFiniteLossError, fit

    if args.resume is None and args.model is None:
        raise CLIError("give a MODEL to train, or --resume DIR to continue a run")
    if args.epochs is not None and args.epochs <= 0:
        raise CLIError(f"--epochs must be positive, got {args.epochs}")
    config = None
    if args.resume is None:
        config = make_config(
            args.model,
            args.recipe,
            data=args.data,
            data_dir=args.data_dir,
            epochs=args.epochs,
            batch_size=args.batch_size,
            lr=args.lr,
            optimizer=args.optimizer,
            momentum=args.momentum,
            weight_decay=args.weight_decay,
            schedule=args.schedule,
            warmup_epochs=args.warmup_epochs,
            label_smoothing=args.label_smoothing,
            augment=args.augment,
            precision=args.precision,
            channels_last=args.channels_last,
            compile=args.compile,
            ema=args.ema,
            clip_grad=args.clip_grad,
            seed=args.seed,
            threads=args.threads,
            device=args.device,
            weights=args.weights,
            freeze=args.freeze,
        )
        from cnnzoo.registry import model_info

        model_info(config.model)  # an unknown model fails here, before any data is read
    try:
        fit(
            config,
            args.out,
            resume=args.resume,
            quiet=args.quiet,
            command=["cnnzoo", *sys.argv[1:]],
        )
    except Interrupted as stop:
        print(f"stopped; {stop.checkpoint} written. Resume with:", file=sys.stderr)
        print(f"  cnnzoo train --resume {stop.checkpoint.parent}", file=sys.stderr)
        return 130
    except NonFiniteLossError as error:
        print(f"cnnzoo train: {error}", file=sys.stderr)
        return 1
    return 0
