"""Properties of the batched augmentations (hypothesis) and their determinism."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzoo.data import augment as A
from cnnzoo.data.augment import _hsv_to_rgb, _rgb_to_hsv, _sample_boxes

FAST = settings(max_examples=40, deadline=None)


@st.composite
def batches(
    draw: st.DrawFn, channels: tuple[int, ...] = (1, 3), max_side: int = 10
) -> torch.Tensor:
    n = draw(st.integers(1, 4))
    c = draw(st.sampled_from(channels))
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, h, w), generator=g, dtype=torch.uint8)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@FAST
@given(batches(), st.integers(0, 4), st.sampled_from([0.0, 0.5, 1.0]), st.data())
def test_random_crop_is_a_window_of_the_padded_image(
    x: torch.Tensor, padding: int, flip: float, data: st.DataObject
) -> None:
    padded = A.pad(x, padding)
    h = data.draw(st.integers(1, padded.shape[2]))
    w = data.draw(st.integers(1, padded.shape[3]))
    seed = data.draw(st.integers(0, 99))
    out = A.random_crop(x, (h, w), padding, flip=flip, generator=_gen(seed))
    assert out.shape == (*x.shape[:2], h, w) and out.dtype == x.dtype
    for image, crop in zip(padded, out, strict=True):
        windows = [
            (top, left)
            for top in range(padded.shape[2] - h + 1)
            for left in range(padded.shape[3] - w + 1)
            if torch.equal(image[:, top : top + h, left : left + w], crop)
            or (flip and torch.equal(image[:, top : top + h, left : left + w].flip(-1), crop))
        ]
        assert windows, "the crop is not a (mirrored) window of the padded image"
    if flip == 1.0:  # the same offsets (drawn first), every window mirrored
        plain = A.random_crop(x, (h, w), padding, generator=_gen(seed))
        assert torch.equal(out, plain.flip(-1))


def test_random_crop_uses_every_offset_with_similar_frequency() -> None:
    x = torch.arange(4 * 4, dtype=torch.float32).view(1, 1, 4, 4).expand(4000, 1, 4, 4)
    out = A.random_crop(x, (4, 4), padding=1, generator=_gen(0))
    # with padding 1 there are 3x3 offsets; the top-left value tells which one was taken
    corners = out[:, 0, 1, 1]
    counts = torch.bincount(corners.long(), minlength=16)
    taken = counts[counts > 0]
    assert len(taken) == 9 and taken.min() > 4000 / 9 * 0.75


@FAST
@given(batches(), st.integers(0, 10_000))
def test_flip_twice_is_identity(x: torch.Tensor, seed: int) -> None:
    assert torch.equal(A.horizontal_flip(A.horizontal_flip(x)), x)
    once = A.random_horizontal_flip(x, generator=_gen(seed))
    assert torch.equal(A.random_horizontal_flip(once, generator=_gen(seed)), x)
    for original, flipped in zip(x, once, strict=True):  # each image kept or mirrored
        assert torch.equal(flipped, original) or torch.equal(flipped, original.flip(-1))


def test_random_flip_probability_bounds() -> None:
    x = torch.arange(6.0).view(1, 1, 1, 6).repeat(1000, 1, 1, 1)
    assert torch.equal(A.random_horizontal_flip(x, p=0.0, generator=_gen(0)), x)
    assert torch.equal(A.random_horizontal_flip(x, p=1.0, generator=_gen(0)), x.flip(-1))
    flipped = (A.random_horizontal_flip(x, generator=_gen(0))[:, 0, 0, 0] == 5).float().mean()
    assert 0.45 < flipped < 0.55


@FAST
@given(batches(), st.integers(1, 12), st.integers(1, 12))
def test_resize_shapes_and_range(x: torch.Tensor, h: int, w: int) -> None:
    out = A.resize(A.to_float(x), (h, w))
    assert out.shape == (*x.shape[:2], h, w)
    assert out.min() >= -1e-6 and out.max() <= 1 + 1e-6  # bilinear is a convex combination
    assert A.resize(x, (h, w)).dtype == torch.uint8


def test_pad_to_centres_like_lenet() -> None:
    x = torch.ones(2, 1, 28, 28)
    out = A.pad_to(x, (32, 32))
    assert out.shape == (2, 1, 32, 32) and out.sum() == 2 * 28 * 28
    assert torch.equal(out[:, :, 2:30, 2:30], x)
    with pytest.raises(ValueError, match="cannot pad"):
        A.pad_to(x, (27, 32))


@FAST
@given(batches(max_side=12), st.integers(1, 9), st.integers(1, 9), st.integers(0, 999))
def test_random_resized_crop_shape_range_and_determinism(
    x: torch.Tensor, h: int, w: int, seed: int
) -> None:
    xf = A.to_float(x)
    out = A.random_resized_crop(xf, (h, w), generator=_gen(seed))
    assert out.shape == (*x.shape[:2], h, w)
    assert out.min() >= xf.min() - 1e-5 and out.max() <= xf.max() + 1e-5
    assert torch.equal(out, A.random_resized_crop(xf, (h, w), generator=_gen(seed)))


@FAST
@given(st.integers(1, 40), st.integers(1, 40), st.integers(0, 999))
def test_sampled_boxes_lie_inside_and_match_the_area_rule(
    height: int, width: int, seed: int
) -> None:
    top, left, h, w, found = _sample_boxes(
        64, height, width, (0.08, 1.0), (3 / 4, 4 / 3), _gen(seed)
    )
    assert bool(((top >= 0) & (left >= 0) & (h >= 1) & (w >= 1)).all())
    assert bool(((top + h <= height) & (left + w <= width)).all())
    area = (h * w).double() / (height * width)
    # found boxes: the rounded sides of an area in [0.08, 1] with aspect in [3/4, 4/3]
    slack = 2 * (1 / height + 1 / width) + 1 / (height * width)
    assert bool((area[found] <= 1.0 + 1e-9).all() and (area[found] >= 0.08 - slack).all())


def test_full_box_random_resized_crop_is_identity() -> None:
    x = torch.rand(3, 3, 6, 9, generator=_gen(0))
    out = A.random_resized_crop(x, (6, 9), scale=(1.0, 1.0), ratio=(1.5, 1.5), generator=_gen(1))
    assert torch.allclose(out, x, atol=1e-6)


@FAST
@given(batches(channels=(3,)), st.integers(0, 999))
def test_color_jitter_stays_in_range_and_zero_strength_is_identity(
    x: torch.Tensor, seed: int
) -> None:
    xf = A.to_float(x)
    out = A.color_jitter(xf, 0.4, 0.4, 0.4, 0.1, generator=_gen(seed))
    assert out.shape == xf.shape and out.min() >= 0 and out.max() <= 1 + 1e-6
    assert torch.equal(A.color_jitter(xf, generator=_gen(seed)), xf)


@FAST
@given(batches(channels=(3,)))
def test_hsv_round_trip(x: torch.Tensor) -> None:
    xf = A.to_float(x)
    assert torch.allclose(_hsv_to_rgb(*_rgb_to_hsv(xf)), xf, atol=1e-5, rtol=0)


def test_hue_shift_of_a_third_turn_rotates_primaries() -> None:
    red = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    h, s, v = _rgb_to_hsv(red)
    green = _hsv_to_rgb((h + 1 / 3) % 1.0, s, v)
    assert torch.allclose(green.flatten(), torch.tensor([0.0, 1.0, 0.0]), atol=1e-6)


@FAST
@given(batches(), st.integers(0, 999))
def test_erasing_and_cutout_only_write_the_fill_value(x: torch.Tensor, seed: int) -> None:
    xf = A.to_float(x) + 1.0  # 1..2, so the fill 0 is distinguishable
    for out in (
        A.random_erasing(xf, p=1.0, generator=_gen(seed)),
        A.cutout(xf, 3, generator=_gen(seed)),
    ):
        changed = out != xf
        assert out.shape == xf.shape and bool((out[changed] == 0).all())
        assert bool((changed == changed[:, :1]).all())  # the same box in every channel


def test_cutout_box_size_and_clipping() -> None:
    x = torch.ones(500, 1, 12, 12)
    out = A.cutout(x, 4, generator=_gen(0))
    erased = (out == 0).sum(dim=(1, 2, 3))
    assert erased.max() == 16 and erased.min() >= 4  # a whole 4x4 inside; 2x2 left at a corner
    assert torch.equal(A.random_erasing(x, p=0.0, generator=_gen(0)), x)


@pytest.mark.parametrize("fn", ["crop", "flip", "rrc", "jitter", "erase", "cutout"])
def test_each_random_augmentation_is_a_function_of_the_seed(fn: str) -> None:
    x = torch.rand(8, 3, 10, 10, generator=_gen(5))

    def run(seed: int) -> torch.Tensor:
        g = _gen(seed)
        return {
            "crop": lambda: A.random_crop(x, (10, 10), 2, generator=g),
            "flip": lambda: A.random_horizontal_flip(x, generator=g),
            "rrc": lambda: A.random_resized_crop(x, (7, 7), generator=g),
            "jitter": lambda: A.color_jitter(x, 0.5, 0.5, 0.5, 0.2, generator=g),
            "erase": lambda: A.random_erasing(x, p=0.8, generator=g),
            "cutout": lambda: A.cutout(x, 4, generator=g),
        }[fn]()

    assert torch.equal(run(1), run(1))
    assert not torch.equal(run(1), run(2))


def test_normalize_and_channels() -> None:
    x = torch.rand(2, 3, 4, 4)
    out = A.normalize(x, (0.5, 0.4, 0.3), (0.2, 0.1, 0.5))
    assert torch.allclose(out[:, 1], (x[:, 1] - 0.4) / 0.1)
    gray = torch.randint(0, 256, (2, 1, 5, 5), dtype=torch.uint8)
    rgb = A.to_channels(gray, 3)
    assert rgb.shape == (2, 3, 5, 5) and torch.equal(A.to_channels(rgb, 1), gray)
    luma = A.to_channels(torch.tensor([[[[1.0]], [[0.0]], [[0.0]]]]), 1)
    assert math.isclose(float(luma), 0.299, rel_tol=1e-6)
    with pytest.raises(ValueError, match="only 1 <-> 3"):
        A.to_channels(x, 2)
