"""IDX (MNIST-likes) and CIFAR pickles: round trips on generated files, every validation error."""

from __future__ import annotations

import gzip
import io
import os
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from cnnzoo.data import DatasetError, load_dataset
from cnnzoo.data.cifar import RestrictedUnpickler, safe_loads
from cnnzoo.data.idx import read_idx, write_idx

RNG = np.random.default_rng(0)


def _mnist_arrays(n: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    return RNG.integers(0, 256, (n, side, side), dtype=np.uint8), RNG.integers(
        0, 10, n, dtype=np.uint8
    )


def _write_mnist(folder: Path, n_train: int = 12, n_test: int = 5, gz: bool = True) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    ext = ".gz" if gz else ""
    arrays = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images, labels = _mnist_arrays(n)
        write_idx(folder / f"{prefix}-images-idx3-ubyte{ext}", images)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{ext}", labels)
        arrays[prefix] = (images, labels)
    return arrays


# --- IDX ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_idx_round_trip_every_type(tmp_path: Path, dtype: Any, suffix: str) -> None:
    array = (RNG.standard_normal((3, 4, 5)) * 50).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    if suffix:
        assert path.read_bytes()[:2] == b"\x1f\x8b"  # really gzipped
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == (3, 4, 5)
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian_as_published(tmp_path: Path) -> None:
    path = tmp_path / "labels"
    write_idx(path, np.arange(3, dtype=np.uint8))
    # magic 0x00000801, count 3 (big-endian), then the bytes
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 0, 1, 2])


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("layout", ["flat", "named", "torchvision"])
def test_mnist_loads_from_every_layout(tmp_path: Path, gz: bool, layout: str) -> None:
    folder = {"flat": tmp_path, "named": tmp_path / "mnist", "torchvision": tmp_path / "MNIST/raw"}
    arrays = _write_mnist(folder[layout], gz=gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ds = load_dataset("mnist", tmp_path, split)
        images, labels = arrays[prefix]
        assert ds.images.shape == (len(images), 1, 28, 28) and ds.images.dtype == torch.uint8
        assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
        assert torch.equal(ds.labels, torch.from_numpy(labels.astype(np.int64)))
        assert ds.classes == tuple("0123456789") and ds.mean == (0.1307,)


@pytest.mark.parametrize("name", ["fashion_mnist", "fashion-mnist", "kmnist"])
def test_other_idx_datasets_use_their_folder_and_classes(tmp_path: Path, name: str) -> None:
    folder = "fashion_mnist" if name.startswith("fashion") else "kmnist"
    _write_mnist(tmp_path / folder)
    ds = load_dataset(name, tmp_path, "train")
    assert len(ds) == 12 and len(ds.classes) == 10
    assert ds.classes[0] == ("T-shirt/top" if folder == "fashion_mnist" else "o")


def _corrupt(path: Path, data: bytes) -> None:
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)


def test_bad_magic_names_the_file(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    _corrupt(bad, b"\x12\x34\x08\x03" + bad.read_bytes()[4:])
    with pytest.raises(
        DatasetError, match=r"train-images-idx3-ubyte: bad IDX magic number 0x12340803"
    ):
        load_dataset("mnist", tmp_path)


def test_truncated_file_says_how_many_bytes(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    _corrupt(path, raw[:-100])
    with pytest.raises(
        DatasetError, match=r"images-idx3-ubyte.gz: truncated: shape 12x28x28 needs 9408"
    ):
        load_dataset("mnist", tmp_path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(DatasetError, match=r"train-labels-idx1-ubyte.gz: not a readable gzip"):
        load_dataset("mnist", tmp_path)


def test_count_mismatch_names_both_files(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11, dtype=np.uint8))
    with pytest.raises(
        DatasetError,
        match=r"count mismatch: .*images-idx3-ubyte holds 12 images but .*idx1-ubyte holds 11",
    ):
        load_dataset("mnist", tmp_path)


def test_swapped_files_are_caught_by_their_magic(tmp_path: Path) -> None:
    _write_mnist(tmp_path, gz=False)
    images, labels = tmp_path / "train-images-idx3-ubyte", tmp_path / "train-labels-idx1-ubyte"
    a, b = images.read_bytes(), labels.read_bytes()
    images.write_bytes(b)
    labels.write_bytes(a)
    with pytest.raises(DatasetError, match=r"images-idx3-ubyte: expected uint8 images with 3 dim"):
        load_dataset("mnist", tmp_path)


def test_missing_files_say_where_it_looked_and_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DatasetError) as info:
        load_dataset("kmnist", tmp_path, "test")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte[.gz]" in message and str(tmp_path / "kmnist") in message
    assert "cnnzoo data download kmnist" in message


def test_unknown_name_lists_the_choices(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"unknown dataset 'mnits': expected one of .*mnist"):
        load_dataset("mnits", tmp_path)
    with pytest.raises(ValueError, match="unknown split"):
        load_dataset("mnist", tmp_path, "validation")


# --- CIFAR -------------------------------------------------------------------------------------


def _py2_style(obj: Any) -> bytes:
    # like the distributed files: protocol 2, bytes keys, numpy array data
    return pickle.dumps(obj, protocol=2)


def _cifar_batch(n: int, label_key: bytes, classes: int) -> tuple[dict, np.ndarray, list[int]]:
    data = RNG.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in RNG.integers(0, classes, n)]
    return (
        {b"batch_label": b"x", b"data": data, label_key: labels, b"filenames": [b"a"] * n},
        data,
        labels,
    )


def _write_cifar(root: Path, variant: str, archive: bool, n: int = 4) -> dict[str, tuple]:
    if variant == "cifar10":
        folder, key, names_key, meta = (
            "cifar-10-batches-py",
            b"labels",
            b"label_names",
            "batches.meta",
        )
        splits = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
        classes = 10
    else:
        folder, key, names_key, meta = (
            "cifar-100-python",
            b"fine_labels",
            b"fine_label_names",
            "meta",
        )
        splits = {"train": ["train"], "test": ["test"]}
        classes = 100
    members = {meta: _py2_style({names_key: [f"c{i}".encode() for i in range(classes)]})}
    expected = {}
    for split, names in splits.items():
        datas, labels = [], []
        for name in names:
            batch, data, label = _cifar_batch(n, key, classes)
            members[name] = _py2_style(batch)
            datas.append(data)
            labels += label
        expected[split] = (np.concatenate(datas), labels)
    if archive:
        target = root / (
            "cifar-10-python.tar.gz" if variant == "cifar10" else "cifar-100-python.tar.gz"
        )
        with tarfile.open(target, "w:gz") as tar:
            for name, payload in members.items():
                info = tarfile.TarInfo(f"{folder}/{name}")
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    else:
        (root / folder).mkdir(parents=True)
        for name, payload in members.items():
            (root / folder / name).write_bytes(payload)
    return expected


@pytest.mark.parametrize("variant", ["cifar10", "cifar100"])
@pytest.mark.parametrize("archive", [False, True])
def test_cifar_round_trip_folder_and_tar_gz(tmp_path: Path, variant: str, archive: bool) -> None:
    expected = _write_cifar(tmp_path, variant, archive)
    for split in ("train", "test"):
        ds = load_dataset(variant, tmp_path, split)
        data, labels = expected[split]
        assert ds.images.shape == (len(data), 3, 32, 32)
        # row layout: 1024 red, then green, then blue, each in row order
        assert torch.equal(ds.images.reshape(len(data), -1), torch.from_numpy(data))
        assert ds.images[0, 1, 0, 5] == data[0, 1024 + 5]
        assert ds.labels.tolist() == labels
        assert len(ds.classes) == (10 if variant == "cifar10" else 100) and ds.classes[3] == "c3"


def test_cifar_reads_pickles_written_by_python3_protocols(tmp_path: Path) -> None:
    # numpy 2 pickles name numpy._core and, under protocol 5, _frombuffer; str keys, not bytes
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for protocol in (2, 4, 5):
        for i in range(1, 6):
            data = np.full((2, 3072), i, dtype=np.uint8)
            batch = {"data": data, "labels": np.array([i, 0])}
            (folder / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=protocol))
        (folder / "batches.meta").write_bytes(
            pickle.dumps({"label_names": [str(i) for i in range(10)]}, protocol=protocol)
        )
        ds = load_dataset("cifar10", tmp_path)
        assert ds.labels.tolist() == [1, 0, 2, 0, 3, 0, 4, 0, 5, 0]
        assert ds.images[2].unique().tolist() == [2]


class _Payload:
    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))  # type: ignore[attr-defined]


@pytest.mark.parametrize("member", ["data_batch_3", "batches.meta"])
def test_hostile_pickle_is_refused_and_its_payload_never_runs(tmp_path: Path, member: str) -> None:
    _write_cifar(tmp_path, "cifar10", archive=False)
    marker = tmp_path / "pwned"
    payload = _Payload()
    payload.marker = marker  # type: ignore[attr-defined]
    hostile = pickle.dumps({b"data": payload, b"labels": [0]}, protocol=2)
    # control: plain pickle would run it, so the file is truly hostile
    pickle.loads(hostile)
    assert marker.exists()
    marker.unlink()
    (tmp_path / "cifar-10-batches-py" / member).write_bytes(hostile)
    with pytest.raises(
        DatasetError,
        match=rf"{member}: not a valid CIFAR pickle .*refused global (posix|os)\.system",
    ):
        load_dataset("cifar10", tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module, name",
    [("builtins", "eval"), ("builtins", "getattr"), ("subprocess", "Popen"), ("numpy", "load")],
)
def test_restricted_unpickler_refuses_other_globals(module: str, name: str) -> None:
    stream = io.BytesIO(b"")
    with pytest.raises(pickle.UnpicklingError, match=f"refused global {module}.{name}"):
        RestrictedUnpickler(stream).find_class(module, name)


def test_object_arrays_and_odd_codecs_are_refused() -> None:
    with pytest.raises(DatasetError, match="object arrays are not allowed"):
        safe_loads(pickle.dumps(np.array([1, "a"], dtype=object), protocol=2), "x")
    crafted = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x04\x00\x00\x00zlib\x86R."
    with pytest.raises(DatasetError, match="codec 'zlib' is not allowed"):
        safe_loads(crafted, "x")


@pytest.mark.parametrize(
    "batch, message",
    [
        ([1, 2, 3], "expected a dict, found list"),
        ({b"labels": [0]}, "missing key 'data'"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key 'labels'"),
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "rows have 100 values"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "must be a uint8 array"),
        (
            {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]},
            "count mismatch: 2 images but 1 labels",
        ),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": ["a", "b"]}, "must be a list of ints"),
        (
            {b"data": np.zeros((1, 3072), np.uint8), b"labels": [10]},
            r"labels span 10..10, expected 0..9",
        ),
    ],
)
def test_wrong_pickle_structure_names_file_and_expectation(
    tmp_path: Path, batch: Any, message: str
) -> None:
    _write_cifar(tmp_path, "cifar10", archive=False)
    (tmp_path / "cifar-10-batches-py" / "data_batch_2").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(DatasetError, match=rf"data_batch_2: .*{message}"):
        load_dataset("cifar10", tmp_path)


def test_truncated_archive_and_missing_member(tmp_path: Path) -> None:
    _write_cifar(tmp_path, "cifar100", archive=True)
    archive = tmp_path / "cifar-100-python.tar.gz"
    archive.write_bytes(archive.read_bytes()[:-200])
    with pytest.raises(
        DatasetError, match=r"cifar-100-python.tar.gz.*(truncated|corrupt|not a readable)"
    ):
        load_dataset("cifar100", tmp_path, "test")
    other = tmp_path / "other"
    other.mkdir()
    with tarfile.open(other / "cifar-100-python.tar.gz", "w:gz") as tar:
        info = tarfile.TarInfo("cifar-100-python/meta")
        payload = pickle.dumps({b"fine_label_names": [b"a"] * 100}, protocol=2)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    with pytest.raises(DatasetError, match=r"the archive has no member 'cifar-100-python/test'"):
        load_dataset("cifar100", other, "test")
