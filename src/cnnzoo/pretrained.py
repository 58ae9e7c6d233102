"""Pretrained ImageNet weights: torchvision 0.28's published files, fetched with torch.hub.

The table (``torchvision_weights.json``, package data copied from torchvision 0.28's weight enums)
lists, per torchvision-compatible architecture, each weight file's URL (the 8 hex digits before
``.pth`` start the file's SHA-256), which entry is DEFAULT, the evaluation transform the accuracy
was measured with, the metadata (ImageNet-1K acc@1/acc@5, GFLOPS, file size) and the 1,000
ImageNet class names. Our torchvision-compatible models have torchvision's state_dict keys and
compute torchvision's function, so those files load with ``strict=True``.

Files go where torch.hub (and so torchvision) keeps them, ``$TORCH_HOME/hub/checkpoints``: a file
a user already downloaded with torchvision is reused without a download. ``CNNZOO_WEIGHTS_URL``
replaces the base URL (a mirror, or a folder served inside an air-gapped site); the SHA-256 prefix
is checked either way.
"""

from __future__ import annotations

import fnmatch
import functools
import json
import os
import re
import socket
import sys
import urllib.error
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch import Tensor, nn

__all__ = [
    "WEIGHTS_URL_ENV",
    "ImageNetPrediction",
    "ImageTransform",
    "WeightsDownloadError",
    "WeightsEntry",
    "WeightsHashError",
    "fetch_weights",
    "get_weights",
    "imagenet_categories",
    "list_weights",
    "predict",
    "weights_cache_dir",
]

WEIGHTS_URL_ENV = "CNNZOO_WEIGHTS_URL"
# A dead network fails in milliseconds; a firewall that drops packets would hang urlopen forever.
# Downloads that stall this long (no byte at all) are reported as offline.
DOWNLOAD_TIMEOUT_S = 10.0
_HASH_IN_NAME = re.compile(r"-([0-9a-f]{8,})\.pth$")
_INTERPOLATIONS = {"bilinear": "bilinear", "bicubic": "bicubic", "nearest": "nearest"}


class WeightsDownloadError(FileNotFoundError):
    """The weights file is not cached and could not be downloaded (offline, a bad mirror)."""


class WeightsHashError(ValueError):
    """A downloaded file's SHA-256 does not start with the prefix in its name: refused."""


# --------------------------------------------------------------------------- the transform


@dataclass(frozen=True)
class ImageTransform:
    """The evaluation transform a weights entry was measured with (torchvision's
    ``ImageClassification``): resize the shorter side to ``resize_size`` with ``interpolation``
    (and ``antialias``), centre-crop ``crop_size``, scale to 0..1, normalise with ``mean``/``std``.

    Call it on a file path, a PIL image, or a uint8 (C, H, W) / (N, C, H, W) tensor (floats are
    taken as 0..1); it returns float (C, H, W) or (N, C, H, W). On uint8 tensors it computes what
    torchvision's transform computes on the same tensor (resize in float, rounded back to uint8).
    """

    resize_size: int
    crop_size: int
    interpolation: str = "bilinear"
    antialias: bool = True
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)

    def __post_init__(self) -> None:
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(
                f"interpolation {self.interpolation!r} is not one of {', '.join(_INTERPOLATIONS)}"
            )

    def __call__(self, image: str | Path | Image.Image | Tensor) -> Tensor:
        x = _to_uint8_tensor(image) if not isinstance(image, Tensor) else image
        single = x.dim() == 3
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 4:
            raise ValueError(f"expected a (C, H, W) or (N, C, H, W) image, got {tuple(x.shape)}")
        x = self.normalize(self.center_crop(self.resize(x)))
        return x[0] if single else x

    def resize(self, x: Tensor) -> Tensor:
        """Shorter side to ``resize_size``, the longer one scaled and truncated (torchvision)."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        short, long = (h, w) if h <= w else (w, h)
        new_short, new_long = self.resize_size, int(self.resize_size * long / short)
        size = (new_short, new_long) if h <= w else (new_long, new_short)
        if size == (h, w):
            return x
        is_uint8 = x.dtype == torch.uint8
        mode = _INTERPOLATIONS[self.interpolation]
        batch = x if x.dim() == 4 else x.unsqueeze(0)
        out = F.interpolate(
            batch.float(),
            size=size,
            mode=mode,
            align_corners=None if mode == "nearest" else False,
            antialias=self.antialias and mode != "nearest",
        )
        if is_uint8:  # torchvision resizes uint8 in float and rounds back
            out = out.round_().clamp_(0, 255).to(torch.uint8)
        return out if x.dim() == 4 else out[0]

    def center_crop(self, x: Tensor) -> Tensor:
        """The central ``crop_size`` square, zero-padded first if the image is smaller."""
        c = self.crop_size
        h, w = int(x.shape[-2]), int(x.shape[-1])
        if h < c or w < c:
            pad_h, pad_w = max(c - h, 0), max(c - w, 0)
            x = F.pad(x, [pad_w // 2, (pad_w + 1) // 2, pad_h // 2, (pad_h + 1) // 2])
            h, w = int(x.shape[-2]), int(x.shape[-1])
        top, left = round((h - c) / 2.0), round((w - c) / 2.0)  # Python rounding, as torchvision
        return x[..., top : top + c, left : left + c]

    def normalize(self, x: Tensor) -> Tensor:
        x = x.float() / 255 if x.dtype == torch.uint8 else x.float()
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(-1, 1, 1)
        if x.shape[-3] != mean.shape[0]:
            raise ValueError(
                f"the transform normalises {mean.shape[0]} channels, the image has {x.shape[-3]}"
            )
        return (x - mean) / std


def _to_uint8_tensor(image: str | Path | Image.Image) -> Tensor:
    if isinstance(image, str | Path):
        path = Path(image)
        if not path.is_file():
            raise FileNotFoundError(f"no image file at {path}")
        try:
            with Image.open(path) as opened:
                array = np.asarray(opened.convert("RGB"))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            raise ValueError(f"{path}: not a readable image ({error})") from None
    else:
        array = np.asarray(image.convert("RGB"))
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


# --------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class WeightsEntry:
    """One published weight file for one architecture, with what it was measured with."""

    model: str
    name: str  # e.g. IMAGENET1K_V2
    url: str
    default: bool
    transform: ImageTransform
    # None: feature weights without a usable classifier (vgg16.IMAGENET1K_FEATURES)
    categories: tuple[str, ...] | None = field(repr=False)
    acc1: float | None  # ImageNet-1K top-1 / top-5, percent, at ``transform``
    acc5: float | None
    gflops: float | None  # torchvision's "GFLOPS" (multiply-accumulates, in G)
    file_size_mb: float | None
    num_params: int | None
    min_size: tuple[int, int]
    recipe: str

    @property
    def qualified_name(self) -> str:
        return f"{self.model}.{self.name}"

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """The start of the file's SHA-256, as the file name gives it (torch.hub's convention)."""
        match = _HASH_IN_NAME.search(self.file_name)
        if match is None:  # every published name has one; a table edit must keep it so
            raise ValueError(f"{self.file_name}: no SHA-256 prefix before .pth")
        return match.group(1)

    @property
    def download_url(self) -> str:
        """The URL used: ``$CNNZOO_WEIGHTS_URL/<file name>`` when that is set, else ``url``."""
        base = os.environ.get(WEIGHTS_URL_ENV, "").strip()
        return f"{base.rstrip('/')}/{self.file_name}" if base else self.url

    @property
    def cached_path(self) -> Path:
        return weights_cache_dir() / self.file_name

    def is_cached(self) -> bool:
        return self.cached_path.is_file()

    def fetch(self, *, progress: bool = True) -> Path:
        return fetch_weights(self, progress=progress)


@functools.cache
def _table() -> dict[str, Any]:
    text = resources.files("cnnzoo").joinpath("torchvision_weights.json").read_text("utf-8")
    return dict(json.loads(text))


def imagenet_categories() -> tuple[str, ...]:
    """The 1,000 ImageNet-1K class names in the order of the models' outputs."""
    return tuple(_table()["imagenet1k_categories"])


@functools.cache
def _entries() -> dict[str, dict[str, WeightsEntry]]:
    categories = imagenet_categories()
    out: dict[str, dict[str, WeightsEntry]] = {}
    for model, entries in _table()["models"].items():
        out[model] = {}
        for name, raw in entries.items():
            t, meta = raw["transforms"], raw["meta"]
            metrics = meta.get("_metrics", {}).get("ImageNet-1K", {})
            out[model][name] = WeightsEntry(
                model=model,
                name=name,
                url=raw["url"],
                default=bool(raw["default"]),
                transform=ImageTransform(
                    resize_size=int(t["resize_size"][0]),
                    crop_size=int(t["crop_size"][0]),
                    interpolation=t["interpolation"],
                    antialias=bool(t["antialias"]),
                    mean=tuple(t["mean"]),
                    std=tuple(t["std"]),
                ),
                categories=categories if raw.get("categories") == "IMAGENET1K" else None,
                acc1=metrics.get("acc@1"),
                acc5=metrics.get("acc@5"),
                gflops=meta.get("_ops"),
                file_size_mb=meta.get("_file_size"),
                num_params=meta.get("num_params"),
                min_size=tuple(meta.get("min_size", (1, 1))),
                recipe=meta.get("recipe", ""),
            )
    return out


def list_weights(pattern: str = "*") -> list[WeightsEntry]:
    """Every weights entry whose model matches the shell-style ``pattern``, by model and name."""
    return [
        entry
        for model in sorted(_entries())
        if fnmatch.fnmatchcase(model, pattern)
        for _, entry in sorted(_entries()[model].items())
    ]


def get_weights(model: str, name: str = "DEFAULT") -> WeightsEntry:
    """The entry ``name`` (``"DEFAULT"``, ``"IMAGENET1K_V1"``, ``"ResNet50_Weights.IMAGENET1K_V1"``)
    of ``model``; a ``ValueError`` that says what exists when there is no such entry."""
    entries = _entries().get(model)
    if entries is None:
        raise ValueError(_no_weights_message(model))
    wanted = name.rsplit(".", 1)[-1].upper() if name.endswith(tuple(entries)) else name.upper()
    if wanted == "DEFAULT":
        return next(e for e in entries.values() if e.default)
    if wanted in entries:
        return entries[wanted]
    available = ", ".join(e.name + (" (DEFAULT)" if e.default else "") for e in entries.values())
    raise ValueError(
        f"{model} has no weights {name!r}: it has {available}; or give a weights file path"
    )


def _no_weights_message(model: str) -> str:
    # A paper-faithful variant (alexnet_original, googlenet_original, vgg16_c) points to its
    # torchvision-compatible sibling.
    close = [n for n in _entries() if model.startswith(n + "_")]
    hint = f" ({' or '.join(close)} has)" if close else ""
    return (
        f"{model} has no pretrained weights{hint}: ImageNet weights exist for the "
        f"torchvision-compatible models only (`cnnzoo weights` lists them); or give a weights "
        "file path"
    )


def _looks_like_path(text: str) -> bool:
    return (
        os.sep in text
        or "/" in text
        or text.endswith((".pth", ".pt", ".bin", ".tar", ".ckpt"))
        or Path(text).is_file()
    )


def resolve_weights(model: str, weights: str | Path) -> WeightsEntry | Path:
    """A table entry for a name (``DEFAULT``, ``IMAGENET1K_V2``), a ``Path`` for a file."""
    if isinstance(weights, Path) or _looks_like_path(str(weights)):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"no weights file at {path}")
        return path
    return get_weights(model, str(weights))


def default_weights(model: str) -> WeightsEntry | None:
    """The model's DEFAULT entry, or None when it has no published weights."""
    entries = _entries().get(model, {})
    return next((e for e in entries.values() if e.default), None)


# --------------------------------------------------------------------------- fetching


def weights_cache_dir() -> Path:
    """torch.hub's checkpoint folder, ``$TORCH_HOME/hub/checkpoints`` (torchvision's too)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def fetch_weights(entry: WeightsEntry, *, progress: bool = True) -> Path:
    """The local path of ``entry``'s file, downloading it first when it is not cached.

    Downloads go through ``torch.hub.download_url_to_file`` (a temporary file renamed into place
    only after the SHA-256 prefix matched), with a progress bar on stderr when ``progress``.
    Raises ``WeightsDownloadError`` (naming the URL, the file name and the folder to put it in)
    when the file cannot be fetched and ``WeightsHashError`` when its hash does not match.
    """
    target = entry.cached_path
    if target.is_file():
        return target
    url = entry.download_url
    target.parent.mkdir(parents=True, exist_ok=True)
    if progress:
        print(f'Downloading: "{url}" to {target}', file=sys.stderr)
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        torch.hub.download_url_to_file(
            url, str(target), hash_prefix=entry.hash_prefix, progress=progress
        )
    except RuntimeError as error:
        if "invalid hash value" not in str(error):
            raise
        raise WeightsHashError(
            f"refused {url}: its SHA-256 does not start with {entry.hash_prefix} as "
            f"{entry.file_name} says (a corrupt download or a wrong mirror); nothing was saved"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as error:
        reason = getattr(error, "reason", None) or error
        mirror = f" (from ${WEIGHTS_URL_ENV})" if url != entry.url else ""
        raise WeightsDownloadError(
            f"cannot download {entry.qualified_name} from {url}{mirror}: {reason}. Offline? "
            f"Put {entry.file_name} in {target.parent}, or set {WEIGHTS_URL_ENV} to a mirror"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
    return target


# --------------------------------------------------------------------------- loading


def _read_file(path: Path, model: str) -> dict[str, Tensor]:
    from cnnzoo.train.checkpoint_validation import read_checkpoint

    # weights_only and bounded (#13): nothing in the file can run code or outgrow it. The
    # OrderedDict keeps its _metadata, so old files without BN's num_batches_tracked load
    # exactly as they do in torchvision.
    state = read_checkpoint(path, "weights file", "a state_dict saved with torch.save")
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds no state_dict")
    from cnnzoo.models.densenet import DenseNet

    return DenseNet.upgrade_state_dict(state) if model.startswith("densenet") else state


# torchvision's builders for googlenet / inception_v3 with weights: the file has the aux heads, so
# they are built to load it, then dropped unless asked for; transform_input defaults to True
# because these weights were trained on inputs in another normalisation (ported from TensorFlow).
_AUX_DEFAULT = {"googlenet": False, "inception_v3": True}


def build_pretrained(
    name: str,
    builder: Callable[..., nn.Module],
    weights: str | Path,
    kwargs: dict[str, Any],
    *,
    progress: bool = True,
) -> nn.Module:
    """``create_model(name, weights=..., **kwargs)``: the model with the weights loaded.

    ``num_classes`` other than the file's gives a freshly initialised head on the pretrained
    trunk (fine-tuning); ``in_channels`` other than 3 adapts the first conv
    (``adapt_input_channels``). The model gets a ``pretrained_weights`` attribute: the entry
    (transform, class names) or the file's path.
    """
    from cnnzoo.surgery import adapt_input_channels
    from cnnzoo.weights import WeightsMismatchError, load_weights

    source = resolve_weights(name, weights)
    kwargs = dict(kwargs)
    num_classes = kwargs.pop("num_classes", None)
    in_channels = kwargs.pop("in_channels", None)
    if name in _AUX_DEFAULT and in_channels in (None, 3):
        # torchvision's googlenet/inception_v3 weights expect its input transform (a file of
        # them as much as a named entry)
        kwargs.setdefault("transform_input", True)
    if isinstance(source, Path):
        # A file of the user's: built as asked; a head of another size is left out, so a
        # torchvision file starts a fine-tune and a fine-tuned file loads whole.
        # A file of the user's: built as asked if it fits so; else a torchvision-style file
        # (3 channels, its own head) with the head and first conv adapted below.
        tries = [(in_channels, False), (in_channels, True), (None, False), (None, True)]
        first_error: WeightsMismatchError | None = None
        for channels, drop_head in dict.fromkeys(tries):
            if drop_head and num_classes is None:
                continue
            model = builder(**kwargs, **_given(num_classes=num_classes, in_channels=channels))
            try:
                load_weights(model, source, drop_head=drop_head)
                break
            except WeightsMismatchError as error:
                first_error = first_error or error
        else:
            assert first_error is not None
            raise first_error
        default = getattr(model, "num_classes", None)
    else:
        drop_aux = False
        if name in _AUX_DEFAULT:
            drop_aux = not kwargs.get("aux_logits", _AUX_DEFAULT[name])
            kwargs["aux_logits"] = True
        model = builder(**kwargs)
        model.load_state_dict(_read_file(source.fetch(progress=progress), name))
        if drop_aux:
            _drop_aux_heads(model)
        default = len(source.categories) if source.categories else None
    if num_classes is not None and num_classes != default:
        reset = getattr(model, "reset_classifier", None)
        if reset is None:
            raise ValueError(f"{name} has no reset_classifier for {num_classes} classes")
        reset(num_classes)
    if in_channels is not None and in_channels != getattr(model, "in_channels", 3):
        adapt_input_channels(model, in_channels)
    object.__setattr__(model, "pretrained_weights", source)
    # The constructor arguments that rebuild this architecture without the weights (a run's
    # config records them, so eval, resume and export build the same model).
    built = {k: getattr(model, k) for k in ("transform_input", "aux_logits") if hasattr(model, k)}
    object.__setattr__(model, "pretrained_kwargs", built if name in _AUX_DEFAULT else {})
    return model


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _drop_aux_heads(model: nn.Module) -> None:
    model.aux_logits = False  # type: ignore[assignment]
    for attribute in ("aux1", "aux2", "AuxLogits"):
        if hasattr(model, attribute):
            setattr(model, attribute, None)


def finetune_input(
    model: str, weights: str | Path, channels: int
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[int, int, int]] | None:
    """Mean, std and input size (C, H, W) to fine-tune ``model`` from ``weights`` at: the
    entry's (for a file, the model's DEFAULT entry's); None when nothing is known."""
    from cnnzoo.data.transforms import adapt_stats

    entry = None
    if not (isinstance(weights, Path) or _looks_like_path(str(weights))):
        entry = get_weights(model, str(weights))
    entry = entry or default_weights(model)
    if entry is None:
        return None
    t = entry.transform
    mean, std = adapt_stats(t.mean, t.std, channels)
    return mean, std, (channels, t.crop_size, t.crop_size)


# --------------------------------------------------------------------------- predicting


@dataclass(frozen=True)
class ImageNetPrediction:
    file: str
    top: list[tuple[str, float]]  # (class name, probability), most likely first


def predict(
    model: str | nn.Module,
    images: Sequence[str | Path | Image.Image | Tensor],
    *,
    weights: str | Path = "DEFAULT",
    top_k: int = 5,
    device: str = "cpu",
    progress: bool = True,
) -> list[ImageNetPrediction]:
    """The ``top_k`` ImageNet classes with probabilities for each image, through exactly the
    weights' evaluation transform.

    ``model`` is a registered name (built with ``weights``) or a model from
    ``create_model(..., weights=...)``. Images are file paths, PIL images or uint8 (C, H, W)
    tensors.

    >>> predict("resnet50", ["photo.jpg"], weights="DEFAULT", top_k=5)  # doctest: +SKIP
    """
    if top_k < 1:
        raise ValueError(f"top-k must be at least 1, got {top_k}")
    if isinstance(model, str):
        from cnnzoo.registry import create_model

        model = create_model(model, weights=weights, progress=progress)
    source = getattr(model, "pretrained_weights", None)
    name = getattr(model, "model_name", type(model).__name__)
    entry = source if isinstance(source, WeightsEntry) else default_weights(name)
    if entry is None:
        raise ValueError(
            f"{name} was not built with published weights: no transform or class names to "
            "predict with (build it with create_model(name, weights='DEFAULT'))"
        )
    if entry.categories is None:
        raise ValueError(
            f"{entry.qualified_name} has no ImageNet classifier (feature-extraction weights); "
            f"use {default_weights(entry.model).qualified_name} to classify"  # type: ignore[union-attr]
        )
    if getattr(model, "num_classes", len(entry.categories)) != len(entry.categories):
        raise ValueError(
            f"{name} has {getattr(model, 'num_classes', '?')} classes, the ImageNet classes are "
            f"{len(entry.categories)}"
        )
    batch = torch.stack([entry.transform(image) for image in images]).to(device)
    model = model.to(device).eval()
    with torch.no_grad():
        probabilities = model(batch).float().softmax(dim=1).cpu()
    k = min(top_k, len(entry.categories))
    values, indices = probabilities.topk(k, dim=1)
    return [
        ImageNetPrediction(
            str(image) if isinstance(image, str | Path) else f"image {n}",
            [(entry.categories[int(i)], float(v)) for v, i in zip(row_v, row_i, strict=True)],
        )
        for n, (image, row_v, row_i) in enumerate(zip(images, values, indices, strict=True))
    ]


# --------------------------------------------------------------------------- fine-tuning


def default_freeze_point(model: str) -> str | None:
    """The last stage of ``model`` with a total stride of at most 8 (ResNet: ``layer2``), the
    part the ``finetune`` recipe freezes; None when the model lists no stages."""
    from cnnzoo.registry import create_model

    with torch.device("meta"):  # only the structure is needed: no memory, no init compute
        built = create_model(model)
    stages = [f.module for f in getattr(built, "feature_info", []) if f.reduction <= 8]
    return stages[-1] if stages else None


def finetune_settings(
    model: str, weights: str | Path | None, freeze: str | None
) -> tuple[str | None, str | None]:
    """What a training config records: the weights entry's exact name (DEFAULT resolved, so the
    run says which file it started from) or the file's absolute path; and the freeze point
    (``"auto"``: :func:`default_freeze_point`; ``"none"``: nothing frozen)."""
    recorded: str | None = None
    if weights is not None:
        source = resolve_weights(model, weights)
        recorded = str(source.resolve()) if isinstance(source, Path) else source.name
    if freeze == "auto":
        freeze = default_freeze_point(model) if weights is not None else None
    elif freeze == "none":
        freeze = None
    elif freeze is not None:  # a wrong name fails here, before any data is read
        import difflib

        from cnnzoo.registry import create_model

        with torch.device("meta"):
            names = [n for n, _ in create_model(model).named_modules() if n]
        if freeze not in names:
            close = difflib.get_close_matches(freeze, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise ValueError(f"--freeze {freeze}: {model} has no module of that name{hint}")
    return recorded, freeze
