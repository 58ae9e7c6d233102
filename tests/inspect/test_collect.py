"""Collecting layer facts on small hand-made modules: rows, shapes, parameters, MACs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from cnnzoo import LayerTable, list_models, summary
from cnnzoo.inspect.collect import build_meta, meta_copy
from cnnzoo.inspect.shapes import shape_only


class Residual(nn.Module):
    """conv-bn-relu-conv-bn plus a (projection) shortcut, the torchvision BasicBlock's shape."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = (
            nn.Conv2d(cin, cout, 1, stride, bias=False) if stride != 1 or cin != cout else None
        )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + (x if self.shortcut is None else self.shortcut(x))  # a residual join
        return F.relu(out)


class Branches(nn.Module):
    """An Inception-style module: 1x1, 3x3, 5x5 and pool branches joined by torch.cat."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.b1 = nn.Conv2d(cin, 4, 1)
        self.b3 = nn.Conv2d(cin, 6, 3, padding=1)
        self.b5 = nn.Conv2d(cin, 2, 5, padding=2)
        self.pool_proj = nn.Conv2d(cin, 3, 1)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.max_pool2d(x, 3, stride=1, padding=1)
        return torch.cat([self.b1(x), self.b3(x), self.b5(x), self.pool_proj(pooled)], 1)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.block = Residual(8, 16, stride=2)
        self.mix = Branches(16)
        self.fc = nn.Linear(15, 10)

    def forward(self, x: Tensor) -> Tensor:
        x = self.mix(self.block(F.relu(self.stem(x))))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


def _names(table: LayerTable) -> list[str]:
    return [row.name for row in table.rows]


def test_rows_follow_execution_with_functional_joins() -> None:
    table = summary(Net(), (3, 16, 16))
    assert _names(table) == [
        "",
        "stem",
        "block",
        "block.conv1",
        "block.bn1",
        "block.conv2",
        "block.bn2",
        "block.shortcut",  # runs after conv2: execution order, not definition order
        "mix",
        "mix.max_pool2d",  # a functional window op, inside the module that called it
        "mix.b1",
        "mix.b3",
        "mix.b5",
        "mix.pool_proj",
        "mix.cat",  # the join changes the shape: a row
        "adaptive_avg_pool2d",
        "flatten",
        "fc",
    ]  # F.relu and the residual "+" keep the shape: no rows of their own
    row = table.row
    assert row("stem").output_hwc == [8, 8, 8]
    assert row("block").input_hwc == [8, 8, 8] and row("block").output_hwc == [4, 4, 16]
    assert row("mix.cat").output_hwc == [4, 4, 15] and row("mix.cat").type == "torch.cat"
    assert row("mix.max_pool2d").type == "F.max_pool2d"
    assert row("mix.max_pool2d").kernel == [3, 3] and row("mix.max_pool2d").padding == [1, 1]
    assert row("adaptive_avg_pool2d").output_hwc == [1, 1, 15]
    assert row("flatten").output_hwc == [15] and row("flatten").type == "Tensor.flatten"
    assert row("fc").output_hwc == [10]
    assert [r.depth for r in table.rows[:4]] == [0, 1, 1, 2]
    assert row("mix.cat").depth == 2 and row("mix.cat").kind == "function"


def test_macs_and_params_per_row_and_containers_carry_their_subtree() -> None:
    table = summary(Net(), (3, 16, 16))
    row = table.row
    # conv MACs: output positions x out channels x in channels x kernel area, no bias
    assert row("stem").macs == 8 * 8 * 8 * 3 * 9
    assert row("block.conv1").macs == 4 * 4 * 16 * 8 * 9
    assert row("block.shortcut").macs == 4 * 4 * 16 * 8
    assert row("fc").macs == 15 * 10 and row("fc").params == 15 * 10 + 10
    assert row("block.bn1").params == 2 * 16 and row("block.bn1").macs == 0
    for container in ("block", "mix", ""):
        children = [
            r
            for r in table.rows
            if r.name != container
            and r.depth == row(container).depth + 1
            and r.name.startswith(container)
        ]
        assert row(container).macs == sum(c.macs for c in children), container
    assert row("block").params == sum(p.numel() for p in Net().block.parameters())
    assert table.total_macs == row("").macs
    assert table.total_params == sum(p.numel() for p in Net().parameters())
    depth_one = sum(r.macs for r in table.rows if r.depth == 1)
    assert table.total_flops == 2 * table.total_macs == 2 * depth_one


def test_batch_size_scales_macs_and_activations_not_params() -> None:
    one = summary(Net(), (3, 16, 16))
    four = summary(Net(), (3, 16, 16), batch_size=4)
    assert four.total_macs == 4 * one.total_macs
    assert four.activation_bytes == 4 * one.activation_bytes
    assert four.total_params == one.total_params
    assert four.input_bytes == 4 * 3 * 16 * 16 * 4


def test_a_module_applied_twice_gives_two_rows_and_shared_weights_count_once() -> None:
    class Twice(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(4, 4, 3, padding=1)
            self.tied = nn.Linear(4, 4)
            self.head = nn.Linear(4, 4)
            self.head.weight = self.tied.weight  # shared weights

        def forward(self, x: Tensor) -> Tensor:
            x = self.conv(self.conv(x)).mean((2, 3))
            return self.head(self.tied(x))

    table = summary(Twice(), (4, 8, 8))
    convs = [r for r in table.rows if r.name == "conv"]
    assert [r.call_index for r in convs] == [0, 1]
    assert convs[1].receptive_field == [5, 5]  # the second call sees the first one's output
    assert all(r.macs == 8 * 8 * 4 * 4 * 9 for r in convs)
    assert table.total_params == 4 * 4 * 9 + 4 + 16 + 4 + 4  # head.weight is tied.weight
    assert table.row("head").params == 20  # its own weight and bias, however shared


def test_grouped_and_dilated_convolutions() -> None:
    model = nn.Sequential(
        nn.Conv2d(8, 16, 3, padding=2, dilation=2, groups=4, bias=False),
        nn.Conv2d(16, 16, 1, groups=16),
    )
    table = summary(model, (8, 10, 10))
    grouped, depthwise = table.row("0"), table.row("1")
    assert grouped.groups == 4 and grouped.dilation == [2, 2]
    assert grouped.output_hwc == [10, 10, 16]
    assert grouped.macs == 10 * 10 * 16 * (8 // 4) * 9 and grouped.params == 16 * 2 * 9
    assert grouped.receptive_field == [5, 5]  # a dilated 3x3 spans 5 pixels
    assert depthwise.macs == 10 * 10 * 16 and depthwise.groups == 16


def test_user_matmul_einsum_and_attention_are_counted() -> None:
    class Mixer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = nn.Parameter(torch.randn(6, 4))

        def forward(self, x: Tensor) -> Tensor:  # x: N, 4, 3, 5
            y = torch.einsum("nchw,dc->ndhw", x, self.weight)  # a 1x1 conv by hand
            tokens = y.flatten(2).transpose(1, 2)  # N, 15, 6
            scores = tokens @ tokens.transpose(1, 2)  # N, 15, 15
            attended = F.scaled_dot_product_attention(tokens, tokens, tokens)
            return scores.sum() + attended.sum()

    table = summary(Mixer(), (4, 3, 5), batch_size=2)
    assert table.row("einsum").macs == 2 * 15 * 6 * 4
    assert table.row("matmul").macs == 2 * 15 * 15 * 6
    # softmax(Q K^T) V: 15 x 15 scores of length-6 dot products, then 15 x 6 sums of 15 terms
    assert table.row("scaled_dot_product_attention").macs == 2 * (15 * 15 * 6 + 15 * 15 * 6)
    assert not table.macs_partial
    assert table.total_macs == sum(r.macs for r in table.rows if r.depth == 1)


def test_arithmetic_without_a_rule_is_listed_and_the_total_marked_partial() -> None:
    class Spectral(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(2, 2, 1)

        def forward(self, x: Tensor) -> Tensor:
            return torch.fft.fft2(self.conv(x)).abs()

    table = summary(Spectral(), (2, 8, 8))
    assert table.macs_partial
    [uncounted] = table.uncounted
    assert uncounted.layer == "fft2" and uncounted.op.startswith("aten._fft_")
    assert table.total_macs == table.row("conv").macs  # what could be counted, flagged
    assert table.row("fft2").uncounted_ops == (uncounted.op,)
    text = table.to_text()
    assert "PARTIAL" in text and f"{uncounted.op} x1 in fft2" in text


def test_lenet5_connection_table_and_rbf_count_what_the_paper_defines() -> None:
    """C3 runs as a dense conv over zero kernels; only the 60 table kernels are arithmetic."""
    table = summary("lenet5")
    assert table.row("c3").macs == 10 * 10 * 60 * 25  # 150,000, not 240,000
    assert table.row("c3").params == 1_516 and table.row("c3").output_hwc == [10, 10, 16]
    assert table.row("output").macs == 84 * 10  # one squared difference per input and class
    assert table.total_macs == 326_520


def test_user_model_is_left_untouched_even_when_tracing_fails() -> None:
    model = Net().train()
    model.fc.weight.requires_grad_(False)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    table = summary(model, (3, 16, 16))
    assert table.trainable_params == table.total_params - model.fc.weight.numel()
    with pytest.raises(ValueError, match="fails in layer 'stem'"):
        summary(model, (4, 16, 16))  # four channels into a three-channel conv
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert model.training and all(m.training for m in model.modules())
    assert all(p.device.type == "cpu" for p in model.parameters())
    assert not model.fc.weight.requires_grad
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN running stats included


def test_meta_copy_keeps_sharing_and_plain_tensor_attributes() -> None:
    class WithMask(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = nn.Linear(3, 3)
            self.b = self.a  # the same module twice
            self.mask = torch.ones(3)  # a plain attribute, not a buffer

        def forward(self, x: Tensor) -> Tensor:
            return self.b(self.a(x) * self.mask)

    original = WithMask()
    copy = meta_copy(original)
    assert copy.a is copy.b and copy.a.weight.is_meta and copy.mask.is_meta
    assert original.mask.device.type == "cpu" and not original.a.weight.is_meta
    table = summary(original, (3,))
    assert [r.name for r in table.rows] == ["", "a", "a"]  # both calls of the shared module
    assert table.total_params == 12


def test_flat_inputs_and_depth_limits() -> None:
    mlp = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Sequential(nn.Linear(30, 5)))
    table = summary(mlp, (20,))
    assert table.row("0").input_hwc == [20] and table.row("2.0").output_hwc == [5]
    assert table.row("0").receptive_field is None  # no spatial axes: undefined
    assert [r.name for r in table.with_depth(1).rows] == ["", "0", "1", "2"]
    assert [r.name for r in summary(mlp, (20,), depth=0).rows] == [""]
    assert len(table.all_rows) == len(summary(mlp, (20,), depth=1).all_rows)

    class TwoHeads(nn.Module):  # functional joins are followed on vectors too
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b = nn.Linear(4, 3), nn.Linear(4, 2)

        def forward(self, x: Tensor) -> Tensor:
            return torch.cat([self.a(x), self.b(x)], 1)

    heads = summary(TwoHeads(), (4,))
    assert [r.name for r in heads.rows] == ["", "a", "b", "cat"]
    assert heads.row("cat").output_hwc == [5] and heads.row("cat").receptive_field is None


def test_registered_names_follow_the_input_channels() -> None:
    grey = summary("resnet18", (1, 64, 64))
    assert grey.row("conv1").params == 64 * 1 * 49
    assert grey.input_size == (1, 64, 64)
    assert summary("lenet5", (32, 32)).input_size == (1, 32, 32)  # (H, W): the model's own C
    assert summary("resnet18", num_classes=10).row("fc").params == 5130


def test_errors_are_one_clear_line() -> None:
    with pytest.raises(ValueError, match=r"alexnet needs an input of at least 63x63"):
        summary("alexnet", (3, 62, 62))
    with pytest.raises(ValueError, match=r"unknown model 'resnet19'; did you mean"):
        summary("resnet19")
    with pytest.raises(ValueError, match="input size must be positive"):
        summary("resnet18", (3, 0, 224))
    with pytest.raises(ValueError, match="give input_size"):
        summary(nn.Conv2d(1, 1, 1))
    with pytest.raises(TypeError, match="registered names only"):
        summary(nn.Conv2d(1, 1, 1), (1, 4, 4), num_classes=3)
    tiny = nn.Sequential(nn.Conv2d(3, 4, 3), nn.MaxPool2d(2), nn.Conv2d(4, 4, 3))
    with pytest.raises(ValueError) as caught:
        summary(tiny, (3, 5, 5))
    message = str(caught.value)
    assert "input 1x3x5x5 fails in layer '2' (Conv2d)" in message and "\n" not in message


def test_unused_modules_are_listed_with_their_parameters() -> None:
    table = summary("googlenet")  # aux heads run only in training
    assert [(n.name, n.type) for n in table.not_run] == [
        ("aux1", "InceptionAux"),
        ("aux2", "InceptionAux"),
    ]
    run = sum(r.params for r in table.rows if r.depth == 1 and r.kind == "module")
    assert run + sum(n.params for n in table.not_run) == table.total_params == 13_004_888
    assert "aux1 (InceptionAux, " in table.to_text()


def test_huge_inputs_cost_no_memory() -> None:
    """ResNet-50 at 8x3x1024x1024 needs ~20 GB of activations for real; the trace none."""
    status = Path("/proc/self/status")
    clear = Path("/proc/self/clear_refs")
    try:
        clear.write_text("5")  # reset the peak-RSS counter (Linux)
    except OSError:
        pytest.skip("cannot reset the peak RSS counter here")

    def peak_kb() -> int:
        line = next(x for x in status.read_text().splitlines() if x.startswith("VmHWM"))
        return int(line.split()[1])

    before = peak_kb()
    table = summary("resnet50", (3, 1024, 1024), batch_size=8)
    growth_mb = (peak_kb() - before) / 1024
    assert table.row("layer4").output_hwc == [32, 32, 2048]
    assert table.activation_bytes > 20e9  # what a real forward pass would hold
    assert growth_mb < 200, f"peak RSS grew {growth_mb:.0f} MB"
    assert table.total_macs == 8 * summary("resnet50", (3, 1024, 1024)).total_macs


@pytest.mark.parametrize(
    ("op", "args"),
    [
        (torch.ops.aten.add.Tensor, ((2, 3, 4, 4), (1, 3, 1, 1))),
        (torch.ops.aten.mul.Tensor, ((2, 3, 4, 4), 2.0)),
        (torch.ops.aten.relu_.default, ((2, 3, 4, 4),)),
        (torch.ops.aten.tanh.default, ((5,),)),
        (torch.ops.aten.mm.default, ((3, 4), (4, 5))),
        (torch.ops.aten.addmm.default, ((5,), (3, 4), (4, 5))),
        (torch.ops.aten.bmm.default, ((2, 3, 4), (2, 4, 5))),
        (torch.ops.aten.mean.dim, ((2, 3, 4, 4), [2, 3], True)),
        (torch.ops.aten.sum.dim_IntList, ((2, 3, 4, 4), [1])),
        (torch.ops.aten.amax.default, ((2, 3, 4, 4), [-1])),
        (torch.ops.aten.cat.default, ([(2, 3, 4, 4), (2, 5, 4, 4)], 1)),
        (
            torch.ops.aten.native_batch_norm.default,
            ((2, 3, 4, 4), (3,), (3,), (3,), (3,), False, 0.1, 1e-5),
        ),
    ],
)
def test_shape_only_ops_match_torch_meta_kernels(op: object, args: tuple[object, ...]) -> None:
    """The hand-computed outputs (which spare a torch._dynamo import) equal torch's own."""

    def materialise(value: object) -> object:
        if isinstance(value, tuple) and all(isinstance(v, int) for v in value):
            return torch.empty(value, device="meta")
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            return [materialise(v) for v in value]
        return value

    real_args = tuple(materialise(a) for a in args)
    ours = shape_only(op, real_args, {})
    assert ours is not None
    theirs = op(*real_args)  # type: ignore[operator]
    ours_list = list(ours) if isinstance(ours, tuple) else [ours]
    theirs_list = list(theirs) if isinstance(theirs, tuple) else [theirs]
    assert [(t.shape, t.dtype) for t in ours_list] == [(t.shape, t.dtype) for t in theirs_list]


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(1, 12),
    kernel=st.integers(1, 4),
    stride=st.integers(1, 3),
    padding=st.integers(0, 2),
    dilation=st.integers(1, 2),
    groups=st.sampled_from([1, 2]),
    transposed=st.booleans(),
    ceil_mode=st.booleans(),
)
def test_shape_only_windows_match_torch(
    size: int,
    kernel: int,
    stride: int,
    padding: int,
    dilation: int,
    groups: int,
    transposed: bool,
    ceil_mode: bool,
) -> None:
    """Convolutions (plain, grouped, dilated, transposed) and pools: same shape, or both fail."""
    x = torch.empty(2, 4, size, size + 1, device="meta")
    weight_shape = (
        (4, 6 // groups, kernel, kernel) if transposed else (6, 4 // groups, kernel, kernel)
    )
    weight = torch.empty(weight_shape, device="meta")
    output_padding = [min(stride, dilation) - 1] * 2 if transposed else [0, 0]
    cases = [
        (
            torch.ops.aten.convolution.default,
            (
                x,
                weight,
                None,
                [stride] * 2,
                [padding] * 2,
                [dilation] * 2,
                transposed,
                output_padding,
                groups,
            ),
        ),
        (
            torch.ops.aten.max_pool2d_with_indices.default,
            (x, [kernel] * 2, [stride] * 2, [padding] * 2, [dilation] * 2, ceil_mode),
        ),
        (
            torch.ops.aten.avg_pool2d.default,
            (x, [kernel] * 2, [stride] * 2, [padding] * 2, ceil_mode),
        ),
        (torch.ops.aten._adaptive_avg_pool2d.default, (x, [kernel, stride])),
    ]
    for op, args in cases:
        ours = _shapes_or_error(shape_only, op, args, {})
        assert ours == _shapes_or_error(op, *args), op


def _shapes_or_error(run: Callable[..., Any], *args: Any) -> list[torch.Size] | None:
    """Output shapes, or None if it raises or is empty (torch allows some empty outputs)."""
    try:
        value = run(*args)
    except RuntimeError:
        return None
    shapes = [t.shape for t in (value if isinstance(value, tuple) else (value,))]
    return None if shapes[0].numel() == 0 else shapes


def test_shape_only_ops_raise_like_torch() -> None:
    a, b = torch.empty(3, 4, device="meta"), torch.empty(5, 6, device="meta")
    with pytest.raises(RuntimeError, match=r"cannot be multiplied \(3x4 and 5x6\)"):
        shape_only(torch.ops.aten.mm.default, (a, b), {})
    with pytest.raises(RuntimeError):
        shape_only(torch.ops.aten.add.Tensor, (a, b), {})
    with pytest.raises(RuntimeError, match="Sizes of tensors must match"):
        shape_only(torch.ops.aten.cat.default, ([a, b], 1), {})
    with pytest.raises(RuntimeError, match="doesn't match the broadcast shape"):
        shape_only(torch.ops.aten.add_.Tensor, (torch.empty(1, 4, device="meta"), a), {})
    bool_out = shape_only(torch.ops.aten.eq.Tensor, (a, a), {})
    assert bool_out is None  # not same-dtype: left to torch


def test_building_by_name_skips_initialisation_and_stays_on_meta() -> None:
    model = build_meta("vgg16")
    assert all(p.is_meta for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 138_357_544
    assert all(p.requires_grad for p in model.parameters())  # requires_grad_ is never skipped


@pytest.mark.slow
def test_first_call_does_not_import_torch_dynamo() -> None:
    """Meta kernels written in Python import torch._dynamo (seconds) or sympy (most of a second)
    on first use; the trace computes the outputs of every op the zoo's models need itself."""
    code = textwrap.dedent(
        """
        import sys, cnnzoo
        for name in cnnzoo.list_models():
            if name != "resnet1202":
                cnnzoo.summary(name)
        print("torch._dynamo" in sys.modules, "sympy" in sys.modules)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False False"


@pytest.mark.parametrize("name", list_models())
def test_every_module_row_sits_under_its_parents_row(name: str) -> None:
    # A model that calls a slice of a container (``self.classifier[:-1](x)``) runs its children
    # without the container: the table would show them one level too high, without their parent.
    rows = summary(name).all_rows
    names = {row.name for row in rows}
    orphans = [
        row.name
        for row in rows
        if row.kind == "module" and row.name and row.name.rpartition(".")[0] not in names
    ]
    assert orphans == []
