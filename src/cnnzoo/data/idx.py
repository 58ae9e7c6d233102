"""The IDX format of MNIST, Fashion-MNIST and KMNIST (LeCun et al.), raw or gzipped.

Layout (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): two zero bytes, a type code,
the number of dimensions, then one big-endian uint32 per dimension, then the data in C order.
Images are ``...-images-idx3-ubyte`` (magic 0x00000803: uint8, 3 dims), labels
``...-labels-idx1-ubyte`` (magic 0x00000801: uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import torch

from cnnzoo.data.dataset import DatasetError

__all__ = ["IDX_IMAGES_MAGIC", "IDX_LABELS_MAGIC", "read_idx", "read_idx_pair", "write_idx"]

IDX_IMAGES_MAGIC = 0x00000803
IDX_LABELS_MAGIC = 0x00000801

# type code -> big-endian numpy dtype
_IDX_TYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError) as error:  # truncated or corrupt gzip stream
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (raw, or gzip detected by its magic bytes) into a numpy array."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise DatasetError(f"{path}: {len(data)} bytes, too short for an IDX header (4 bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", data[:4])
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        magic = int.from_bytes(data[:4], "big")
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x0000TTNN with type TT in "
            f"{{08, 09, 0b, 0c, 0d, 0e}} and NN >= 1 dimensions, e.g. 0x00000803 for images)"
        )
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DatasetError(f"{path}: truncated IDX header ({len(data)} of {header} bytes)")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    dtype = np.dtype(_IDX_TYPES[type_code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    found = len(data) - header
    if found != expected:
        what = "truncated" if found < expected else "has trailing bytes"
        raise DatasetError(
            f"{path}: {what}: shape {'x'.join(map(str, shape))} needs {expected} data bytes, "
            f"found {found}"
        )
    array = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    return array.astype(dtype.newbyteorder("="), copy=True)


def write_idx(path: str | Path, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzipped when ``path`` ends in ``.gz``): for tests and conversions."""
    path = Path(path)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _IDX_TYPES.items()}
    dtype = np.dtype(array.dtype).newbyteorder("=")
    if dtype not in codes:
        raise ValueError(f"IDX cannot store dtype {array.dtype}")
    header = struct.pack(">HBB", 0, codes[dtype], array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=_IDX_TYPES[codes[dtype]]).tobytes()
    if path.suffix == ".gz":
        payload = gzip.compress(payload, mtime=0)
    path.write_bytes(payload)


def read_idx_pair(images_path: Path, labels_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """An images file and its labels file -> uint8 (N, 1, H, W) and int64 (N,), validated."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DatasetError(
            f"{images_path}: expected uint8 images with 3 dimensions (magic 0x00000803), got "
            f"{images.dtype} with {images.ndim}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DatasetError(
            f"{labels_path}: expected uint8 labels with 1 dimension (magic 0x00000801), got "
            f"{labels.dtype} with {labels.ndim}"
        )
    if len(images) != len(labels):
        raise DatasetError(
            f"count mismatch: {images_path} holds {len(images)} images but {labels_path} holds "
            f"{len(labels)} labels"
        )
    return (
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )
