"""Hypothesis fuzz over the IDX, CIFAR and image-folder readers (issue #13): any input gives a
valid result or one clean DatasetError line naming the file, never another exception, and the
memory traced while reading stays bounded (tracemalloc: numpy and Python buffers)."""

from __future__ import annotations

import gzip
import io
import pickle
import struct
import tarfile
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from cnnzoo.data import DatasetError, load_dataset
from cnnzoo.data.cifar import CIFAR10, load_cifar, safe_loads
from cnnzoo.data.folder import decode_images
from cnnzoo.data.idx import read_idx

MB = 1 << 20
BUDGET = 32 * MB  # every fuzzed file here is under 64 KB; a reader may not balloon past this
T = TypeVar("T")
FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def _clean(fn: Callable[[], T], where: Path | str) -> T | None:
    """``fn()``'s result, or None after a one-line DatasetError naming ``where``; any other
    exception fails the test, as does a traced peak over the budget."""
    tracemalloc.start()
    try:
        return fn()
    except DatasetError as error:
        message = str(error)
        assert "\n" not in message and str(where) in message, message
        return None
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak < BUDGET, f"traced peak {peak / MB:.1f} MB"


def _flip(data: bytes, edits: list[tuple[int, int]]) -> bytes:
    out = bytearray(data)
    for position, value in edits:
        if out:
            out[position % len(out)] = value
    return bytes(out)


_EDITS = st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 255)), max_size=8)


# --- IDX ---------------------------------------------------------------------------------------

_DIMS = st.one_of(st.integers(0, 9), st.integers(0, 2**32 - 1))


@FUZZ
@given(
    type_code=st.sampled_from([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, 0x00, 0x07, 0xFF]),
    dims=st.lists(_DIMS, min_size=0, max_size=5),
    extra=st.integers(-8, 8),
    gz=st.booleans(),
)
def test_fuzzed_idx_headers(
    tmp_path: Path, type_code: int, dims: list[int], extra: int, gz: bool
) -> None:
    header = struct.pack(">HBB", 0, type_code, len(dims)) + struct.pack(f">{len(dims)}I", *dims)
    itemsize = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}.get(type_code, 1)
    declared = int(np.prod(dims, dtype=object)) * itemsize if dims else 0
    body = bytes(max(0, min(declared + extra, 4096)))
    path = tmp_path / ("f.gz" if gz else "f")
    path.write_bytes(gzip.compress(header + body) if gz else header + body)
    array = _clean(lambda: read_idx(path), path)
    if array is not None:  # accepted: exactly what the header declared
        assert list(array.shape) == dims and array.nbytes == declared == len(body)


@FUZZ
@given(data=st.binary(max_size=512), gz=st.booleans())
def test_fuzzed_idx_bytes(tmp_path: Path, data: bytes, gz: bool) -> None:
    path = tmp_path / "f"
    path.write_bytes(gzip.compress(data) if gz else data)
    _clean(lambda: read_idx(path), path)


@FUZZ
@given(edits=_EDITS)
def test_fuzzed_idx_gzip_stream(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    raw = struct.pack(">HBBIII", 0, 8, 3, 3, 5, 5) + bytes(range(75))
    path = tmp_path / "f.gz"
    path.write_bytes(_flip(gzip.compress(raw, mtime=0), edits))
    _clean(lambda: read_idx(path), path)


# --- CIFAR -------------------------------------------------------------------------------------


def _cifar_archive(n: int = 2) -> bytes:
    rng = np.random.default_rng(0)
    meta = pickle.dumps({b"label_names": [b"a", b"b"]}, protocol=2)
    batch = pickle.dumps(
        {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": [0, 1][:n]},
        protocol=2,
    )
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name in ("batches.meta", *CIFAR10.train, *CIFAR10.test):
            payload = meta if name == "batches.meta" else batch
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


_ARCHIVE = _cifar_archive()
_BATCH = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}, protocol=2)


@FUZZ
@given(edits=_EDITS)
def test_fuzzed_cifar_archives(tmp_path: Path, edits: list[tuple[int, int]]) -> None:
    path = tmp_path / "cifar-10-python.tar.gz"
    path.write_bytes(_flip(_ARCHIVE, edits))
    result = _clean(lambda: load_cifar(path, CIFAR10, "train"), path)
    if result is not None:
        images, labels, classes = result
        assert images.shape[1:] == (3, 32, 32) and len(images) == len(labels)
        assert int(labels.max()) < len(classes)


@FUZZ
@given(edits=_EDITS, data=st.binary(max_size=256), raw=st.booleans())
def test_fuzzed_cifar_pickles(edits: list[tuple[int, int]], data: bytes, raw: bool) -> None:
    payload = data if raw else _flip(_BATCH, edits)
    _clean(lambda: safe_loads(payload, "batch"), "batch")


# --- image folders -----------------------------------------------------------------------------


def _png(side: int = 6, mode: str = "L") -> bytes:
    buffer = io.BytesIO()
    shape = (side, side) if mode == "L" else (side, side, 3)
    Image.fromarray(np.full(shape, 7, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def _jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((6, 6, 3), 90, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


_IMAGES = {"png": _png(), "rgb.png": _png(mode="RGB"), "jpg": _jpeg()}


@FUZZ
@given(
    kind=st.sampled_from(sorted(_IMAGES)),
    edits=_EDITS,
    width=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
    height=st.one_of(st.none(), st.integers(0, 2**31 - 1)),
)
def test_fuzzed_images_in_a_folder(
    tmp_path: Path, kind: str, edits: list[tuple[int, int]], width: Any, height: Any
) -> None:
    data = _flip(_IMAGES[kind], edits)
    if kind.endswith("png") and width is not None and height is not None:
        # a header declaring any canvas: refused by the pixel limit, or decoded (and failing)
        ihdr = struct.pack(">II", width, height) + data[24:29]
        data = data[:16] + ihdr + data[29:]
    root = Path(tempfile.mkdtemp(dir=tmp_path))  # one folder per example
    for c in ("a", "b"):
        for i in range(2):
            (root / c).mkdir(exist_ok=True)
            (root / c / f"{i}.png").write_bytes(_IMAGES["png"])
    fuzzed = root / "a" / f"fuzzed.{kind.split('.')[-1]}"
    fuzzed.write_bytes(data)
    result = _clean(lambda: load_dataset(root, split="train", val_fraction=0.0), fuzzed)
    if result is not None:
        assert result.images.shape[0] == 5 and result.images.shape[2:] == (6, 6)


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
def test_fuzzed_bytes_decoded_at_a_given_size(tmp_path: Path, data: bytes, suffix: str) -> None:
    assume(data)
    path = tmp_path / f"x{suffix}"
    path.write_bytes(data)
    result = _clean(lambda: decode_images([path], (4, 4), workers=1), path)
    if result is not None:
        assert result.shape[2:] == (4, 4)


@pytest.mark.parametrize("name", ["idx", "cifar", "folder"])
def test_fuzz_inputs_are_accepted_when_valid(tmp_path: Path, name: str) -> None:
    # the fuzz base files themselves read back: the tests above start from real formats
    if name == "idx":
        path = tmp_path / "f.gz"
        path.write_bytes(gzip.compress(struct.pack(">HBBI", 0, 8, 1, 3) + b"abc"))
        assert read_idx(path).tolist() == [97, 98, 99]
    elif name == "cifar":
        path = tmp_path / "c.tar.gz"
        path.write_bytes(_ARCHIVE)
        assert load_cifar(path, CIFAR10, "train")[0].shape == (10, 3, 32, 32)
    else:
        path = tmp_path / "x.jpg"
        path.write_bytes(_IMAGES["jpg"])
        assert decode_images([path], (6, 6), workers=1).shape == (1, 3, 6, 6)
