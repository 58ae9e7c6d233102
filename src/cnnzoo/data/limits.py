"""Ceilings on what a data file may make the readers allocate (issue #13).

Every reader checks a file's declared sizes (headers, archive members) against these before it
allocates or decompresses anything large, so a small hostile file fails fast in one line instead
of exhausting memory. Each ceiling can be raised with an environment variable (the CLI's global
flags of the same name set them) when real data needs more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["LIMITS", "Limit", "limit", "raise_hint"]


@dataclass(frozen=True)
class Limit:
    env: str
    flag: str
    default: int
    what: str


LIMITS: dict[str, Limit] = {
    # A 24-megapixel camera photo (6000x4000) passes; decoding one costs ~75 MB as RGB.
    "image_pixels": Limit(
        "CNNZOO_MAX_IMAGE_PIXELS", "--max-image-pixels", 25_000_000, "pixels per image"
    ),
    # All of MNIST (47 MB), CIFAR-100's train batch (154 MB) or ~7000 RGB images at 224x224.
    "data_bytes": Limit(
        "CNNZOO_MAX_DATA_BYTES", "--max-data-bytes", 1 << 30, "bytes of decoded data per file"
    ),
}


def limit(name: str) -> int:
    """The current ceiling ``name`` (``$env`` when set to a positive integer, else the default)."""
    spec = LIMITS[name]
    raw = os.environ.get(spec.env, "").strip().replace("_", "")
    if raw:
        try:
            value = int(raw)
        except ValueError:
            raise ValueError(f"${spec.env}={raw!r}: expected a positive integer") from None
        if value <= 0:
            raise ValueError(f"${spec.env}={raw!r}: expected a positive integer")
        return value
    return spec.default


def raise_hint(name: str) -> str:
    """How to raise ceiling ``name``, for error messages."""
    spec = LIMITS[name]
    return f"raise it with {spec.flag} N or ${spec.env} if the file is genuine"
