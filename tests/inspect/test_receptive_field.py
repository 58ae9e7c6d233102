"""Receptive fields: computed by hand on small nets, and against a gradient probe.

The probe: give every weight a positive value, make every max pool an average pool, feed ones,
and back-propagate from one centre unit of a layer's output. The input pixels with a non-zero
gradient are exactly those the unit sees (clipped to the image), so their extent must match the
table's receptive field, jump and start, whatever the branches and joins in between.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from cnnzoo import create_model, summary
from cnnzoo.inspect import LayerRow
from cnnzoo.inspect.collect import build_meta


def conv(
    cin: int, cout: int, k: int, stride: int = 1, padding: int = 0, dilation: int = 1
) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, k, stride, padding, dilation)


def _rf(
    table_rows: Sequence[LayerRow],
) -> list[tuple[list[int | float] | None, list[int | float] | None]]:
    return [(row.receptive_field, row.jump) for row in table_rows]


# ---- hand-computed cases ------------------------------------------------------------------------


def test_three_stacked_3x3_convs_see_3_5_7() -> None:
    model = nn.Sequential(
        conv(1, 1, 3, padding=1), conv(1, 1, 3, padding=1), conv(1, 1, 3, padding=1)
    )
    table = summary(model, (1, 16, 16))
    assert _rf(table.rows[1:]) == [([3, 3], [1, 1]), ([5, 5], [1, 1]), ([7, 7], [1, 1])]
    assert [row.rf_start for row in table.rows[1:]] == [[0, 0]] * 3  # "same" padding


def test_dilated_convs_grow_by_their_span() -> None:
    model = nn.Sequential(
        conv(1, 1, 3, padding=1),
        conv(1, 1, 3, padding=2, dilation=2),
        conv(1, 1, 3, padding=4, dilation=4),
    )
    table = summary(model, (1, 32, 32))
    # spans 3, 5, 9: 3, then 3 + 4, then 7 + 8 (the WaveNet / DeepLab doubling)
    assert [row.receptive_field for row in table.rows[1:]] == [[3, 3], [7, 7], [15, 15]]


def test_strides_multiply_the_jump() -> None:
    model = nn.Sequential(
        conv(1, 1, 3, stride=2, padding=1),
        conv(1, 1, 3, padding=1),
        conv(1, 1, 3, stride=2, padding=1),
        conv(1, 1, 3, padding=1),
    )
    table = summary(model, (1, 32, 32))
    assert _rf(table.rows[1:]) == [
        ([3, 3], [2, 2]),
        ([7, 7], [2, 2]),  # 3 + 2 * 2
        ([11, 11], [4, 4]),  # 7 + 2 * 2
        ([19, 19], [4, 4]),  # 11 + 2 * 4
    ]


def test_pools_are_windows_too() -> None:
    model = nn.Sequential(
        conv(1, 1, 3, padding=1), nn.MaxPool2d(2), conv(1, 1, 3, padding=1), nn.AvgPool2d(3, 2, 1)
    )
    table = summary(model, (1, 32, 32))
    assert _rf(table.rows[1:]) == [
        ([3, 3], [1, 1]),
        ([4, 4], [2, 2]),
        ([8, 8], [2, 2]),
        ([12, 12], [4, 4]),
    ]
    assert table.rows[2].rf_start == [0.5, 0.5]  # a 2x2 window's centre is between pixels


class Inception(nn.Module):
    """Four branches of different reach joined by torch.cat."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.b1 = conv(c, 2, 1)
        self.b3 = conv(c, 2, 3, padding=1)
        self.b5 = conv(c, 2, 5, padding=2)
        self.proj = conv(c, 2, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.proj(pooled)], 1)


def test_a_concatenation_sees_the_widest_branch() -> None:
    model = nn.Sequential(
        conv(1, 2, 3, stride=2, padding=1), Inception(2), conv(8, 1, 3, padding=1)
    )
    table = summary(model, (1, 32, 32))
    row = table.row
    assert row("0").receptive_field == [3, 3] and row("0").jump == [2, 2]
    assert row("1.b1").receptive_field == [3, 3]
    assert row("1.b3").receptive_field == [7, 7]  # 3 + 2 * 2
    assert row("1.b5").receptive_field == [11, 11]  # 3 + 4 * 2
    assert row("1.max_pool2d").receptive_field == [7, 7]
    assert row("1.cat").receptive_field == [11, 11] and row("1").receptive_field == [11, 11]
    assert row("2").receptive_field == [15, 15]  # 11 + 2 * 2


class Block(nn.Module):
    """A ResNet block with a strided 1x1 projection shortcut."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = conv(c, c, 3, stride=2, padding=1)
        self.conv2 = conv(c, c, 3, padding=1)
        self.downsample = conv(c, c, 1, stride=2)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        return F.relu(out + self.downsample(x))  # the shortcut runs after the main path


def test_a_residual_join_takes_the_max_over_branches_and_strides_count_once() -> None:
    """Tools that walk layers in execution order apply the shortcut's stride on top of the main
    path's: the jump after the block becomes 4 and everything after it grows too fast."""
    model = nn.Sequential(Block(1), conv(1, 1, 3, padding=1))
    table = summary(model, (1, 32, 32))
    row = table.row
    assert _rf([row("0.conv1"), row("0.conv2"), row("0.downsample")]) == [
        ([3, 3], [2, 2]),
        ([7, 7], [2, 2]),
        ([1, 1], [2, 2]),  # the shortcut sees the block's input, one pixel per unit
    ]
    assert _rf([row("0"), row("1")]) == [([7, 7], [2, 2]), ([11, 11], [2, 2])]


def test_global_pooling_and_linear_layers_see_the_whole_span() -> None:
    model = nn.Sequential(
        conv(1, 4, 3, stride=2, padding=1),  # 8x8 map, rf 3, jump 2
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 2),
    )
    table = summary(model, (1, 16, 16))
    span = 3 + (8 - 1) * 2  # the 8 units' windows together
    assert [row.receptive_field for row in table.rows[1:]] == [
        [3, 3],
        [span, span],
        [span, span],
        [span, span],
    ]
    assert table.rows[3].jump is None  # flattened: no grid any more


def test_adaptive_pooling_follows_torchs_windows() -> None:
    # 7 -> 3: torch's windows [0, 3), [2, 5), [4, 7) (start floor(i*7/3), end ceil((i+1)*7/3)):
    # one width, one spacing, so a uniform grid of 3-pixel windows 2 pixels apart.
    row = summary(nn.Sequential(nn.AdaptiveAvgPool2d(3)), (1, 7, 7)).row("0")
    assert (row.receptive_field, row.jump, row.rf_start) == ([3, 3], [2, 2], [1, 1])
    assert not row.rf_uneven and row.kernel is None  # not a fixed window


def test_adaptive_pooling_with_uneven_windows_says_so() -> None:
    # 5 -> 3: windows [0, 2), [1, 4), [3, 5): widths 2, 3, 2. No jump describes that grid.
    table = summary(nn.Sequential(nn.AdaptiveAvgPool2d(3)), (1, 5, 5))
    row = table.row("0")
    assert row.rf_uneven and row.receptive_field == [3, 3]
    assert row.jump is None and row.rf_start is None
    assert row.rf_windows == (((0, 1), (1, 3), (3, 4)),) * 2
    text = table.to_text(columns="layer,rf,jump")
    assert "3x3*" in text and "uneven" in text


def test_vgg16_at_256_sees_436_pixels() -> None:
    """Issue 11: features end 8x8 (rf 212, jump 32); the 8 -> 7 adaptive pool's windows are
    [i, i + 2): uniform, jump 32; the classifier sees all 8 units: 212 + 7 * 32 = 436."""
    table = summary("vgg16", (3, 256, 256))
    assert table.row("avgpool").receptive_field == [244, 244]
    assert table.row("avgpool").jump == [32, 32]
    assert table.rows[0].receptive_field == [436, 436]


def test_local_response_norm_mixes_channels_not_pixels() -> None:
    """Issue 11: alexnet_original's norm1 printed 227x227; it sees what conv1 saw, 11x11."""
    table = summary("alexnet_original")
    assert table.row("features.norm1").receptive_field == [11, 11]
    assert table.row("features.norm1").jump == [4, 4]
    assert table.row("features.pool1").receptive_field == [19, 19]  # 11 + 2 * 4
    model = nn.Sequential(conv(1, 4, 3), nn.LocalResponseNorm(3), conv(4, 1, 3))
    table = summary(model, (1, 16, 16))
    assert [r.receptive_field for r in table.rows[1:]] == [[3, 3], [3, 3], [5, 5]]


def test_cifar_option_a_shortcut_subsamples() -> None:
    table = summary("resnet20")
    shortcut = table.row("layer2.0.downsample")
    assert shortcut.jump == [2, 2] and shortcut.receptive_field == [15, 15]  # x[:, :, ::2, ::2]
    assert table.row("layer2.0").receptive_field == [21, 21]


# ---- the gradient probe ------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _bind_max_pool(
    input: Tensor,
    kernel_size: Any,
    stride: Any = None,
    padding: Any = 0,
    dilation: Any = 1,
    ceil_mode: bool = False,
    return_indices: bool = False,
) -> tuple[Tensor, Any, Any, Any, bool]:
    assert dilation in (1, (1, 1), [1, 1]) and not return_indices
    return input, kernel_size, stride, padding, ceil_mode


class _AveragePools(TorchFunctionMode):
    """Max pooling passes gradient to one input per window; average pooling to all of them."""

    def __torch_function__(
        self, func: Any, types: Any, args: Sequence[Any] = (), kwargs: dict[str, Any] | None = None
    ) -> Any:
        kwargs = kwargs or {}
        name = getattr(func, "__name__", "")
        if name in ("max_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            x, kernel, stride, padding, ceil_mode = _bind_max_pool(*args, **kwargs)
            return F.avg_pool2d(x, kernel, stride, padding, ceil_mode)
        if name in ("adaptive_max_pool2d", "_adaptive_max_pool2d"):
            return F.adaptive_avg_pool2d(
                args[0], args[1] if len(args) > 1 else kwargs["output_size"]
            )
        return func(*args, **kwargs)


def _positive(model: nn.Module) -> nn.Module:
    """Weights 1 / fan-in (activations stay ~1), biases 0, batch norm the identity."""
    with torch.no_grad():
        for module in model.modules():
            for name, parameter in module.named_parameters(recurse=False):
                if name == "weight" and parameter.dim() > 1:
                    parameter.fill_(1.0 / parameter[0].numel())
                elif name == "weight":
                    parameter.fill_(1.0)
                else:
                    parameter.fill_(0.0)
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.reset_running_stats()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval()


def probe(
    model: nn.Module, input_size: Sequence[int], layer: str, call_index: int = 0
) -> tuple[tuple[int, int], tuple[int, int], tuple[int, int]]:
    """(centre unit, rows seen, columns seen) of ``layer``'s output, by back-propagation."""
    captured: list[Tensor] = []
    calls = 0

    def hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        nonlocal calls
        if calls == call_index:
            captured.append(output)
            raise _Stop  # the rest of the network does not matter
        calls += 1

    x = torch.ones(1, *input_size, requires_grad=True)
    handle = model.get_submodule(layer).register_forward_hook(hook)
    try:
        with _AveragePools():
            model(x)
    except _Stop:
        pass
    finally:
        handle.remove()
    (output,) = captured
    unit = (output.shape[-2] // 2, output.shape[-1] // 2)
    output[0, :, unit[0], unit[1]].sum().backward()  # all channels: every branch of a cat
    assert x.grad is not None
    seen = x.grad[0].abs().sum(0) > 0
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    return unit, (int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))


def expected_window(
    row: LayerRow, unit: Sequence[int], size: Sequence[int]
) -> list[tuple[int, int]]:
    """The table's window of output unit ``unit``, clipped to the image."""
    assert row.receptive_field is not None and row.jump is not None and row.rf_start is not None
    window = []
    for axis in range(2):
        centre = row.rf_start[axis] + unit[axis] * row.jump[axis]
        half = (row.receptive_field[axis] - 1) / 2
        low, high = centre - half, centre + half
        assert low == math.floor(low) and high == math.floor(high)
        window.append((max(0, int(low)), min(size[axis] - 1, int(high))))
    return window


def check_against_probe(
    model: nn.Module, input_size: Sequence[int], layers: Sequence[str | tuple[str, int]]
) -> None:
    table = summary(model, input_size)
    model = _positive(model)
    for entry in layers:
        layer, call = (entry, 0) if isinstance(entry, str) else entry
        unit, rows, cols = probe(model, input_size, layer, call)
        row = table.row(layer, call)
        assert [rows, cols] == expected_window(row, unit, input_size[1:]), (layer, row)


def test_probe_on_the_hand_made_nets() -> None:
    strided = nn.Sequential(
        conv(1, 1, 3, stride=2, padding=1), conv(1, 1, 3, padding=1), nn.MaxPool2d(2)
    )
    check_against_probe(strided, (1, 40, 40), ["0", "1", "2"])
    dilated = nn.Sequential(conv(1, 1, 3, padding=1), conv(1, 1, 3, padding=2, dilation=2))
    check_against_probe(dilated, (1, 24, 24), ["0", "1"])
    branches = nn.Sequential(
        conv(1, 2, 3, stride=2, padding=1), Inception(2), conv(8, 1, 3, padding=1)
    )
    check_against_probe(branches, (1, 48, 48), ["1.b5", "1.proj", "1", "2"])
    residual = nn.Sequential(Block(1), Block(1), conv(1, 1, 3, padding=1))
    check_against_probe(residual, (1, 64, 64), ["0.downsample", "0", "1", "2"])


def _cpu_from_meta(name: str) -> nn.Module:
    """A registered model with real (uninitialised) CPU weights, without paying for init."""
    return build_meta(name).to_empty(device="cpu")


@pytest.mark.parametrize(
    ("name", "size", "layers"),
    [
        ("lenet5", (1, 32, 32), ["s2", "c3", "s4", "c5"]),
        ("alexnet", (3, 127, 127), ["features.2", "features.5", "features.12"]),
        ("resnet18", (3, 96, 96), ["maxpool", "layer1", "layer2.0.downsample", "layer2", "layer3"]),
        ("resnet50", (3, 64, 64), ["layer1.0", "layer2.0"]),
        ("resnet20", (3, 32, 32), ["layer1", "layer2.0.downsample", "layer2"]),
        ("googlenet", (3, 96, 96), ["maxpool2", "inception3a", "inception4a"]),
        ("inception_v3", (3, 107, 107), ["maxpool2", "Mixed_5b", "Mixed_6a", "Mixed_6b"]),
    ],
)
def test_probe_on_whole_models_at_small_inputs(
    name: str, size: tuple[int, int, int], layers: list[str]
) -> None:
    model = create_model(name) if name == "lenet5" else _cpu_from_meta(name)
    check_against_probe(model, size, layers)


@pytest.mark.slow
def test_vgg16_last_pool_sees_212_pixels() -> None:
    """VGG-16's fifth pool: 13 3x3 convs and 5 2x2 pools, rf 212, fully inside 224 pixels."""
    table = summary("vgg16")
    assert table.row("features.30").receptive_field == [212, 212]
    features = _cpu_from_meta("vgg16").features  # the convs only: 15M of the 138M parameters
    unit, rows, cols = probe(_positive(features), (3, 224, 224), "30")
    assert unit == (3, 3)
    assert rows[1] - rows[0] + 1 == cols[1] - cols[0] + 1 == 212
    assert [rows, cols] == expected_window(table.row("features.30"), unit, (224, 224))


def test_windows_over_a_non_uniform_grid_against_the_probe() -> None:
    """A 2x2 conv and a residual join after an uneven adaptive pool (5 -> 3: windows of 2, 3
    and 2 units): the table maps every unit's window exactly, and finds the grid uniform again
    when it is. Checked against the gradient probe, unit by unit."""

    class Uneven(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.stem = conv(1, 1, 3, padding=1)
            self.pool = nn.AdaptiveAvgPool2d(3)
            self.mix = conv(1, 1, 2)
            self.side = conv(1, 1, 2)

        def forward(self, x: Tensor) -> Tensor:
            pooled = self.pool(self.stem(x))
            return self.mix(pooled) + self.side(pooled)

    model = _positive(Uneven())
    table = summary(model, (1, 5, 5))

    def probed(layer: str, unit: int) -> list[tuple[int, int]]:
        outputs: list[Tensor] = []
        module = model.get_submodule(layer)
        handle = module.register_forward_hook(lambda m, i, o: outputs.append(o))
        x = torch.ones(1, 1, 5, 5, requires_grad=True)
        model(x)
        handle.remove()
        (grad,) = torch.autograd.grad(outputs[0][0, :, unit, unit].sum(), x)
        seen = grad[0].abs().sum(0) > 0
        rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
        return [(int(rows.min()), int(rows.max())), (int(cols.min()), int(cols.max()))]

    pool = table.row("pool")
    # stem units see [i - 1, i + 1]; pool windows [0, 2), [1, 4), [3, 5) of them, clipped.
    assert pool.rf_uneven and pool.rf_windows == (((0, 2), (0, 4), (2, 4)),) * 2
    for unit in range(3):
        assert probed("pool", unit) == [pool.rf_windows[0][unit], pool.rf_windows[1][unit]]
    # mix unit k reads pool units k, k + 1: [-1, 4] and [0, 5], one width, one step: uniform.
    mix = table.row("mix")
    assert not mix.rf_uneven and (mix.receptive_field, mix.jump) == ([6, 6], [1, 1])
    for unit in range(2):
        assert probed("mix", unit) == expected_window(mix, (unit, unit), (5, 5))
    assert table.rows[0].receptive_field == [6, 6]  # the join of two such branches
