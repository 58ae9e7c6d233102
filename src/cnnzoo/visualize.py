"""What a trained network learned, as pictures: first-layer filters and feature maps.

``filter_grid`` tiles a convolution's kernels (RGB when they see three channels, else the mean
over input channels in grey), each normalised on its own so weak filters stay visible.
``activation_grids`` runs one image through the model and tiles each chosen layer's feature
maps. Both write PNG through matplotlib's Agg canvas.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from cnnzoo._optional import require

__all__ = ["activation_grids", "conv_layers", "filter_grid", "save_grid"]


def conv_layers(model: nn.Module) -> list[str]:
    """Names of the model's convolution modules, in definition order."""
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.conv._ConvNd)]


def _normalise(images: Tensor) -> Tensor:
    """Each image to [0, 1] on its own (min-max over all but the first dim)."""
    flat = images.flatten(1)
    low = flat.min(dim=1).values.view(-1, *[1] * (images.dim() - 1))
    high = flat.max(dim=1).values.view(-1, *[1] * (images.dim() - 1))
    return (images - low) / (high - low).clamp_min(1e-12)


def _tile(images: Tensor, columns: int | None = None, gap: int = 1) -> Tensor:
    """(N, C, H, W) with C in {1, 3} tiled into one (C, H', W') image on a white ground."""
    n, c, h, w = images.shape
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    grid = torch.ones(c, rows * (h + gap) + gap, columns * (w + gap) + gap)
    for i in range(n):
        r, k = divmod(i, columns)
        top, left = gap + r * (h + gap), gap + k * (w + gap)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def save_grid(grid: Tensor, path: str | Path, *, title: str = "", min_pixels: int = 256) -> Path:
    """Write a (C, H, W) grid in [0, 1] as PNG, enlarged with nearest pixels to be visible."""
    FigureCanvasAgg = require("matplotlib.backends.backend_agg", "PNG images").FigureCanvasAgg
    Figure = require("matplotlib.figure", "PNG images").Figure

    c, h, w = grid.shape
    zoom = max(1, math.ceil(min_pixels / max(h, w)))
    image = grid.permute(1, 2, 0).numpy()
    figure = Figure(figsize=(w * zoom / 100, h * zoom / 100 + (0.3 if title else 0)), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, h * zoom / (h * zoom + (30 if title else 0))))
    axes.imshow(
        image[..., 0] if c == 1 else image, cmap="gray", vmin=0, vmax=1, interpolation="nearest"
    )
    axes.axis("off")
    if title:
        figure.text(
            0.5, 1 - 0.15 / (h * zoom / 100 + 0.3), title, ha="center", va="center", fontsize=9
        )
    path = Path(path)
    figure.savefig(path, format="png", dpi=100)
    return path


def filter_grid(model: nn.Module, layer: str | None = None) -> Tensor:
    """The kernels of a convolution (default: the first) tiled into one (C, H, W) image."""
    names = conv_layers(model)
    if not names:
        raise ValueError(f"{type(model).__name__} has no convolution layers")
    name = layer or names[0]
    modules = dict(model.named_modules())
    if name not in modules:
        raise ValueError(f"no layer named {name!r}; convolutions: {', '.join(names[:8])}")
    module = modules[name]
    weight = getattr(module, "weight", None)
    if not isinstance(weight, Tensor) or weight.dim() != 4:
        raise ValueError(f"layer {name!r} ({type(module).__name__}) has no 2-D kernels")
    kernels = weight.detach().float().cpu()
    # Three input channels are a colour image; otherwise show what the filter sums, in grey.
    images = kernels if kernels.shape[1] == 3 else kernels.mean(dim=1, keepdim=True)
    return _tile(_normalise(images))


def activation_grids(
    model: nn.Module, image: Tensor, layers: Sequence[str] | None = None
) -> dict[str, Tensor]:
    """Feature maps of ``layers`` (default: every convolution) for one (C, H, W) image, each
    layer's channels tiled into one grey (1, H, W) grid."""
    modules = dict(model.named_modules())
    chosen = list(layers) if layers else conv_layers(model)
    for name in chosen:
        if name not in modules or name == "":
            raise ValueError(
                f"no layer named {name!r}; convolutions: {', '.join(conv_layers(model)[:8])}"
            )
    captured: dict[str, Tensor] = {}
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: captured.setdefault(name, out.detach())
        )
        for name in chosen
    ]
    try:
        with torch.no_grad():
            model.eval()(image.unsqueeze(0))
    finally:
        for handle in handles:
            handle.remove()
    grids = {}
    for name in chosen:
        output = captured.get(name)
        if output is None or output.dim() != 4:
            raise ValueError(f"layer {name!r} produced no feature maps (not run or not 2-D)")
        maps = output[0].float().cpu().unsqueeze(1)
        grids[name] = _tile(_normalise(maps))
    return grids


def checkpoint_image(checkpoint_path: str | Path, image_path: str | Path) -> Tensor:
    """An image file as the checkpoint's model sees it: decoded to the training images' channels
    and size, then its evaluation pipeline; (C, H, W)."""
    from cnnzoo.data.folder import decode_images
    from cnnzoo.train.predict import _eval_pipeline, model_from_checkpoint

    _, checkpoint = model_from_checkpoint(checkpoint_path)
    file = Path(image_path)
    if not file.is_file():
        raise FileNotFoundError(f"no image file at {file}")
    c, h, w = (int(v) for v in checkpoint["data"]["image_size"])
    batch = decode_images([file], (h, w), workers=1, channels=c)
    return _eval_pipeline(checkpoint, (c, h, w))(batch)[0]
