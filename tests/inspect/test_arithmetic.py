"""Conv arithmetic: the formula, PyTorch's rounding, strict mode, check_geometry."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

import cnnzoo
from cnnzoo.inspect import (
    GeometryError,
    check_geometry,
    conv_output_size,
    explain_conv_arithmetic,
    pool_output_size,
)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((227, 11, 4, 0), 55),  # AlexNet conv1 as the paper means it (sec. 3.5: 227 input)
        ((224, 11, 4, 2), 55),  # torchvision's AlexNet conv1
        ((224, 7, 2, 3), 112),  # ResNet conv1
        ((32, 5, 1, 0), 28),  # LeNet-5 C1
        ((10, 3, 2, 0), 4),  # the issue's example: 4.5 floored
        ((9, 3, 1, 0, 2), 5),  # dilation 2: effective kernel 5
    ],
)
def test_conv_output_size_examples(args: tuple[int, ...], expected: int) -> None:
    assert conv_output_size(*args) == expected


def test_per_axis_arguments_give_tuples() -> None:
    assert conv_output_size((224, 112), 7, stride=2, padding=3) == (112, 56)
    assert conv_output_size((10, 10), (1, 7), padding=(0, 3)) == (10, 10)  # Inception's 1x7
    with pytest.raises(ValueError, match="same length"):
        conv_output_size((10, 10), (3, 3, 3))


def test_ceil_mode_and_pooling_rules() -> None:
    assert pool_output_size(112, 3, stride=2, ceil_mode=True) == 56  # GoogLeNet maxpool1
    assert pool_output_size(112, 3, stride=2) == 55
    assert pool_output_size(4, 2) == 2  # stride defaults to the kernel
    # 3.5 rounds up to 4 only if the 4th window starts inside input + left padding: it would
    # start at 6 >= 5 + 1, so PyTorch drops it.
    assert pool_output_size(5, 2, stride=2, padding=1, ceil_mode=True) == 3
    with pytest.raises(GeometryError, match="more than half the pooling kernel"):
        pool_output_size(10, 3, padding=2)


def test_strict_mode_shows_the_arithmetic_and_the_fixes() -> None:
    with pytest.raises(GeometryError) as caught:
        conv_output_size(10, 3, stride=2, strict=True)
    message = str(caught.value)
    assert "(10 - 3 + 2*0) / 2 + 1 = 4.5" in message
    assert "floor it to 4" in message and "no padding makes it exact" in message
    assert "9 or 11" in message
    with pytest.raises(GeometryError, match=r"paddings that make it exact: 1") as caught:
        conv_output_size(10, 3, stride=3, strict=True)  # (10 - 3)/3 + 1 = 3.33; P=1 gives 4
    arithmetic = caught.value.arithmetic
    assert arithmetic is not None and arithmetic.exact == Fraction(10, 3)
    assert conv_output_size(227, 11, stride=4, strict=True) == 55


def test_empty_outputs_raise() -> None:
    with pytest.raises(GeometryError, match="larger than the padded input"):
        conv_output_size(2, 5)
    # ceil_mode pooling can still produce one window hanging over the edge, as PyTorch does
    assert pool_output_size(1, 4, stride=5, ceil_mode=True) == 1


def test_nonsense_arguments_raise() -> None:
    with pytest.raises(ValueError, match="stride must be an integer >= 1"):
        conv_output_size(10, 3, stride=0)
    with pytest.raises(ValueError, match="padding must be an integer >= 0"):
        conv_output_size(10, 3, padding=-1)


@settings(max_examples=300, deadline=None)
@given(
    size=st.integers(1, 40),
    kernel=st.integers(1, 7),
    stride=st.integers(1, 5),
    padding=st.integers(0, 4),
    dilation=st.integers(1, 3),
    ceil_mode=st.booleans(),
)
def test_agrees_with_pytorch(
    size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool
) -> None:
    """Whatever PyTorch computes (or refuses), the formula says the same."""
    x = torch.empty(1, 1, size)

    def torch_size(run: object) -> int | None:
        try:
            out = run()  # type: ignore[operator]
        except RuntimeError:
            return None
        return int(out.shape[-1]) or None

    def ours(run: object) -> int | None:
        try:
            return run()  # type: ignore[operator, no-any-return]
        except GeometryError:
            return None

    weight = torch.empty(1, 1, kernel)
    assert ours(lambda: conv_output_size(size, kernel, stride, padding, dilation)) == torch_size(
        lambda: F.conv1d(x, weight, None, stride, padding, dilation)
    )
    assert ours(
        lambda: pool_output_size(size, kernel, stride, padding, dilation, ceil_mode=ceil_mode)
    ) == torch_size(lambda: F.max_pool1d(x, kernel, stride, padding, dilation, ceil_mode))
    assert ours(
        lambda: pool_output_size(size, kernel, stride, padding, ceil_mode=ceil_mode)
    ) == torch_size(lambda: F.avg_pool1d(x, kernel, stride, padding, ceil_mode))


def test_explanation_for_the_cli_example() -> None:
    text = explain_conv_arithmetic(10, 3, stride=2).to_text()
    assert "= (10 - 3 + 2*0) / 2 + 1 = 4.5" in text
    assert "floors it (nn.Conv2d, pooling with ceil_mode=False) to 4" in text
    assert "the last 1 row/column of the input is never read" in text
    assert "ceil_mode=True rounds up to 5" in text
    assert "paddings that fit exactly: none" in text
    assert "9 (-> 4), 11 (-> 5)" in text


def test_explanation_distinguishes_padding_gaps_and_data() -> None:
    resnet_stem = explain_conv_arithmetic(224, 7, stride=2, padding=3)
    assert (resnet_stem.dropped, resnet_stem.dropped_data) == (1, 0)  # only padding is skipped
    assert "padding only, no data lost" in resnet_stem.to_text()
    shortcut = explain_conv_arithmetic(56, 1, stride=2)  # ResNet's 1x1 stride-2 projection
    assert (shortcut.tail, shortcut.gap, shortcut.dropped) == (1, 1, 0)
    assert "nothing extra is lost" in shortcut.to_text()
    exact = explain_conv_arithmetic(227, 11, stride=4)
    assert exact.is_exact and "an integer: output 55" in exact.to_text()
    assert exact.paddings == (0, 2, 4)  # up to half the kernel: P even keeps 216 + 2P divisible


def test_check_geometry_finds_the_227_versus_224_trap() -> None:
    """The original AlexNet needs 227: at 224 every stride drops a row and a column."""
    issues = check_geometry("alexnet_original", (3, 224, 224))
    truncations = [i for i in issues if i.kind == "truncation"]
    assert [i.name for i in truncations] == [
        "features.conv1",
        "features.pool1",
        "features.pool2",
        "features.pool5",
    ]
    conv1 = truncations[0]
    assert conv1.exact == (Fraction(217, 4), Fraction(217, 4))  # (224 - 11) / 4 + 1 = 54.25
    assert conv1.output == (54, 54) and conv1.dropped == (1, 1)
    assert "227" in conv1.message
    failure = issues[-1]
    assert failure.kind == "failure" and failure.name == "classifier.fc6"
    assert "1x6400 and 9216x4096" in failure.message  # 256x5x5 instead of 256x6x6
    assert check_geometry("alexnet_original") == []  # at its own 227


def test_check_geometry_ignores_padding_unless_asked() -> None:
    assert check_geometry("resnet18") == []
    with_padding = check_geometry("resnet18", include_padding=True)
    assert with_padding[0].name == "conv1" and with_padding[0].dropped == (1, 1)


def test_check_geometry_on_a_user_module_and_asymmetric_sizes() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.ReLU())
    issues = check_geometry(model, (3, 10, 9))
    assert len(issues) == 1
    assert issues[0].dropped == (1, 0) and "the last 1 row of its 10x9 input" in issues[0].message
    assert issues[0].exact == (Fraction(9, 2), Fraction(4))


# torchvision's SqueezeNets run at 224, where their unpadded 7x7/2 (1.0) or 3x3/2 (1.1) conv1
# never reads the last row and column; the paper's Table 1 sizes (111x111 after conv1) are 227's.
KNOWN_TRUNCATION = {"squeezenet1_0": "features.0", "squeezenet1_1": "features.0"}


@pytest.mark.parametrize("name", cnnzoo.list_models())
def test_no_registered_model_drops_input_at_its_default_size(name: str) -> None:
    issues = check_geometry(name)
    if name in KNOWN_TRUNCATION:
        assert [(i.name, i.dropped) for i in issues] == [(KNOWN_TRUNCATION[name], (1, 1))]
        assert check_geometry(name, (3, 227, 227)) == []
        return
    assert issues == []
