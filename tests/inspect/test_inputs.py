"""``summary`` with example inputs (torchinfo's ``input_data`` convention) and odd outputs."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import summary
from cnnzoo.inspect import total_macs


class TwoInputs(nn.Module):
    """An image and a mask, each through its own conv, joined by addition."""

    def __init__(self) -> None:
        super().__init__()
        self.image = nn.Conv2d(3, 4, 3, padding=1)
        self.mask = nn.Conv2d(1, 4, 5, padding=2)

    def forward(self, image: Tensor, mask: Tensor, scale: float = 1.0) -> Tensor:
        return self.image(image) + scale * self.mask(mask)


def test_several_positional_inputs() -> None:
    table = summary(TwoInputs(), input_data=[torch.zeros(2, 3, 8, 8), torch.zeros(2, 1, 8, 8)])
    assert table.batch_size == 2 and table.input_size == (3, 8, 8)
    assert table.row("image").output_hwc == [8, 8, 4]
    assert table.row("mask").input_hwc == [8, 8, 1]
    # 2 images x 8 x 8 positions x 4 filters x (3 x 9 + 1 x 25) weights
    assert table.total_macs == 2 * 64 * 4 * (27 + 25)
    assert table.input_bytes == (2 * 3 * 64 + 2 * 64) * 4
    assert table.row("mask").receptive_field == [5, 5]  # each input starts its own field


def test_dict_input_and_forward_kwargs() -> None:
    data = {"image": torch.zeros(1, 3, 6, 6), "mask": torch.zeros(1, 1, 6, 6)}
    by_dict = summary(TwoInputs(), input_data=data)
    assert by_dict.total_macs == 36 * 4 * 52
    by_kwargs = summary(
        TwoInputs(),
        input_data=[torch.zeros(1, 3, 6, 6)],
        forward_kwargs={"mask": torch.zeros(1, 1, 6, 6), "scale": 0.5},
    )
    assert by_kwargs.total_macs == by_dict.total_macs
    assert [r.name for r in by_kwargs.rows] == [r.name for r in by_dict.rows]


def test_a_single_tensor_is_the_input_and_the_user_tensor_is_untouched() -> None:
    x = torch.randn(3, 3, 224, 224)
    table = summary("resnet18", input_data=x)
    assert table.batch_size == 3
    assert table.total_macs == summary("resnet18", batch_size=3).total_macs
    assert total_macs("resnet18", input_data=x) == table.total_macs
    assert x.device.type == "cpu" and not x.is_meta


class DictOut(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        y = self.conv(x)
        return {"features": y, "pooled": y.mean((2, 3))}


class TupleOut(DictOut):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        y = self.conv(x)
        return y, y.flatten(1)


class NoneOut(DictOut):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> None:  # type: ignore[override]
        self.seen.append(self.conv(x))


@pytest.mark.parametrize("model", [DictOut(), TupleOut(), NoneOut()])
def test_outputs_that_are_dicts_tuples_or_none(model: nn.Module) -> None:
    table = summary(model, input_data=torch.zeros(1, 1, 5, 5))
    assert table.row("conv").output_hwc == [3, 3, 2]
    assert table.total_macs == 9 * 2 * 9
    text = table.to_text()
    assert "conv" in text
    if isinstance(model, NoneOut):
        assert table.rows[0].output_hwc is None


def test_bad_example_inputs_are_one_line_errors() -> None:
    with pytest.raises(ValueError, match="not both"):
        summary(TwoInputs(), (3, 8, 8), input_data=torch.zeros(1, 3, 8, 8))
    with pytest.raises(TypeError, match="input_data must be a tensor"):
        summary(TwoInputs(), input_data=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="holds no tensor"):
        summary(TwoInputs(), input_data=[1, 2])
