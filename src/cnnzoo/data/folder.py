"""Image folders: one subfolder per class, PNG/JPEG (anything Pillow reads), decoded in processes.

``root/<class>/<image>`` is split into train/val by a seeded, per-class draw; ``root/train/<class>``
with ``root/val/<class>`` (or ``test/``) are used as given. Every image is decoded once, by worker
processes, to one fixed size (shorter side resized, then centre-cropped) and held as a uint8
tensor; the random crops and colour jitter then run batched on the training device.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnzoo.data.dataset import DatasetError

__all__ = ["IMAGE_EXTENSIONS", "FolderSplit", "decode_images", "scan_image_folder"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
_VAL_NAMES = ("val", "test")
_INLINE_LIMIT = 256  # below this, starting processes costs more than decoding
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "F"})

FolderSplit = list[tuple[Path, int]]  # (file, class index)


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file() and not p.name.startswith(".")
    )


def _collect(root: Path, classes: Sequence[str]) -> FolderSplit:
    files: FolderSplit = []
    for index, name in enumerate(classes):
        folder = root / name
        found = _images_in(folder) if folder.is_dir() else []
        if not found:
            raise DatasetError(
                f"{folder}: no images (expected files ending in "
                f"{', '.join(sorted(IMAGE_EXTENSIONS))})"
            )
        files.extend((f, index) for f in found)
    return files


def scan_image_folder(
    root: str | Path, *, val_fraction: float = 0.1, seed: int = 0
) -> tuple[tuple[str, ...], FolderSplit, FolderSplit]:
    """Class names, train files and val files of an image folder.

    With ``train/`` and ``val/`` (or ``test/``) subfolders, their class folders are used as
    given. Otherwise every class folder is split: ``round(val_fraction * n)`` of its ``n`` files,
    drawn with ``seed``, go to val (at least one when ``n >= 2`` and ``val_fraction > 0``).
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (expected one subfolder per class)")
    val_dir = next((root / n for n in _VAL_NAMES if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        classes = tuple(p.name for p in _class_dirs(root / "train"))
        if not classes:
            raise DatasetError(f"{root / 'train'}: no class subfolders")
        extra = {p.name for p in _class_dirs(val_dir)} - set(classes)
        if extra:
            raise DatasetError(f"{val_dir}: classes {sorted(extra)} are not in {root / 'train'}")
        train = _collect(root / "train", classes)
        val = [(f, i) for i, name in enumerate(classes) for f in _images_in(val_dir / name)]
        if not val:
            raise DatasetError(f"{val_dir}: no images in any class folder")
        return classes, train, val
    classes = tuple(p.name for p in _class_dirs(root))
    if not classes:
        raise DatasetError(
            f"{root}: empty: expected one subfolder per class holding its images "
            f"(e.g. {root}/cat/001.png), optionally under train/ and val/"
        )
    files = _collect(root, classes)
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    by_class: list[FolderSplit] = [[] for _ in classes]
    for item in files:
        by_class[item[1]].append(item)
    for mine in by_class:
        order = torch.randperm(len(mine), generator=generator).tolist()
        n_val = round(val_fraction * len(mine))
        if val_fraction > 0 and len(mine) >= 2:
            n_val = max(n_val, 1)
        picked = set(order[:n_val])
        for k, item in enumerate(mine):
            (val if k in picked else train).append(item)
    return classes, train, val


def _fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    height, width = size
    if image.size == (width, height):
        return image
    scale = max(width / image.width, height / image.height)
    resized = image.resize(
        (max(width, round(image.width * scale)), max(height, round(image.height * scale))),
        Image.Resampling.BILINEAR,
    )
    left = (resized.width - width) // 2
    top = (resized.height - height) // 2
    return resized.crop((left, top, left + width, top + height))


def _decode_chunk(
    files: Sequence[str], size: tuple[int, int]
) -> tuple[np.ndarray, list[bool], list[str]]:
    """Decode files to RGB uint8 (k, H, W, 3); gray flags; 'file: reason' for each failure."""
    out = np.zeros((len(files), size[0], size[1], 3), dtype=np.uint8)
    gray, errors = [], []
    for k, file in enumerate(files):
        try:
            with Image.open(file) as image:
                gray.append(image.mode in _GRAY_MODES)
                out[k] = np.asarray(_fit(image.convert("RGB"), size))
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            gray.append(True)
            errors.append(f"{file}: {error}")
    return out, gray, errors


def _common_size(files: Sequence[Path]) -> tuple[int, int]:
    sizes: Counter[tuple[int, int]] = Counter()
    unreadable = []
    for file in files:
        try:
            with Image.open(file) as image:
                sizes[(image.height, image.width)] += 1
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as error:
            unreadable.append(f"{file}: {error}")
    if unreadable:
        raise _unreadable_error(unreadable)
    return sizes.most_common(1)[0][0]


def _unreadable_error(errors: Sequence[str]) -> DatasetError:
    shown = "; ".join(errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return DatasetError(f"{len(errors)} unreadable image(s): {shown}{more}")


def decode_images(
    files: Sequence[Path],
    size: tuple[int, int] | None = None,
    *,
    workers: int | None = None,
    channels: int | None = None,
) -> torch.Tensor:
    """Decode image files into uint8 (N, C, H, W) at ``size`` (H, W), in worker processes.

    ``size=None`` takes the most common size among the files. ``channels=None`` gives 1 when
    every file is grayscale, else 3. Unreadable files are reported together, by name.
    """
    if not files:
        raise DatasetError("no image files to decode")
    if size is None:
        size = _common_size(files)
    names = [str(f) for f in files]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers <= 1 or len(names) < _INLINE_LIMIT:
        parts = [_decode_chunk(names, size)]
    else:
        step = max(64, -(-len(names) // (workers * 4)))
        chunks = [names[i : i + step] for i in range(0, len(names), step)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_decode_chunk, chunks, [size] * len(chunks)))
    errors = [e for _, _, errs in parts for e in errs]
    if errors:
        raise _unreadable_error(errors)
    array = np.concatenate([p[0] for p in parts])
    all_gray = all(g for _, flags, _ in parts for g in flags)
    images = torch.from_numpy(array).permute(0, 3, 1, 2)
    if channels is None:
        channels = 1 if all_gray else 3
    if channels == 1:
        # RGB made from gray has equal channels; a colour set converted to gray uses ITU-R 601 luma
        if all_gray:
            images = images[:, :1]
        else:
            weights = torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
            images = (images.float() * weights).sum(1, keepdim=True).round().to(torch.uint8)
    return images.contiguous()
