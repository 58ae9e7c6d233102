"""Small generated files that used to exhaust memory or time (issue #13), for the hostile tests.

Every bomb is a few MB on disk at most: compressed streams of zeros built by repeating one
compressed block (after a full flush the compressor's state is reset, so the same input gives
the same bytes), PNGs whose header declares a huge canvas, sparse files, checkpoints whose
contents ask for absurd models.
"""

from __future__ import annotations

import io
import os
import pickle
import struct
import tarfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

_BLOCK = 1 << 24  # 16 MiB of zeros per repeated block


def deflate_zeros(count: int, wbits: int) -> bytes:
    """A deflate stream (``wbits`` as zlib's: -15 raw, 31 gzip) of ``count`` zero bytes (a
    multiple of 16 MiB), built in milliseconds; its checksum trailer is not valid."""
    assert count % _BLOCK == 0 and count >= 2 * _BLOCK
    compressor = zlib.compressobj(9, zlib.DEFLATED, wbits)
    zeros = bytes(_BLOCK)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    return first + repeated * (count // _BLOCK - 1) + compressor.flush()


def gzip_bomb(head: bytes, zeros: int) -> bytes:
    """A gzip member: ``head`` then ``zeros`` zero bytes (a multiple of 16 MiB), stored small."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    start = compressor.compress(head) + compressor.flush(zlib.Z_FULL_FLUSH)
    body = deflate_zeros(zeros, -15)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    trailer = struct.pack("<II", 0, (len(head) + zeros) & 0xFFFFFFFF)  # CRC deliberately wrong
    return header + start + body + trailer


def idx_header(type_code: int, shape: tuple[int, ...]) -> bytes:
    return struct.pack(">HBB", 0, type_code, len(shape)) + struct.pack(f">{len(shape)}I", *shape)


def sparse_file(path: Path, head: bytes, size: int) -> Path:
    """``head`` then zeros up to ``size`` bytes, occupying almost nothing on disk."""
    with open(path, "wb") as f:
        f.write(head)
        f.truncate(size)
    return path


def tar_gz_bomb(path: Path, member: str, size: int) -> Path:
    """A .tar.gz whose first member declares ``size`` bytes (zeros), a few MB on disk."""
    info = tarfile.TarInfo(member)
    info.size = size
    header = info.tobuf(format=tarfile.GNU_FORMAT)
    path.write_bytes(gzip_bomb(header, size))
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data))
        + kind
        + data
        + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_bomb(path: Path, width: int, height: int, *, full: bool = True) -> Path:
    """A gray PNG of ``width`` x ``height`` zeros. ``full``: a complete, valid image data
    stream (zlib of all rows, a few hundred KB); otherwise the header and a token IDAT only."""
    raw = (width + 1) * height  # one filter byte per row
    if full:
        whole = raw // _BLOCK * _BLOCK
        if whole >= 2 * _BLOCK:
            stream = _joined_zeros(whole, raw - whole)
        else:
            compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
            stream = compressor.compress(bytes(raw)) + compressor.flush()
        adler = ((raw % 65521) << 16) | 1  # adler32 of `raw` zeros: a = 1, b = raw mod 65521
        idat = b"\x78\xda" + stream + struct.pack(">I", adler)
    else:
        idat = zlib.compress(bytes(64))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", idat)
        + _png_chunk(b"IEND", b"")
    )
    return path


def _joined_zeros(whole: int, rest: int) -> bytes:
    """Raw deflate of ``whole + rest`` zeros: flushed repeated blocks, then the tail."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(_BLOCK)
    first = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    repeated = compressor.compress(zeros) + compressor.flush(zlib.Z_FULL_FLUSH)
    tail = compressor.compress(bytes(rest)) + compressor.flush()
    return first + repeated * (whole // _BLOCK - 1) + tail


def small_png(path: Path, side: int = 16, value: int = 0, mode: str = "L") -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (side, side) if mode == "L" else (side, side, 3)
    Image.fromarray(np.full(shape, value, dtype=np.uint8)).save(path, format="PNG")
    return path


# --- checkpoints ------------------------------------------------------------------------------


def valid_checkpoint(model: str = "lenet5_modern", classes: int = 10) -> dict[str, Any]:
    """A checkpoint as `cnnzoo train` writes it (the parts readers use), built without training."""
    from cnnzoo import create_model
    from cnnzoo.train.config import TrainConfig

    config = TrainConfig(
        model=model, data="digits", model_kwargs={"num_classes": classes, "in_channels": 1}
    ).to_dict()
    return {
        "format": "cnnzoo-checkpoint-1",
        "model": create_model(model, num_classes=classes, in_channels=1).state_dict(),
        "config": config,
        "data": {
            "name": "digits",
            "classes": [str(c) for c in range(classes)],
            "mean": [0.3],
            "std": [0.37],
            "image_size": [1, 8, 8],
            "train_images": 1442,
            "test_images": 355,
        },
        "ema": None,
    }


def save(obj: Any, path: Path) -> Path:
    torch.save(obj, path)
    return path


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, ("echo pwned > /dev/null",))


def evil_checkpoint(path: Path) -> Path:
    """A checkpoint whose pickle names os.system (weights-only loading refuses it)."""
    torch.save({"model": _Payload(), "config": {}}, path)
    return path


def zip_bomb_checkpoint(path: Path, zeros: int = 1 << 30) -> Path:
    """A valid checkpoint plus one deflated zip entry declaring ``zeros`` bytes."""
    import zipfile

    buffer = io.BytesIO()
    torch.save(valid_checkpoint(), buffer)
    buffer.seek(0)
    with zipfile.ZipFile(buffer) as source, zipfile.ZipFile(path, "w") as target:
        for info in source.infolist():
            target.writestr(info, source.read(info.filename))
        prefix = source.infolist()[0].filename.split("/")[0]
        entry = zipfile.ZipInfo(f"{prefix}/data/bomb")
        entry.compress_type = zipfile.ZIP_DEFLATED
        target.writestr(entry, bytes(1 << 20))  # stands for the bomb in the central directory
    _declare_size(path, zeros)
    return path


def _declare_size(path: Path, size: int) -> None:
    """Rewrite the last entry's declared uncompressed size (central directory and local header)."""
    data = bytearray(path.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, size)
    local = struct.unpack_from("<I", data, central + 42)[0]
    struct.pack_into("<I", data, local + 22, size)
    path.write_bytes(bytes(data))


def pickle_bytes(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=2)


__all__ = [
    "deflate_zeros",
    "evil_checkpoint",
    "gzip_bomb",
    "idx_header",
    "pickle_bytes",
    "png_bomb",
    "save",
    "small_png",
    "sparse_file",
    "tar_gz_bomb",
    "valid_checkpoint",
    "zip_bomb_checkpoint",
]
