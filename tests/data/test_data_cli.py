"""`cnnzoo data info`: the printed facts and the sample grid PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnnzoo.cli import main
from cnnzoo.data import load_dataset


def test_info_on_the_embedded_default(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = tmp_path / "g.png"
    assert main(["data", "info", "digits", "--grid", str(grid), "--per-class", "5"]) == 0
    out = capsys.readouterr().out
    facts = dict(line.split(":", 1) for line in out.splitlines())
    assert facts["images"].strip() == "1x8x8 uint8"
    assert facts["train"].strip() == "1442 images" and facts["test"].strip() == "355 images"
    assert facts["classes"].strip().startswith("10: 0, 1, 2")
    assert facts["mean"].strip() == "0.3052" and "CC BY 4.0" in facts["licence"]
    image = Image.open(grid)
    # 10 class rows and 5 columns of 8x8 digits scaled 4x to 32px cells, 2px gaps
    assert image.mode == "L" and image.size == (2 + 5 * 34, 2 + 10 * 34)
    first_zero = load_dataset("digits").images[0, 0].numpy()  # the first train image is a 0
    cell = np.asarray(image)[2:34, 2:34]
    assert np.array_equal(cell, first_zero.repeat(4, 0).repeat(4, 1))


def test_info_on_an_rgb_image_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for c, name in enumerate(("a", "b")):
        (tmp_path / "imgs" / name).mkdir(parents=True)
        for i in range(10):
            colour = np.zeros((40, 40, 3), np.uint8)
            colour[..., c] = 250
            Image.fromarray(colour).save(tmp_path / "imgs" / name / f"{i}.png")
    grid = tmp_path / "g.png"
    assert main(["data", "info", str(tmp_path / "imgs"), "--grid", str(grid)]) == 0
    out = capsys.readouterr().out
    assert "imgs: image folder" in out and "3x40x40 uint8" in out
    assert "train:    18 images" in out and "test:     2 images" in out
    image = Image.open(grid)
    assert image.mode == "RGB" and image.size == (2 + 8 * 42, 2 + 2 * 42)
    assert tuple(np.asarray(image)[10, 10]) == (250, 0, 0)


@pytest.mark.parametrize(
    "args, message",
    [
        (["data", "info", "nosuch"], "unknown dataset 'nosuch'"),
        (["data", "info", "cifar10", "--data-dir", "/nonexistent"], "cifar10: neither"),
        (["data"], "the following arguments are required: ACTION"),
    ],
)
def test_errors_are_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    try:
        code = main(args)
    except SystemExit as exit:  # argparse usage errors
        code = int(exit.code or 0)
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
