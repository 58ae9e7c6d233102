"""Hostile data files (issue #13): each reader refuses them from their headers, in one line naming
the file, without allocating what they declare. Memory is measured with tracemalloc (numpy and
Python buffers are traced; the bombs below would need 0.5 to 3 GiB of them without the checks).
"""

from __future__ import annotations

import gzip
import io
import pickle
import tarfile
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from cnnzoo.data import DatasetError, load_dataset
from cnnzoo.data.cifar import CIFAR10, load_cifar, safe_loads
from cnnzoo.data.folder import decode_images
from cnnzoo.data.idx import read_idx, read_idx_pair, write_idx
from hostile_files import gzip_bomb, idx_header, png_bomb, small_png, sparse_file, tar_gz_bomb

GIB = 1 << 30
MB = 1 << 20


def _peak(fn: Callable[[], Any]) -> tuple[BaseException | None, int]:
    """Run ``fn``; the exception it raised (or None) and the peak traced allocation in bytes."""
    tracemalloc.start()
    try:
        fn()
        error = None
    except Exception as caught:
        error = caught
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return error, peak


def _refused(fn: Callable[[], Any], *fragments: str, budget: int = 16 * MB) -> str:
    error, peak = _peak(fn)
    assert isinstance(error, DatasetError), f"expected a DatasetError, got {error!r}"
    message = str(error)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert peak < budget, f"peak {peak / MB:.1f} MB for: {message}"
    return message


@pytest.fixture
def mnist_dir(tmp_path: Path) -> Iterator[Path]:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 6), ("t10k", 3)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        write_idx(tmp_path / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(tmp_path / f"{prefix}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, np.uint8))
    yield tmp_path


# --- IDX ---------------------------------------------------------------------------------------


def test_idx_gzip_bomb_with_bad_magic_stops_at_the_header(mnist_dir: Path) -> None:
    # the file: 3 MB of gzip, bad magic, then 3 GiB of zeros (was 6.5 GB and 52 s)
    bomb = mnist_dir / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_bomb(b"\x12\x34\x08\x03", 3 * GIB))
    assert bomb.stat().st_size < 4 * MB
    _refused(lambda: load_dataset("mnist", mnist_dir), str(bomb), "bad IDX magic number")


def test_idx_gzip_bomb_behind_a_valid_header_is_read_only_as_far_as_declared(
    mnist_dir: Path,
) -> None:
    bomb = mnist_dir / "train-labels-idx1-ubyte.gz"
    bomb.write_bytes(gzip_bomb(idx_header(0x08, (6,)), GIB))
    _refused(
        lambda: load_dataset("mnist", mnist_dir),
        str(bomb),
        "has trailing bytes: shape 6 needs 6 data bytes, found at least 7",
    )


def test_idx_header_declaring_more_than_the_dataset_is_refused_before_reading(
    mnist_dir: Path,
) -> None:
    bomb = mnist_dir / "train-images-idx3-ubyte.gz"
    bomb.write_bytes(gzip_bomb(idx_header(0x08, (10**6, 28, 28)), GIB))
    labels = mnist_dir / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(idx_header(0x08, (10**6,))))
    _refused(
        lambda: load_dataset("mnist", mnist_dir),
        str(bomb),
        "1000000 images, expected at most 60000",
    )


def test_idx_wrong_image_size_is_refused_from_the_header(mnist_dir: Path) -> None:
    bad = mnist_dir / "train-images-idx3-ubyte.gz"
    write_idx(bad, np.zeros((6, 32, 32), np.uint8))
    _refused(lambda: load_dataset("mnist", mnist_dir), "6x32x32, expected Nx28x28")


@pytest.mark.parametrize(
    "shape",
    [(1 << 16,) * 4, (1 << 32) - 1, (4294967295, 4294967295, 4294967295)],
    ids=["product-2**64", "one-huge-dim", "three-huge-dims"],
)
def test_idx_dimension_products_do_not_wrap_around(tmp_path: Path, shape: Any) -> None:
    # int64 products of these wrap to 0 or to small numbers: the old size check passed
    shape = shape if isinstance(shape, tuple) else (shape,)
    path = tmp_path / "x-idx"
    path.write_bytes(idx_header(0x08, shape))
    _refused(lambda: read_idx(path), str(path), "over the limit of")


def test_idx_raw_file_size_is_checked_before_its_data_is_read(tmp_path: Path) -> None:
    path = sparse_file(tmp_path / "big-idx3-ubyte", idx_header(0x08, (10, 28, 28)), 3 * GIB)
    _refused(lambda: read_idx(path), "has trailing bytes: shape 10x28x28 needs 7840")


def test_idx_count_mismatch_is_found_from_the_headers_alone(tmp_path: Path) -> None:
    images = tmp_path / "i.gz"
    images.write_bytes(gzip_bomb(idx_header(0x08, (5, 28, 28)), GIB))  # never decompressed
    labels = tmp_path / "l"
    write_idx(labels, np.zeros(4, np.uint8))
    _refused(lambda: read_idx_pair(images, labels), "holds 5 images but", "holds 4 labels")


def test_idx_data_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "a-idx"
    write_idx(path, np.zeros((100, 10), np.uint8))
    monkeypatch.setenv("CNNZOO_MAX_DATA_BYTES", "999")
    _refused(lambda: read_idx(path), "over the limit of 999 bytes", "--max-data-bytes")
    monkeypatch.setenv("CNNZOO_MAX_DATA_BYTES", "1000")
    assert read_idx(path).shape == (100, 10)


# --- CIFAR -------------------------------------------------------------------------------------


def test_cifar_tar_bomb_is_refused_without_reading_the_member(tmp_path: Path) -> None:
    # the file: a 3 MB .tar.gz whose batches.meta holds 3 GiB (was a 3.4 GB peak)
    bomb = tar_gz_bomb(
        tmp_path / "cifar-10-python.tar.gz", "cifar-10-batches-py/batches.meta", 3 * GIB
    )
    assert bomb.stat().st_size < 4 * MB
    _refused(lambda: load_cifar(bomb, CIFAR10, "train"), str(bomb))


def test_cifar_member_over_its_declared_ceiling_is_refused(tmp_path: Path) -> None:
    # within the archive ceiling, but a meta file of 32 MB is not a CIFAR meta file
    bomb = tar_gz_bomb(tmp_path / "c.tar.gz", "cifar-10-batches-py/batches.meta", 32 * MB)
    _refused(
        lambda: load_cifar(bomb, CIFAR10, "train"),
        "batches.meta: 33554432 bytes, more than the 1048576",
    )


def test_cifar_folder_file_is_checked_by_size_first(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    sparse_file(folder / "batches.meta", b"\x80\x02", 3 * GIB)
    _refused(lambda: load_cifar(folder, CIFAR10, "train"), "batches.meta: 3221225472 bytes")


class _Placeholder:
    """Pickles as numpy's array placeholder call, with a shape numpy never writes."""

    def __reduce__(self) -> tuple[Any, ...]:
        reconstruct = np.ndarray.__reduce__(np.zeros(1))[0]  # numpy's own _reconstruct
        return (reconstruct, (np.ndarray, (10**10,), np.dtype("u1")))


def test_cifar_pickle_cannot_allocate_through_the_array_placeholder() -> None:
    # _reconstruct(ndarray, (10**10,), uint8) would allocate 10 GB before any data is read
    payload = pickle.dumps({b"data": _Placeholder()}, protocol=2)
    _refused(lambda: safe_loads(payload, "x"), "x: not a valid CIFAR pickle", "placeholder")


@pytest.mark.parametrize(
    "payload",
    [
        b"\x80\x04\x8e" + (1 << 40).to_bytes(8, "little") + b"abc.",  # BINBYTES8: 1 TiB
        b"\x80\x02B" + (1 << 31).to_bytes(4, "little") + b"abc.",  # BINBYTES: 2 GiB
        b"\x80\x04\x95" + (1 << 40).to_bytes(8, "little") + b"N.",  # FRAME: 1 TiB
    ],
    ids=["binbytes8", "binbytes", "frame"],
)
def test_pickle_lengths_past_the_end_are_refused_before_allocating(payload: bytes) -> None:
    # the C unpickler allocates a declared length before reading it (tracemalloc sees it)
    _refused(lambda: safe_loads(payload, "batch"), "batch: not a valid CIFAR pickle", "declares")


def test_a_real_cifar_batch_still_reads_through_the_limits(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    data = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
    meta = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    batch = {b"data": data, b"labels": [1, 2, 3, 4]}
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("batches.meta", *CIFAR10.train, *CIFAR10.test):
            payload = pickle.dumps(meta if name == "batches.meta" else batch, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    images, labels, classes = load_cifar(archive, CIFAR10, "train")
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == [1, 2, 3, 4] * 5
    assert classes[:2] == ("c0", "c1")


# --- image folders -----------------------------------------------------------------------------


def _folder(root: Path, per_class: int = 3, side: int = 16) -> Path:
    for c in ("a", "b"):
        for i in range(per_class):
            small_png(root / c / f"{i}.png", side, 10 * i)
    return root


def test_one_huge_png_among_small_ones_is_refused_from_its_header(tmp_path: Path) -> None:
    # the file: 12000x12000 in 140 KB among 16x16 images (was 14.6 GB in `data info`)
    root = _folder(tmp_path / "f")
    bomb = png_bomb(root / "a" / "huge.png", 12000, 12000)
    assert bomb.stat().st_size < MB
    message = _refused(
        lambda: load_dataset(root, split="train"),
        str(bomb),
        "12000x12000 = 144000000 pixels, over the limit of 25000000 pixels per image",
        "--max-image-pixels",
    )
    assert "unreadable" not in message


def test_decompression_bomb_sized_png_is_our_clear_error_not_pillows(tmp_path: Path) -> None:
    root = _folder(tmp_path / "f")
    bomb = png_bomb(root / "b" / "z.png", 20000, 20000, full=False)  # was DecompressionBombError
    _refused(lambda: load_dataset(root, split="val"), str(bomb), "20000x20000")


def test_decoding_at_a_given_size_still_holds_each_file_to_the_limit(tmp_path: Path) -> None:
    bomb = png_bomb(tmp_path / "huge.png", 12000, 12000)
    _refused(lambda: decode_images([bomb], (8, 8), workers=1), str(bomb), "pixels per image")


def test_the_pixel_limit_can_be_raised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = _folder(tmp_path / "f", side=40)
    monkeypatch.setenv("CNNZOO_MAX_IMAGE_PIXELS", "1599")
    _refused(lambda: load_dataset(root), "40x40 = 1600 pixels, over the limit of 1599")
    monkeypatch.setenv("CNNZOO_MAX_IMAGE_PIXELS", "1600")
    assert load_dataset(root).image_size == (1, 40, 40)


def test_a_folder_too_large_to_decode_is_refused_before_decoding(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _folder(tmp_path / "f", per_class=4, side=64)
    monkeypatch.setenv("CNNZOO_MAX_DATA_BYTES", str(64 * 64 * 3 * 5))
    _refused(lambda: load_dataset(root, val_fraction=0.0), "8 images at 64x64", "--max-data-bytes")


def test_train_and_val_share_one_size_and_channels(tmp_path: Path) -> None:
    # the issue: train chose 16x16 and val 64x64 from their own files
    for c in ("a", "b"):
        for i in range(3):
            small_png(tmp_path / "train" / c / f"{i}.png", 16, i)
        small_png(tmp_path / "val" / c / "0.png", 64, 5, mode="RGB")
        small_png(tmp_path / "val" / c / "1.png", 64, 6, mode="RGB")
        small_png(tmp_path / "val" / c / "2.png", 64, 7, mode="RGB")
        small_png(tmp_path / "val" / c / "3.png", 64, 8, mode="RGB")
    train = load_dataset(tmp_path, split="train")
    val = load_dataset(tmp_path, split="val")
    # 8 files at 64x64 outnumber 6 at 16x16; one RGB file makes the whole set RGB
    assert train.image_size == val.image_size == (3, 64, 64)
