"""Augmentation steps, named presets, and the input adaptation between a dataset and a model.

A :class:`Pipeline` turns a uint8 batch into the model's float input in one pass on the batch's
device: the preset's augmentation at the dataset's resolution, then the adaptation to the
model's input (size, then channels), then normalisation, then the steps that act on normalised
images (cutout, random erasing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from cnnzoo.data import augment as A

__all__ = [
    "PRESETS",
    "CenterCrop",
    "ColorJitter",
    "Cutout",
    "InputAdaptation",
    "Normalize",
    "PadTo",
    "Pipeline",
    "Preset",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "RandomResizedCrop",
    "Resize",
    "Step",
    "ToChannels",
    "adapt_stats",
    "build_pipeline",
    "plan_input_adaptation",
]

ImageSize = tuple[int, int, int]  # (C, H, W)
Generator = torch.Generator | None


class Step:
    """One batched transform. ``random`` steps draw from the generator they are given;
    ``uint8_ok`` steps work on uint8 directly (cheaper: a quarter of the bytes)."""

    random = False
    uint8_ok = False

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        raise NotImplementedError

    def output_size(self, size: ImageSize) -> ImageSize:
        return size


@dataclass(frozen=True)
class RandomCrop(Step):
    """Pad by ``padding``, crop ``size`` (default: the input's own size) at random, mirror with
    probability ``flip`` (in the same pass)."""

    padding: int = 0
    size: tuple[int, int] | None = None
    flip: float = 0.0
    random = True
    uint8_ok = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        size = self.size or (x.shape[-2], x.shape[-1])
        return A.random_crop(x, size, self.padding, flip=self.flip, generator=generator)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (size[0], *self.size) if self.size else size


@dataclass(frozen=True)
class RandomHorizontalFlip(Step):
    p: float = 0.5
    random = True
    uint8_ok = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.random_horizontal_flip(x, self.p, generator=generator)


@dataclass(frozen=True)
class Resize(Step):
    size: tuple[int, int]

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.resize(x, self.size)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (size[0], *self.size)


@dataclass(frozen=True)
class CenterCrop(Step):
    uint8_ok = True
    size: tuple[int, int]

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.center_crop(x, self.size)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (size[0], *self.size)


@dataclass(frozen=True)
class PadTo(Step):
    uint8_ok = True
    size: tuple[int, int]

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.pad_to(x, self.size)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (size[0], *self.size)


@dataclass(frozen=True)
class RandomResizedCrop(Step):
    """Random box resized to ``size`` (default: the input's own size)."""

    size: tuple[int, int] | None = None
    scale: tuple[float, float] = (0.08, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    random = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        size = self.size or (x.shape[-2], x.shape[-1])
        return A.random_resized_crop(x, size, self.scale, self.ratio, generator=generator)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (size[0], *self.size) if self.size else size


@dataclass(frozen=True)
class ColorJitter(Step):
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    random = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.color_jitter(
            x, self.brightness, self.contrast, self.saturation, self.hue, generator=generator
        )


@dataclass(frozen=True)
class ToChannels(Step):
    uint8_ok = True
    channels: int

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.to_channels(x, self.channels)

    def output_size(self, size: ImageSize) -> ImageSize:
        return (self.channels, size[1], size[2])


@dataclass(frozen=True)
class Normalize(Step):
    uint8_ok = True  # converts to float itself, fused with the normalisation
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.normalize(x, self.mean, self.std)


@dataclass(frozen=True)
class RandomErasing(Step):
    p: float = 0.5
    scale: tuple[float, float] = (0.02, 0.4)
    ratio: tuple[float, float] = (0.3, 1 / 0.3)
    value: float = 0.0
    random = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.random_erasing(x, self.p, self.scale, self.ratio, self.value, generator=generator)


@dataclass(frozen=True)
class Cutout(Step):
    size: int = 16
    random = True

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        return A.cutout(x, self.size, generator=generator)


@dataclass(frozen=True)
class InputAdaptation:
    """How a dataset's images become a model's input: the steps and a line saying why."""

    data_size: ImageSize
    output_size: ImageSize
    steps: tuple[Step, ...]
    reason: str

    def describe(self) -> str:
        d, o = self.data_size, self.output_size
        what = ", ".join(_describe_step(s, d) for s in self.steps) or "no change"
        shapes = f"{d[0]}x{d[1]}x{d[2]} -> {o[0]}x{o[1]}x{o[2]}"
        return f"input adaptation: data {shapes}: {what}{self.reason}"


def _describe_step(step: Step, data: ImageSize) -> str:
    if isinstance(step, PadTo):
        dh, dw = step.size[0] - data[1], step.size[1] - data[2]
        return f"pad {dh // 2}/{dh - dh // 2} rows, {dw // 2}/{dw - dw // 2} columns with black"
    if isinstance(step, Resize):
        return f"resize to {step.size[0]}x{step.size[1]} (bilinear)"
    if isinstance(step, ToChannels):
        return "gray repeated to 3 channels" if step.channels == 3 else "RGB to gray (luma)"
    return repr(step)


def plan_input_adaptation(
    data_size: ImageSize,
    model_input: ImageSize,
    *,
    min_size: tuple[int, int] | None = None,
    fixed_size: bool = False,
    policy: Literal["auto", "model", "keep"] = "auto",
) -> InputAdaptation:
    """Decide how images of ``data_size`` reach a model whose default input is ``model_input``.

    Channels follow the model (1 <-> 3). Size, with ``policy="auto"``: unchanged when the model
    takes it (no fixed-size head, at least ``min_size``), else brought to the model's default
    input: padded when that adds at most a quarter per side length (MNIST 28 -> LeNet-5's 32,
    as LeCun et al. 1998, sec. III.A, centre the digits in a 32x32 field), resized otherwise.
    ``"model"`` always brings it to the default input; ``"keep"`` never changes the size.
    """
    c, h, w = data_size
    mc, mh, mw = model_input
    steps: list[Step] = []
    reason = ""
    too_small = min_size is not None and (h < min_size[0] or w < min_size[1])
    wrong_fixed = fixed_size and (h, w) != (mh, mw)
    change = (h, w) != (mh, mw) and (
        policy == "model" or (policy == "auto" and (too_small or wrong_fixed))
    )
    if change:
        if mh >= h and mw >= w and 4 * (mh - h) <= h and 4 * (mw - w) <= w:
            steps.append(PadTo((mh, mw)))
        else:
            steps.append(Resize((mh, mw)))
        if policy == "model":
            reason = " (the input size asked for)"  # --input, or pretrained weights' size
        elif wrong_fixed:
            reason = f" (the model takes exactly {mh}x{mw})"
        else:
            assert min_size is not None
            reason = f" (the model needs at least {min_size[0]}x{min_size[1]})"
    if c != mc:
        if {c, mc} != {1, 3}:
            raise ValueError(f"cannot adapt {c}-channel images to a {mc}-channel model")
        steps.append(ToChannels(mc))
    size = data_size
    for step in steps:
        size = step.output_size(size)
    return InputAdaptation(data_size, size, tuple(steps), reason)


def adapt_stats(
    mean: Sequence[float], std: Sequence[float], channels: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean/std for images converted to ``channels``: repeated for 1 -> 3; for 3 -> 1 the luma
    mean (exact, luma is linear) and the luma-weighted std (exact for fully correlated
    channels, an upper bound otherwise)."""
    if len(mean) == channels:
        return tuple(mean), tuple(std)
    if (len(mean), channels) == (1, 3):
        return (mean[0],) * 3, (std[0],) * 3
    if (len(mean), channels) == (3, 1):
        return (
            (sum(w * m for w, m in zip(A.LUMA, mean, strict=True)),),
            (sum(w * s for w, s in zip(A.LUMA, std, strict=True)),),
        )
    raise ValueError(f"cannot adapt statistics of {len(mean)} channels to {channels}")


@dataclass(frozen=True)
class Pipeline:
    """uint8 (N, C, H, W) batch -> normalised float model input; ``generator`` feeds the random
    steps (``None``: the global RNG). Steps run on uint8 until one needs floats in 0..1."""

    steps: tuple[Step, ...]
    adaptation: InputAdaptation | None = None

    def __call__(self, x: Tensor, generator: Generator = None) -> Tensor:
        for step in self.steps:
            if x.dtype == torch.uint8 and not step.uint8_ok:
                x = A.to_float(x)
            x = step(x, generator)
        return A.to_float(x)

    def output_size(self, size: ImageSize) -> ImageSize:
        for step in self.steps:
            size = step.output_size(size)
        return size

    def __str__(self) -> str:
        return " -> ".join(repr(s) for s in self.steps) or "identity"


@dataclass(frozen=True)
class Preset:
    """A named recipe: training steps at the dataset's resolution, evaluation steps, and which
    statistics normalise (the dataset's, or 0.5 for every channel)."""

    name: str
    description: str
    train: tuple[Step, ...]
    eval: tuple[Step, ...] = ()
    normalize: Literal["dataset", "half"] = "dataset"
    after_normalize: tuple[Step, ...] = field(default=())  # training only


PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset("none", "no augmentation; normalise with the dataset's mean/std", train=()),
        Preset(
            "resnet_cifar",
            "He et al. 2015, sec. 4.2: pad 4, random crop back to size, horizontal flip",
            train=(RandomCrop(padding=4, flip=0.5),),
        ),
        Preset(
            "resnet_cifar_cutout",
            "resnet_cifar plus a 16x16 cutout (DeVries & Taylor 2017, CIFAR-10 setting)",
            train=(RandomCrop(padding=4, flip=0.5),),
            after_normalize=(Cutout(16),),
        ),
        Preset(
            "resnet_cifar_erasing",
            "resnet_cifar plus random erasing p=0.5 (Zhong et al. 2017, CIFAR setting)",
            train=(RandomCrop(padding=4, flip=0.5),),
            after_normalize=(RandomErasing(),),
        ),
        Preset(
            "textbook",
            "resize 40, random crop 32, horizontal flip, normalise with 0.5 (the tutorial recipe)",
            train=(Resize((40, 40)), RandomCrop(size=(32, 32), flip=0.5)),
            eval=(Resize((32, 32)),),
            normalize="half",
        ),
        Preset(
            "folder",
            "image folders: random-resized crop (Szegedy et al. 2014, sec. 6), flip, colour "
            "jitter 0.4",
            train=(RandomResizedCrop(), RandomHorizontalFlip(), ColorJitter(0.4, 0.4, 0.4)),
        ),
    )
}


def build_pipeline(
    preset: str,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    train: bool,
    data_size: ImageSize,
    model_input: ImageSize | None = None,
    min_size: tuple[int, int] | None = None,
    fixed_size: bool = False,
    policy: Literal["auto", "model", "keep"] = "auto",
) -> Pipeline:
    """The training (``train=True``) or evaluation pipeline of ``preset`` for a dataset whose
    images are ``data_size`` and statistics ``mean``/``std``, adapted to ``model_input``."""
    if preset not in PRESETS:
        raise ValueError(
            f"unknown augmentation preset {preset!r}: expected one of {', '.join(PRESETS)}"
        )
    recipe = PRESETS[preset]
    steps = list(recipe.train if train else recipe.eval)
    size = data_size
    for step in steps:
        size = step.output_size(size)
    adaptation = None
    if model_input is not None:
        adaptation = plan_input_adaptation(
            size, model_input, min_size=min_size, fixed_size=fixed_size, policy=policy
        )
        steps.extend(adaptation.steps)
        size = adaptation.output_size
    if recipe.normalize == "half":
        steps.append(Normalize((0.5,) * size[0], (0.5,) * size[0]))
    else:
        steps.append(Normalize(*adapt_stats(mean, std, size[0])))
    if train:
        steps.extend(recipe.after_normalize)
    return Pipeline(tuple(steps), adaptation)
