"""`cnnzoo train MODEL`: train a model (embedded digits by default), resumable, on CPU or GPUs."""

from __future__ import annotations

import argparse
import os
import sys

from cnnzoo.cli._common import CLIError, size_numbers
from cnnzoo.cli._weights import add_weights_argument
from cnnzoo.precision import AUTO
from cnnzoo.train.config import OPTIMIZERS, PRECISIONS, RECIPES, TrainConfig, make_config
from cnnzoo.train.schedule import SCHEDULES

HELP = "train a model; under torchrun, with DistributedDataParallel"

# (flag, config field) for the hyperparameters; every one defaults to None so that unset flags
# leave the recipe's values alone
HYPERPARAMETERS = (
    ("--data", "data"),
    ("--data-dir", "data_dir"),
    ("--input", "input_size"),
    ("--batch-size", "batch_size"),
    ("--lr", "lr"),
    ("--optimizer", "optimizer"),
    ("--momentum", "momentum"),
    ("--weight-decay", "weight_decay"),
    ("--schedule", "schedule"),
    ("--warmup-epochs", "warmup_epochs"),
    ("--label-smoothing", "label_smoothing"),
    ("--augment", "augment"),
    ("--precision", "precision"),
    ("--channels-last", "channels_last"),
    ("--compile", "compile"),
    ("--ema", "ema"),
    ("--clip-grad", "clip_grad"),
    ("--seed", "seed"),
    ("--threads", "threads"),
    ("--device", "device"),
    ("--recipe", "recipe"),
    ("--weights", "weights"),
    ("--freeze", "freeze"),
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = subparsers.add_parser("train", help=HELP, description=HELP)
    p.add_argument("model", nargs="?", help="a registered model (omit with --resume)")
    p.add_argument("--data", help="dataset name (digits, mnist, cifar10, ...) or image folder")
    p.add_argument("--data-dir", help="where dataset files are found")
    p.add_argument(
        "--input",
        dest="input_size",
        type=_image_size,
        metavar="HxW|H",
        help="train (and evaluate) at this image size: the images are padded or resized to it "
        "(default: the model's TRAINING_SIZES entry for images no larger than it, else the "
        "data's size if the model takes it, else the model's input)",
    )
    p.add_argument("--epochs", type=int, help="epochs; with --resume, extends the run to N")
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--optimizer", choices=OPTIMIZERS)
    p.add_argument("--momentum", type=float)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--schedule", choices=SCHEDULES)
    p.add_argument("--warmup-epochs", type=float)
    p.add_argument("--label-smoothing", type=float)
    p.add_argument("--augment", help="augmentation preset (see cnnzoo.data.PRESETS)")
    p.add_argument(
        "--precision",
        choices=(AUTO, *PRECISIONS),
        help="autocast precision; auto: bf16 where the device computes it natively, else fp32 "
        "(default: fp32, or the model's measured SPEED_SETTINGS entry)",
    )
    p.add_argument(
        "--channels-last",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="NHWC memory format (default: off, or the model's SPEED_SETTINGS entry)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="torch.compile the model: seconds to minutes of compiling on a CPU, repaid only on "
        "long runs (ResNet-20: after 5-10 CIFAR-10 epochs in fp32; LeNet-5: after 2-5 MNIST "
        "epochs in bf16, hardly ever in fp32)",
    )
    ema = p.add_mutually_exclusive_group()
    ema.add_argument(
        "--ema", type=float, metavar="DECAY", help="evaluate an EMA of the weights (0: none)"
    )
    ema.add_argument(
        "--no-ema", dest="ema", action="store_const", const=0.0, help="no EMA of the weights"
    )
    p.add_argument("--clip-grad", type=float, metavar="NORM")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--threads",
        type=int,
        help="CPU threads (default: the recipe's, else OMP_NUM_THREADS, else physical cores)",
    )
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
    p.add_argument(
        "--overwrite", action="store_true", help="replace the run already in --out (its files)"
    )
    p.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR exactly where it stopped (--epochs N extends it)",
    )
    p.add_argument(
        "--nproc-per-node",
        type=int,
        metavar="N",
        help="train with N processes on this machine (DDP; torchrun --standalone in-process)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="one line per epoch, no bar")
    p.set_defaults(func=run)


def _image_size(text: str) -> tuple[int, int]:
    """'96' -> (96, 96), '96x64' -> (96, 64), as `cnnzoo show --input` spells H and W. No
    channels: the model is built for the data's."""
    numbers = size_numbers(text)
    if numbers is None:
        raise argparse.ArgumentTypeError(f"cannot parse {text!r}: expected HxW or H")
    if len(numbers) == 3:
        raise argparse.ArgumentTypeError(
            f"{text!r}: give HxW or H; the model takes the data's channels"
        )
    if len(numbers) == 1:
        numbers *= 2
    if len(numbers) != 2 or min(numbers) <= 0:
        raise argparse.ArgumentTypeError(f"bad size {text!r}: expected positive HxW or H")
    return numbers[0], numbers[1]


def run(args: argparse.Namespace) -> int:
    from cnnzoo.train.distributed import PeerLost
    from cnnzoo.train.trainer import Interrupted, NonFiniteLossError, fit

    if args.resume is None and args.model is None:
        raise CLIError("give a MODEL to train, or --resume DIR to continue a run")
    if args.epochs is not None and args.epochs <= 0:
        raise CLIError(f"--epochs must be positive, got {args.epochs}")
    if args.nproc_per_node is not None and args.nproc_per_node <= 0:
        raise CLIError(f"--nproc-per-node must be positive, got {args.nproc_per_node}")
    config = None
    if args.resume is not None:
        given = [flag for flag, name in HYPERPARAMETERS if getattr(args, name) is not None]
        given += ["MODEL"] * (args.model is not None) + ["--overwrite"] * args.overwrite
        if given:
            raise CLIError(
                f"{given[0]} cannot be given with --resume: a run keeps its model and settings "
                "(only --epochs N, to extend it to N epochs); start a new run with --out for "
                "other settings"
            )
    else:
        overrides = {name: getattr(args, name) for _, name in HYPERPARAMETERS}
        overrides = {k: v for k, v in overrides.items() if v is not None}
        recipe = overrides.pop("recipe", None)
        config = make_config(args.model, recipe, epochs=args.epochs, **overrides)
        from cnnzoo.registry import model_info

        model_info(config.model)  # an unknown model fails here, before any data is read
    if args.nproc_per_node is not None:
        return _launch(args, config)
    try:
        fit(
            config,
            args.out,
            resume=args.resume,
            epochs=args.epochs if args.resume is not None else None,
            overwrite=args.overwrite,
            quiet=args.quiet,
            command=["cnnzoo", *sys.argv[1:]],
        )
    except Interrupted:  # rank 0 has said where the run stopped and how to resume it
        return 130
    except (NonFiniteLossError, PeerLost) as error:
        print(f"cnnzoo train: {error}", file=sys.stderr)
        return 1
    return 0


def _launch(args: argparse.Namespace, config: TrainConfig | None) -> int:
    """This command again, as ``--nproc-per-node`` workers (cnnzoo.train.distributed.launch)."""
    from cnnzoo.train import distributed, rundir

    if "WORLD_SIZE" in os.environ:
        raise CLIError("--nproc-per-node starts the workers itself; it cannot run under torchrun")
    nproc = args.nproc_per_node
    if config is not None:  # before any worker starts
        distributed.check_global_batch(config.batch_size, nproc)
    out = args.out
    if out is None and config is not None:  # one name for all workers, not one per clock
        out = str(rundir.default_out_dir(config))
    command = ["train", *([args.model] if args.model is not None else [])]
    for flag, name in HYPERPARAMETERS:
        value = getattr(args, name)
        if value is True:
            command.append(flag)
        elif isinstance(value, tuple | list):  # a size: HxW
            command += [flag, "x".join(map(str, value))]
        elif value is not None:
            command += [flag, str(value)]
    for flag, value in (("--epochs", args.epochs), ("--out", out), ("--resume", args.resume)):
        if value is not None:
            command += [flag, str(value)]
    command += ["--overwrite"] * args.overwrite + ["--quiet"] * args.quiet
    return distributed.launch(nproc, command)
