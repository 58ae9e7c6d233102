"""Image folders: one subfolder per class, PNG/JPEG (anything Pillow reads), decoded in processes.

``root/<class>/<image>`` is split into train/val by a seeded, per-class draw; ``root/train/<class>``
with ``root/val/<class>`` (or ``test/``) are used as given. Every image is decoded once, by worker
processes, to one fixed size (shorter side resized, then centre-cropped) and held as a uint8
tensor; the random crops and colour jitter then run batched on the training device.
"""

from __future__ import annotations

import io
import os
import struct
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from cnnzoo.data.dataset import DatasetError
from cnnzoo.data.limits import limit, raise_hint

__all__ = [
    "IMAGE_EXTENSIONS",
    "FolderSplit",
    "check_decoded_size",
    "decode_images",
    "open_image",
    "scan_image_folder",
    "scan_images",
]

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


class _SizedFile(io.FileIO):
    """A file whose reads never ask for more than it holds: a chunk length field of 2 GB in a
    160-byte PNG would otherwise make each read allocate 2 GB before finding the end."""

    def __init__(self, file: str | Path) -> None:
        super().__init__(file, "rb")
        self.size = os.fstat(self.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(0, self.size - self.tell()))
            if size == 0:
                return b""
        return super().read(size)


@contextmanager
def open_image(file: str | Path, max_pixels: int | None = None) -> Iterator[Image.Image]:
    """Open an image lazily (header only) and refuse one with more than ``max_pixels`` pixels
    (default :func:`cnnzoo.data.limits.limit` ``("image_pixels")``) before any pixel is decoded.
    """
    ceiling = limit("image_pixels") if max_pixels is None else max_pixels
    handle = _SizedFile(file)
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our ceiling replaces Pillow's warning and its bomb error
    try:
        image = Image.open(handle)
    except BaseException:
        handle.close()
        raise
    finally:
        Image.MAX_IMAGE_PIXELS = previous
    with handle, image:
        width, height = image.size
        if width * height > ceiling:
            raise DatasetError(
                f"{file}: {width}x{height} = {width * height} pixels, over the limit of "
                f"{ceiling} pixels per image ({raise_hint('image_pixels')})"
            )
        yield image


_IMAGE_ERRORS = (
    OSError,
    UnidentifiedImageError,
    ValueError,
    SyntaxError,
    struct.error,
    Image.DecompressionBombError,  # Pillow re-checks some formats while decoding
)


def _decode_chunk(
    files: Sequence[str], size: tuple[int, int], max_pixels: int | None = None
) -> tuple[np.ndarray, list[bool], list[str], list[str]]:
    """Decode files to RGB uint8 (k, H, W, 3); gray flags; 'file: reason' for each unreadable
    file, and for each over the pixel limit."""
    out = np.zeros((len(files), size[0], size[1], 3), dtype=np.uint8)
    gray, errors, oversized = [], [], []
    for k, file in enumerate(files):
        try:
            with open_image(file, max_pixels) as image:
                gray.append(image.mode in _GRAY_MODES)
                out[k] = np.asarray(_fit(image.convert("RGB"), size))
        except DatasetError as error:  # over the pixel limit: already "file: reason"
            gray.append(True)
            oversized.append(str(error))
        except _IMAGE_ERRORS as error:
            gray.append(True)
            errors.append(f"{file}: {error}")
    return out, gray, errors, oversized


def scan_images(
    files: Sequence[Path], max_pixels: int | None = None
) -> tuple[tuple[int, int], int]:
    """The most common size (H, W) among ``files`` and their channels (1 when every file is
    grayscale, else 3), from the headers alone; each file is held to the pixel limit."""
    sizes: Counter[tuple[int, int]] = Counter()
    unreadable = []
    all_gray = True
    for file in files:
        try:
            with open_image(file, max_pixels) as image:
                sizes[(image.height, image.width)] += 1
                all_gray = all_gray and image.mode in _GRAY_MODES
        except DatasetError:
            raise  # over the pixel limit: that file alone is the message
        except _IMAGE_ERRORS as error:
            unreadable.append(f"{file}: {error}")
    if unreadable:
        raise _unreadable_error(unreadable)
    if not sizes:
        raise DatasetError("no image files to decode")
    # ties go to the larger size, then the taller: the same answer whatever the file order
    top = max(sizes.values())
    size = max(s for s, n in sizes.items() if n == top)
    return size, 1 if all_gray else 3


def _unreadable_error(errors: Sequence[str]) -> DatasetError:
    shown = "; ".join(errors[:5])
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return DatasetError(f"{len(errors)} unreadable image(s): {shown}{more}")


def check_decoded_size(count: int, size: tuple[int, int], channels: int, where: str) -> None:
    """Refuse to decode ``count`` images at ``size`` when they would exceed the data limit."""
    needed = count * size[0] * size[1] * 3  # decoded as RGB before any channel reduction
    ceiling = limit("data_bytes")
    if needed > ceiling:
        raise DatasetError(
            f"{where}: {count} images at {size[0]}x{size[1]} would take {needed} bytes decoded, "
            f"over the limit of {ceiling} bytes (pass a smaller image_size, or "
            f"{raise_hint('data_bytes')})"
        )


def decode_images(
    files: Sequence[Path],
    size: tuple[int, int] | None = None,
    *,
    workers: int | None = None,
    channels: int | None = None,
) -> torch.Tensor:
    """Decode image files into uint8 (N, C, H, W) at ``size`` (H, W), in worker processes.

    ``size=None`` takes the most common size among the files. ``channels=None`` gives 1 when
    every file is grayscale, else 3. Unreadable files are reported together, by name. Every
    file is held to the per-image pixel limit, and the whole batch to the data limit, before
    anything is decoded (:mod:`cnnzoo.data.limits`).
    """
    if not files:
        raise DatasetError("no image files to decode")
    max_pixels = limit("image_pixels")
    if size is None:
        size, _ = scan_images(files, max_pixels)
    check_decoded_size(len(files), size, 3, f"{files[0].parent}")
    names = [str(f) for f in files]
    workers = min(os.cpu_count() or 1, 8) if workers is None else workers
    if workers <= 1 or len(names) < _INLINE_LIMIT:
        parts = [_decode_chunk(names, size, max_pixels)]
    else:
        step = max(64, -(-len(names) // (workers * 4)))
        chunks = [names[i : i + step] for i in range(0, len(names), step)]
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(
                pool.map(_decode_chunk, chunks, [size] * len(chunks), [max_pixels] * len(chunks))
            )
    oversized = [e for *_, over in parts for e in over]
    if oversized:
        raise DatasetError(oversized[0])  # the file and the limit; one is enough to act on
    errors = [e for _, _, errs, _ in parts for e in errs]
    if errors:
        raise _unreadable_error(errors)
    array = np.concatenate([p[0] for p in parts])
    all_gray = all(g for _, flags, _, _ in parts for g in flags)
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
