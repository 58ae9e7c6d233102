"""The IDX format of MNIST, Fashion-MNIST and KMNIST (LeCun et al.), raw or gzipped.

Layout (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT"): two zero bytes, a type code,
the number of dimensions, then one big-endian uint32 per dimension, then the data in C order.
Images are ``...-images-idx3-ubyte`` (magic 0x00000803: uint8, 3 dims), labels
``...-labels-idx1-ubyte`` (magic 0x00000801: uint8, 1 dim).
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple, NoReturn, cast

import numpy as np
import torch

from cnnzoo.data.dataset import DatasetError
from cnnzoo.data.limits import limit, raise_hint

__all__ = [
    "IDX_IMAGES_MAGIC",
    "IDX_LABELS_MAGIC",
    "IdxExpect",
    "IdxHeader",
    "read_idx",
    "read_idx_header",
    "read_idx_pair",
    "write_idx",
]

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
_CHUNK = 1 << 20


class IdxHeader(NamedTuple):
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        # Python ints: a product of uint32s cannot wrap around as it would in int64 (#13)
        return math.prod(self.shape) * self.dtype.itemsize


@contextmanager
def _open_stream(path: Path) -> Iterator[tuple[BinaryIO, int | None]]:
    """The file's bytes as a stream, and their count when known: gzip (detected by its magic)
    decompresses as it is read, and its length is unknown until the end."""
    with open(path, "rb") as raw:
        if raw.read(2) != _GZIP_MAGIC:
            raw.seek(0)
            yield raw, os.fstat(raw.fileno()).st_size
            return
        raw.seek(0)
        with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
            yield cast(BinaryIO, stream), None


def _read_exact(stream: BinaryIO, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes (fewer only at the end); a corrupt gzip stream is the file's fault."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as error:  # truncated or corrupt gzip stream
        raise DatasetError(f"{path}: not a readable gzip file ({error})") from None


def _parse_header(stream: BinaryIO, path: Path) -> IdxHeader:
    head = _read_exact(stream, 4, path)
    if len(head) < 4:
        raise DatasetError(f"{path}: {len(head)} bytes, too short for an IDX header (4 bytes)")
    zero, type_code, ndim = struct.unpack(">HBB", head)
    if zero != 0 or type_code not in _IDX_TYPES or ndim == 0:
        magic = int.from_bytes(head, "big")
        raise DatasetError(
            f"{path}: bad IDX magic number 0x{magic:08x} (expected 0x0000TTNN with type TT in "
            f"{{08, 09, 0b, 0c, 0d, 0e}} and NN >= 1 dimensions, e.g. 0x00000803 for images)"
        )
    dims = _read_exact(stream, 4 * ndim, path)
    if len(dims) < 4 * ndim:
        raise DatasetError(
            f"{path}: truncated IDX header ({4 + len(dims)} of {4 + 4 * ndim} bytes)"
        )
    shape = struct.unpack(f">{ndim}I", dims)
    return IdxHeader(np.dtype(_IDX_TYPES[type_code]), tuple(shape))


def read_idx_header(path: str | Path) -> IdxHeader:
    """The dtype and shape an IDX file declares, reading only its header."""
    path = Path(path)
    with _open_stream(path) as (stream, _):
        return _parse_header(stream, path)


def _shape_text(shape: Sequence[int | str]) -> str:
    return "x".join(map(str, shape))


def read_idx(
    path: str | Path, *, max_bytes: int | None = None, expect: IdxExpect | None = None
) -> np.ndarray:
    """Read one IDX file (raw, or gzip detected by its magic bytes) into a numpy array.

    The header is read and checked first (against ``expect`` and ``max_bytes``, default
    :func:`cnnzoo.data.limits.limit` ``("data_bytes")``); the data is then streamed, never
    decompressing more than the header declares plus one byte.
    """
    path = Path(path)
    ceiling = limit("data_bytes") if max_bytes is None else max_bytes
    with _open_stream(path) as (stream, size):
        header = _parse_header(stream, path)
        if expect is not None:
            expect.check(header, path)
        expected = header.nbytes
        # zero-sized dimensions do not excuse huge others: numpy cannot even shape those
        footprint = math.prod(max(d, 1) for d in header.shape) * header.dtype.itemsize
        if max(expected, footprint) > ceiling:
            raise DatasetError(
                f"{path}: header declares shape {_shape_text(header.shape)} ({expected} data "
                f"bytes), over the limit of {ceiling} bytes ({raise_hint('data_bytes')})"
            )
        if size is not None:
            # a raw file must be exactly as long as its header says: checked before reading
            found = size - stream.tell()
            if found != expected:
                _size_error(path, header.shape, expected, found)
        out = bytearray()  # grows with the bytes that really arrive, never past `expected`
        while len(out) < expected:
            block = _read_exact(stream, min(_CHUNK, expected - len(out)), path)
            if not block:
                break
            out += block
        if len(out) < expected:
            _size_error(path, header.shape, expected, len(out))
        if _read_exact(stream, 1, path):
            _size_error(path, header.shape, expected, expected + 1, at_least=True)
    array = np.frombuffer(out, dtype=header.dtype).reshape(header.shape)
    return array.astype(header.dtype.newbyteorder("="), copy=False)


def _size_error(
    path: Path, shape: Sequence[int], expected: int, found: int, *, at_least: bool = False
) -> NoReturn:
    what = "truncated" if found < expected else "has trailing bytes"
    raise DatasetError(
        f"{path}: {what}: shape {_shape_text(shape)} needs {expected} data bytes, "
        f"found {'at least ' if at_least else ''}{found}"
    )


class IdxExpect(NamedTuple):
    """What a reader expects of an IDX file: its type, dimensions and at most how many items."""

    dtype: str  # numpy dtype name, e.g. "uint8"
    shape: tuple[int | None, ...]  # None: any size (the item count)
    max_items: int | None = None
    what: str = "data"

    def check(self, header: IdxHeader, path: Path) -> None:
        magic = f"0x0000{_code_of(self.dtype):02x}{len(self.shape):02x}"
        if header.dtype.newbyteorder("=") != np.dtype(self.dtype) or len(header.shape) != len(
            self.shape
        ):
            raise DatasetError(
                f"{path}: expected {self.dtype} {self.what} with {len(self.shape)} dimensions "
                f"(magic {magic}), got {header.dtype.newbyteorder('=')} with "
                f"{len(header.shape)}"
            )
        for axis, (want, got) in enumerate(zip(self.shape, header.shape, strict=True)):
            if want is not None and want != got:
                wanted = _shape_text(["N" if w is None else str(w) for w in self.shape])
                raise DatasetError(
                    f"{path}: header declares shape {_shape_text(header.shape)}, expected "
                    f"{wanted} (dimension {axis} differs)"
                )
        if self.max_items is not None and header.shape[0] > self.max_items:
            raise DatasetError(
                f"{path}: header declares {header.shape[0]} {self.what}, expected at most "
                f"{self.max_items} (the published size of this dataset)"
            )


def _code_of(dtype: str) -> int:
    return next(k for k, v in _IDX_TYPES.items() if np.dtype(v).newbyteorder("=") == dtype)


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


def read_idx_pair(
    images_path: Path,
    labels_path: Path,
    *,
    image_shape: tuple[int, int] | None = None,
    max_items: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """An images file and its labels file -> uint8 (N, 1, H, W) and int64 (N,), validated.

    Both headers are checked (types, ``image_shape``, ``max_items``, equal counts) before either
    file's data is read.
    """
    height, width = image_shape if image_shape is not None else (None, None)
    image_expect = IdxExpect("uint8", (None, height, width), max_items, "images")
    label_expect = IdxExpect("uint8", (None,), max_items, "labels")
    images_header = read_idx_header(images_path)
    labels_header = read_idx_header(labels_path)
    image_expect.check(images_header, images_path)
    label_expect.check(labels_header, labels_path)
    if images_header.shape[0] != labels_header.shape[0]:
        raise DatasetError(
            f"count mismatch: {images_path} holds {images_header.shape[0]} images but "
            f"{labels_path} holds {labels_header.shape[0]} labels"
        )
    images = read_idx(images_path, expect=image_expect)
    labels = read_idx(labels_path, expect=label_expect)
    return (
        torch.from_numpy(images).unsqueeze(1),
        torch.from_numpy(labels.astype(np.int64)),
    )
