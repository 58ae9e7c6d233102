"""Image folders: class subfolders, splits, gray/RGB, unreadable and empty folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnzoo.data import DatasetError, load_dataset
from cnnzoo.data.augment import normalize
from cnnzoo.data.folder import decode_images, scan_image_folder


def _save(path: Path, array: np.ndarray, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format=fmt)


def _make_folder(root: Path, per_class: int = 5, mode: str = "L", size: int = 6) -> None:
    for c, name in enumerate(("cat", "dog", "eel")):
        for i in range(per_class):
            value = 40 * c + i
            shape = (size, size) if mode == "L" else (size, size, 3)
            _save(root / name / f"{i:03d}.png", np.full(shape, value, dtype=np.uint8))


def test_gray_folder_loads_exact_pixels_and_a_seeded_split(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=10)
    train = load_dataset(tmp_path, split="train", val_fraction=0.2, seed=3)
    val = load_dataset(tmp_path, split="val", val_fraction=0.2, seed=3)
    assert train.classes == ("cat", "dog", "eel") and train.image_size == (1, 6, 6)
    assert (len(train), len(val)) == (24, 6)
    assert val.class_counts() == [2, 2, 2]  # stratified
    # every image is one flat value 40 * class + index: train and val partition all 30
    values = sorted(
        (int(lbl), int(img.flatten()[0]))
        for ds in (train, val)
        for img, lbl in zip(ds.images, ds.labels, strict=True)
    )
    assert values == [(c, 40 * c + i) for c in range(3) for i in range(10)]
    again = load_dataset(tmp_path, split="val", val_fraction=0.2, seed=3)
    other = load_dataset(tmp_path, split="val", val_fraction=0.2, seed=4)
    assert torch.equal(again.images, val.images)
    assert not torch.equal(other.images, val.images)


def test_rgb_and_jpeg_give_three_channels(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=3, mode="RGB")
    _save(tmp_path / "dog" / "x.jpg", np.full((6, 6, 3), (200, 10, 10), np.uint8), "JPEG")
    ds = load_dataset(tmp_path, split="train", val_fraction=0.0)
    assert ds.image_size == (3, 6, 6) and len(ds) == 10
    red = ds.images[ds.labels == 1].float().mean(dim=(2, 3))
    assert (red[:, 0] - red[:, 1]).max() > 150  # the JPEG's red survives decoding
    assert len(ds.mean) == 3


def test_mixed_gray_and_rgb_becomes_rgb(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=2)
    _save(tmp_path / "eel" / "rgb.png", np.zeros((6, 6, 3), np.uint8))
    ds = load_dataset(tmp_path, val_fraction=0.0)
    assert ds.image_size[0] == 3
    gray = ds.images[0]
    assert torch.equal(gray[0], gray[1]) and torch.equal(gray[1], gray[2])


def test_train_and_val_subfolders_are_used_as_given(tmp_path: Path) -> None:
    _make_folder(tmp_path / "train", per_class=4)
    _make_folder(tmp_path / "val", per_class=1)
    classes, train, val = scan_image_folder(tmp_path)
    assert classes == ("cat", "dog", "eel") and (len(train), len(val)) == (12, 3)
    assert all("val" in str(f) for f, _ in val)


def test_val_class_unknown_to_train_is_an_error(tmp_path: Path) -> None:
    _make_folder(tmp_path / "train", per_class=1)
    _make_folder(tmp_path / "val", per_class=1)
    _save(tmp_path / "val" / "yak" / "a.png", np.zeros((6, 6), np.uint8))
    with pytest.raises(DatasetError, match=r"classes \['yak'\] are not in"):
        scan_image_folder(tmp_path)


def test_sizes_differ_most_common_wins_and_others_are_fitted(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=2, size=8)
    _save(tmp_path / "cat" / "wide.png", np.full((4, 16), 255, np.uint8))
    ds = load_dataset(tmp_path, val_fraction=0.0)
    assert ds.image_size == (1, 8, 8)
    fixed = load_dataset(tmp_path, val_fraction=0.0, image_size=(5, 7))
    assert fixed.image_size == (1, 5, 7)


def test_unreadable_images_are_reported_by_name(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=2)
    (tmp_path / "dog" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (tmp_path / "eel" / "empty.jpg").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"2 unreadable image\(s\): .*broken.png: .*empty.jpg"):
        load_dataset(tmp_path, val_fraction=0.0)


def test_truncated_image_fails_at_decode_with_its_name(tmp_path: Path) -> None:
    _make_folder(tmp_path, per_class=2, size=64)
    path = tmp_path / "cat" / "000.png"
    _save(path, np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:200])  # the header reads, the pixels do not
    with pytest.raises(DatasetError, match=r"unreadable image\(s\): .*cat/000.png"):
        load_dataset(tmp_path, val_fraction=0.0)


def test_empty_folder_and_empty_class_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"empty: expected one subfolder per class"):
        load_dataset(tmp_path)
    (tmp_path / "cat").mkdir()
    (tmp_path / "cat" / "notes.txt").write_text("no images here")
    with pytest.raises(DatasetError, match=r"cat: no images \(expected files ending in"):
        load_dataset(tmp_path)
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset(str(tmp_path / "missing"))


def test_worker_processes_decode_the_same_as_inline(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    files = []
    for i in range(300):  # above the inline limit: a process pool decodes
        path = tmp_path / f"{i}.png"
        _save(path, rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
        files.append(path)
    pooled = decode_images(files, workers=2)
    inline = decode_images(files, workers=0)
    assert pooled.shape == (300, 3, 5, 5) and torch.equal(pooled, inline)
    assert torch.equal(pooled[7].permute(1, 2, 0), torch.from_numpy(np.array(Image.open(files[7]))))


def test_name_of_a_known_dataset_wins_over_a_folder_of_that_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _make_folder(tmp_path / "mnist", per_class=1)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DatasetError, match=r"mnist: no train-images-idx3-ubyte"):
        load_dataset("mnist", tmp_path / "nowhere")
    assert len(load_dataset("./mnist", val_fraction=0.0)) == 3  # a path is a folder


def test_a_constant_channel_is_centred_not_divided_by_zero(tmp_path: Path) -> None:
    # Red-only images: green and blue are 0 everywhere, their std 0.
    for c, name in enumerate(("a", "b")):
        for i in range(3):
            pixels = np.zeros((4, 4, 3), np.uint8)
            pixels[..., 0] = 60 * c + 20 * i
            _save(tmp_path / name / f"{i}.png", pixels)
    ds = load_dataset(tmp_path, split="train", val_fraction=0.0)
    assert ds.std[0] > 0 and ds.std[1:] == (1.0, 1.0)
    out = normalize(ds.images, ds.mean, ds.std)
    assert torch.isfinite(out).all() and out[:, 1:].abs().max() == 0
    with pytest.raises(ValueError, match="std must be positive per channel"):
        normalize(ds.images, ds.mean, (0.2, 0.0, 1.0))
