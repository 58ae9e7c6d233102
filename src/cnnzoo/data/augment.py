"""Batched image augmentation as pure tensor functions, on whatever device the batch is on.

Every function takes a batch (N, C, H, W) and returns a new one; random ones take a
``torch.Generator``. Random parameters (N numbers per draw, always drawn in full so the stream
does not depend on the data) come from the generator on the CPU and move to the batch's device:
a seed gives the same augmentation on CPU and GPU. Colour functions expect floats in 0..1;
geometric ones work on any dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "center_crop",
    "color_jitter",
    "crop",
    "cutout",
    "grayscale",
    "horizontal_flip",
    "normalize",
    "pad",
    "pad_to",
    "random_crop",
    "random_erasing",
    "random_horizontal_flip",
    "random_resized_crop",
    "resize",
    "to_channels",
    "to_float",
]

Size = tuple[int, int]
# ITU-R 601-2 luma, as Pillow's convert("L") and torchvision's rgb_to_grayscale
LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) * (high - low) + low


def to_float(x: Tensor) -> Tensor:
    """uint8 0..255 -> float32 0..1; floats pass through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x


def pad(x: Tensor, padding: int | Sequence[int], fill: float = 0.0) -> Tensor:
    """Constant padding: an int for every side, or (left, right, top, bottom)."""
    sides = (padding,) * 4 if isinstance(padding, int) else tuple(padding)
    return F.pad(x, sides, mode="constant", value=fill) if any(sides) else x


def pad_to(x: Tensor, size: Size, fill: float = 0.0) -> Tensor:
    """Pad to ``size`` (H, W), centred (an odd remainder goes right/bottom): MNIST 28 -> 32."""
    dh, dw = size[0] - x.shape[-2], size[1] - x.shape[-1]
    if dh < 0 or dw < 0:
        raise ValueError(f"cannot pad {tuple(x.shape[-2:])} to the smaller {size}")
    return pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2), fill)


def crop(x: Tensor, top: Tensor, left: Tensor, size: Size, mirror: Tensor | None = None) -> Tensor:
    """Per-sample windows: image i's ``size`` window at (top[i], left[i]), read mirrored where
    ``mirror[i]`` (crop then horizontal flip, in the same pass). One gather over flat planes."""
    n, c, height, width = x.shape
    h, w = size
    device = x.device
    # flat offsets of the window's pixels from its top-left corner, (h, w); one add per batch
    rows = torch.arange(h, device=device).view(h, 1) * width
    cols = torch.arange(w, device=device)
    corner = (top.to(device) * width + left.to(device)).view(n, 1, 1)
    if mirror is not None:  # column j reads w - 1 - j: per-image columns, only (n, 1, w) big
        flipped = mirror.to(device).view(n, 1, 1).long()
        cols = cols.view(1, 1, w) + flipped * ((w - 1) - 2 * cols).view(1, 1, w)
    flat = (corner + cols) + rows
    out = x.reshape(n, c, height * width).gather(2, flat.view(n, 1, h * w).expand(n, c, h * w))
    return out.view(n, c, h, w)


def random_crop(
    x: Tensor,
    size: Size,
    padding: int = 0,
    *,
    fill: float = 0.0,
    flip: float = 0.0,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Pad every side by ``padding``, take a uniformly placed ``size`` window per image, and
    mirror it with probability ``flip`` (the CIFAR recipe's crop and flip in one pass)."""
    x = pad(x, padding, fill)
    height, width = x.shape[-2:]
    h, w = size
    if h > height or w > width:
        raise ValueError(f"crop {size} is larger than the padded image {(height, width)}")
    n = x.shape[0]
    top = torch.randint(0, height - h + 1, (n,), generator=generator)
    left = torch.randint(0, width - w + 1, (n,), generator=generator)
    mirror = torch.rand(n, generator=generator) < flip if flip > 0 else None
    return crop(x, top, left, size, mirror)


def center_crop(x: Tensor, size: Size) -> Tensor:
    height, width = x.shape[-2:]
    top, left = (height - size[0]) // 2, (width - size[1]) // 2
    if top < 0 or left < 0:
        raise ValueError(f"centre crop {size} is larger than the image {(height, width)}")
    return x[..., top : top + size[0], left : left + size[1]]


def horizontal_flip(x: Tensor) -> Tensor:
    return x.flip(-1)


def random_horizontal_flip(
    x: Tensor, p: float = 0.5, *, generator: torch.Generator | None = None
) -> Tensor:
    flip = (torch.rand(x.shape[0], generator=generator) < p).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def resize(x: Tensor, size: Size) -> Tensor:
    """Bilinear resize with antialiasing (as Pillow when shrinking); uint8 stays uint8."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = F.interpolate(x.float(), size=size, mode="bilinear", align_corners=False, antialias=True)
    return out.round_().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out


def normalize(x: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """(x - mean) / std per channel, for float images in 0..1; uint8 input is converted to
    0..1 in the same pass (one multiply-add per pixel)."""
    if not all(s > 0 for s in std):
        raise ValueError(f"std must be positive per channel, got {tuple(std)}")
    dtype = x.dtype if x.is_floating_point() else torch.float32
    unit = 255.0 if x.dtype == torch.uint8 else 1.0
    view = (1, len(mean), 1, 1)
    scale = torch.tensor([1.0 / (unit * s) for s in std], dtype=dtype, device=x.device)
    shift = torch.tensor([-m / s for m, s in zip(mean, std, strict=True)], dtype=dtype)
    # expanded to full size: PyTorch's CPU kernels run stride-0 operands faster than broadcasts
    out = x.to(dtype, copy=True)
    out.mul_(scale.view(view).expand(x.shape))
    return out.add_(shift.to(x.device).view(view).expand(x.shape))


def grayscale(x: Tensor) -> Tensor:
    """(N, 3, H, W) -> (N, 1, H, W) by ITU-R 601-2 luma."""
    weights = torch.tensor(LUMA, dtype=torch.float32, device=x.device).view(1, 3, 1, 1)
    return (x.float() * weights).sum(1, keepdim=True)


def to_channels(x: Tensor, channels: int) -> Tensor:
    """1 -> 3 by repeating the gray channel, 3 -> 1 by luma; equal counts pass through."""
    c = x.shape[1]
    if c == channels:
        return x
    if (c, channels) == (1, 3):
        return x.expand(-1, 3, -1, -1).contiguous()
    if (c, channels) == (3, 1):
        gray = grayscale(x)
        return gray.round_().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else gray
    raise ValueError(f"cannot convert {c} channels to {channels} (only 1 <-> 3)")


def _sample_boxes(
    n: int,
    height: int,
    width: int,
    scale: tuple[float, float],
    ratio: tuple[float, float],
    generator: torch.Generator | None,
    tries: int = 10,
) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """(top, left, h, w, found) of boxes covering a ``scale`` fraction of the area with aspect
    ``ratio`` (log-uniform): torchvision's 10-try rule, all tries drawn at once."""
    area = height * width
    target = area * (
        torch.rand(n, tries, generator=generator, dtype=torch.float64) * (scale[1] - scale[0])
        + scale[0]
    )
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    aspect = torch.exp(
        torch.rand(n, tries, generator=generator, dtype=torch.float64) * (log_hi - log_lo) + log_lo
    )
    ws = torch.sqrt(target * aspect).round().long()
    hs = torch.sqrt(target / aspect).round().long()
    ok = (ws > 0) & (ws <= width) & (hs > 0) & (hs <= height)
    first = ok.long().argmax(1)  # index of the first fitting try
    found = ok.any(1)
    h = hs.gather(1, first[:, None]).squeeze(1)
    w = ws.gather(1, first[:, None]).squeeze(1)
    # no try fitted: torchvision falls back to the largest centred box within the ratio range
    in_ratio = width / height
    if in_ratio < min(ratio):
        fb_w, fb_h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        fb_w, fb_h = round(height * max(ratio)), height
    else:
        fb_w, fb_h = width, height
    h = torch.where(found, h, torch.full_like(h, fb_h))
    w = torch.where(found, w, torch.full_like(w, fb_w))
    u_top = torch.rand(n, generator=generator, dtype=torch.float64)
    u_left = torch.rand(n, generator=generator, dtype=torch.float64)
    top = (u_top * (height - h + 1)).floor().long()
    left = (u_left * (width - w + 1)).floor().long()
    top = torch.where(found, top, (height - h) // 2)
    left = torch.where(found, left, (width - w) // 2)
    return top, left, h, w, found


def random_resized_crop(
    x: Tensor,
    size: Size,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Inception-style crop (Szegedy et al. 2014, sec. 6): a random box of 8-100% of the area and
    aspect 3/4..4/3, resized bilinearly to ``size``. One ``grid_sample`` for the whole batch
    (no antialiasing when a box shrinks)."""
    n, _, height, width = x.shape
    top, left, h, w, _ = _sample_boxes(n, height, width, scale, ratio, generator)
    theta = torch.zeros(n, 2, 3, dtype=torch.float64)
    # output [-1, 1] -> the box's edges in the input's normalised coordinates (align_corners=False)
    theta[:, 0, 0] = w / width
    theta[:, 0, 2] = (2 * left + w) / width - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (2 * top + h) / height - 1
    xf = x.float()
    grid = F.affine_grid(
        theta.to(xf.dtype).to(x.device), [n, x.shape[1], *size], align_corners=False
    )
    out = F.grid_sample(xf, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out.round_().clamp_(0, 255).to(torch.uint8) if x.dtype == torch.uint8 else out


def _box_mask(top: Tensor, left: Tensor, h: Tensor, w: Tensor, x: Tensor) -> Tensor:
    height, width = x.shape[-2:]
    rows = torch.arange(height, device=x.device).view(1, height)
    cols = torch.arange(width, device=x.device).view(1, width)
    top, left, h, w = (t.to(x.device).view(-1, 1) for t in (top, left, h, w))
    in_rows = (rows >= top) & (rows < top + h)
    in_cols = (cols >= left) & (cols < left + w)
    return (in_rows[:, :, None] & in_cols[:, None, :]).unsqueeze(1)


def random_erasing(
    x: Tensor,
    p: float = 0.5,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float = 0.0,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Random Erasing (Zhong et al. 2017, arXiv:1708.04896, Alg. 1): with probability ``p``
    fill a box of ``scale`` of the area and aspect ``ratio`` with ``value``; an image where no
    box fits in 10 tries is left alone. Applied after normalisation, 0 is the mean colour."""
    n, _, height, width = x.shape
    top, left, h, w, found = _sample_boxes(n, height, width, scale, ratio, generator)
    erase = (torch.rand(n, generator=generator) < p) & found
    h = torch.where(erase, h, torch.zeros_like(h))
    return x.masked_fill(_box_mask(top, left, h, w, x), value)


def cutout(
    x: Tensor, size: int, value: float = 0.0, *, generator: torch.Generator | None = None
) -> Tensor:
    """Cutout (DeVries & Taylor 2017, arXiv:1708.04552, sec. 3): a ``size`` square centred
    anywhere in the image, clipped at the border, set to ``value`` (0 = the mean after
    normalisation). Every image gets one."""
    n, _, height, width = x.shape
    cy = torch.randint(0, height, (n,), generator=generator)
    cx = torch.randint(0, width, (n,), generator=generator)
    top, bottom = (cy - size // 2).clamp(0, height), (cy + size - size // 2).clamp(0, height)
    left, right = (cx - size // 2).clamp(0, width), (cx + size - size // 2).clamp(0, width)
    return x.masked_fill(_box_mask(top, left, bottom - top, right - left, x), value)


def _rgb_to_hsv(x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    r, g, b = x.unbind(1)
    maxc, _ = x.max(1)
    minc, _ = x.min(1)
    delta = maxc - minc
    s = delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc))
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    h = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    h = torch.where(delta > 0, (h / 6.0) % 1.0, torch.zeros_like(h))
    return h, s, maxc


def _hsv_to_rgb(h: Tensor, s: Tensor, v: Tensor) -> Tensor:
    sector = torch.floor(h * 6.0)
    f = h * 6.0 - sector
    i = sector.long() % 6
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    # for each of the 6 hue sectors, which of (v, q, p, t) each of r, g, b takes
    table = torch.stack([v, q, p, t])
    picks = torch.tensor(
        [[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]], device=h.device
    )
    index = picks[i].permute(3, 0, 1, 2)  # (3, N, H, W): r, g, b source per pixel
    return table.gather(0, index).permute(1, 0, 2, 3)


def color_jitter(
    x: Tensor,
    brightness: float = 0.0,
    contrast: float = 0.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    *,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-image random brightness, contrast, saturation (factors in [1-a, 1+a]) and hue shift
    (in [-hue, hue] turns), as torchvision's ColorJitter but in a fixed order. Floats 0..1."""
    if not 0 <= hue <= 0.5:
        raise ValueError(f"hue must be in [0, 0.5], got {hue}")
    n, c = x.shape[:2]
    factors = [
        _uniform(n, max(0.0, 1 - a), 1 + a, generator).to(x.device, x.dtype).view(n, 1, 1, 1)
        for a in (brightness, contrast, saturation)
    ]
    shift = _uniform(n, -hue, hue, generator).to(x.device, x.dtype).view(n, 1, 1)
    if brightness:
        x = (x * factors[0]).clamp(0, 1)
    if contrast:
        gray = grayscale(x) if c == 3 else x
        mean = gray.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * factors[1] + mean).clamp(0, 1)
    if saturation and c == 3:
        gray = grayscale(x)
        x = ((x - gray) * factors[2] + gray).clamp(0, 1)
    if hue and c == 3:
        h, s, v = _rgb_to_hsv(x)
        x = _hsv_to_rgb((h + shift) % 1.0, s, v)
    return x
