"""LeNet family: the paper's LeNet-5 layer by layer, its modern reading, the textbook net.

Facts from LeCun et al. (1998), Proc. IEEE, sec. II-B and Table I, as transcribed in
tests/data/published_numbers.md (60,000 params, C3 1,516, 340,908 connections).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from _helpers import count_params
from cnnzoo.models.lenet import (
    C3_TABLE,
    ConnectionTableConv2d,
    EuclideanRBF,
    LeNet5,
    LeNet5Modern,
    LeNetBook,
    ScaledTanh,
    Subsampling,
    _paley_hadamard,
    rbf_centres,
)
from cnnzoo.registry import create_model, model_info


def _output_shapes(model: nn.Module, x: Tensor, names: list[str]) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(model.named_modules())
    handles = [
        modules[name].register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name in names
    ]
    model(x)
    for handle in handles:
        handle.remove()
    return shapes


# ---------------------------------------------------------------------------------------------
# C3: the partial connection table

# Table I as printed in the paper: rows are S2 maps 0-5, columns C3 maps 0-15, X = connected.
PAPER_TABLE_I = (
    "X...XXX..XXXX.XX",
    "XX...XXX..XXXX.X",
    "XXX...XXX..X.XXX",
    ".XXX..XXXX..X.XX",
    "..XXX..XXXX.XX.X",
    "...XXX..XXXX.XXX",
)


def test_c3_table_is_papers_table_i() -> None:
    from_paper = [
        {s2 for s2, row in enumerate(PAPER_TABLE_I) if row[c3] == "X"} for c3 in range(16)
    ]
    assert [set(inputs) for inputs in C3_TABLE] == from_paper
    assert sum(len(inputs) for inputs in C3_TABLE) == 60


def test_c3_has_1516_params_one_kernel_per_connection() -> None:
    model = LeNet5()
    assert count_params(model.c3) == 1_516  # paper: 60 x 25 weights + 16 biases
    assert model.c3.weight.shape == (60, 5, 5)
    dense = model.c3.dense_weight()
    for j in range(16):
        for i in range(6):
            assert bool(dense[j, i].eq(0).all()) == (i not in C3_TABLE[j]), (j, i)


def test_c3_map_sees_only_its_listed_s2_maps() -> None:
    torch.manual_seed(0)
    c3 = ConnectionTableConv2d(6, C3_TABLE, kernel_size=5)
    x = torch.randn(2, 6, 14, 14)
    base = c3(x)
    for i in range(6):
        perturbed = x.clone()
        perturbed[:, i] += torch.randn(2, 14, 14)
        out = c3(perturbed)
        for j, inputs in enumerate(C3_TABLE):
            unchanged = torch.equal(out[:, j], base[:, j])
            assert unchanged == (i not in inputs), f"C3 map {j}, S2 map {i}"


def test_c3_gradients_reach_only_existing_connections() -> None:
    c3 = ConnectionTableConv2d(6, C3_TABLE, kernel_size=5)
    c3(torch.randn(1, 6, 14, 14)).square().sum().backward()
    assert c3.weight.grad is not None
    assert bool(c3.weight.grad.flatten(1).abs().sum(1).gt(0).all())  # every connection learns
    assert [name for name, _ in c3.named_parameters()] == ["weight", "bias"]  # nothing else


def test_c3_equals_separate_convolutions_per_map() -> None:
    # Independent reference: output map j is the conv of the stacked maps C3_TABLE[j] only.
    torch.manual_seed(1)
    c3 = ConnectionTableConv2d(6, C3_TABLE, kernel_size=5)
    x = torch.randn(2, 6, 14, 14)
    start = 0
    reference = []
    for j, inputs in enumerate(C3_TABLE):
        kernel = c3.weight[start : start + len(inputs)].unsqueeze(0)
        start += len(inputs)
        reference.append(F.conv2d(x[:, list(inputs)], kernel, c3.bias[j : j + 1]))
    torch.testing.assert_close(c3(x), torch.cat(reference, dim=1))


def test_connection_table_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="distinct"):
        ConnectionTableConv2d(6, [(0, 0, 1)], kernel_size=5)
    with pytest.raises(ValueError, match="outside"):
        ConnectionTableConv2d(6, [(0, 6)], kernel_size=5)


# ---------------------------------------------------------------------------------------------
# S2/S4, the squash, the RBF output


def test_subsampling_is_sum_times_coefficient_plus_bias() -> None:
    s = Subsampling(2)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([0.5, -2.0]))
        s.bias.copy_(torch.tensor([1.0, 0.5]))
    x = torch.stack([torch.arange(1.0, 17.0).view(4, 4), torch.ones(4, 4)]).unsqueeze(0)
    # channel 0 block sums: 1+2+5+6 = 14, 3+4+7+8 = 22, 9+10+13+14 = 46, 11+12+15+16 = 54
    expected = torch.tensor(
        [[[0.5 * 14 + 1, 0.5 * 22 + 1], [0.5 * 46 + 1, 0.5 * 54 + 1]], [[-7.5, -7.5], [-7.5, -7.5]]]
    )
    torch.testing.assert_close(s(x), expected.unsqueeze(0))
    assert s(torch.ones(1, 2, 5, 5)).shape == (1, 2, 2, 2)  # odd sizes floor, like pooling


def test_squash_values() -> None:
    f = ScaledTanh()
    a = torch.tensor([0.0, 1.0, -1.0, 50.0, -50.0], dtype=torch.float64, requires_grad=True)
    y = f(a)
    # A = 1.7159, S = 2/3 (sec. II-B): f(+-1) = +-1, asymptotes +-A.
    torch.testing.assert_close(
        y.detach(),
        torch.tensor([0.0, 1.0, -1.0, 1.7159, -1.7159], dtype=torch.float64),
        atol=1e-4,
        rtol=0,
    )
    # The same function as A tanh(S a), value and slope, wherever the squash operates.
    grid64 = torch.linspace(-20.0, 20.0, 4001, dtype=torch.float64, requires_grad=True)
    (f_slope,) = torch.autograd.grad(f(grid64).sum(), grid64)
    reference = 1.7159 * torch.tanh(2 / 3 * grid64)
    (ref_slope,) = torch.autograd.grad(reference.sum(), grid64)
    torch.testing.assert_close(f(grid64), reference, atol=1e-12, rtol=0)
    torch.testing.assert_close(f_slope, ref_slope, atol=1e-12, rtol=0)
    grid32 = grid64.detach().float()
    torch.testing.assert_close(f(grid32), 1.7159 * torch.tanh(2 / 3 * grid32), atol=1e-6, rtol=0)
    (slope,) = torch.autograd.grad(y[0], a)
    assert slope[0].item() == pytest.approx(1.7159 * 2 / 3)  # gain near 0 close to 1
    # Appendix A: the second derivative is largest in magnitude near a = 1.
    grid = torch.linspace(0.0, 3.0, 3001, dtype=torch.float64, requires_grad=True)
    (first,) = torch.autograd.grad(f(grid).sum(), grid, create_graph=True)
    (second,) = torch.autograd.grad(first.sum(), grid)
    assert grid[second.abs().argmax()].item() == pytest.approx(1.0, abs=0.02)


def test_rbf_logits_are_negative_squared_distances() -> None:
    rbf = EuclideanRBF(3, 2)
    with torch.no_grad():
        rbf.centres.copy_(torch.tensor([[1.0, -1.0, 1.0], [-1.0, -1.0, -1.0]]))
    x = torch.tensor([[0.5, 0.0, -1.0]])
    # (0.5-1)^2 + (0+1)^2 + (-1-1)^2 = 5.25 ; (0.5+1)^2 + (0+1)^2 + (-1+1)^2 = 3.25
    torch.testing.assert_close(rbf(x), torch.tensor([[-5.25, -3.25]]))


def test_rbf_centres_are_fixed_separated_plus_minus_one_codes() -> None:
    model = LeNet5()
    centres = model.output.centres
    assert "output.centres" in model.state_dict()
    assert not any(p is centres for p in model.parameters())
    assert not centres.requires_grad
    assert set(centres.unique().tolist()) == {-1.0, 1.0}
    distances = torch.cdist(centres, centres).square()
    off_diagonal = distances[~torch.eye(10, dtype=torch.bool)]
    torch.testing.assert_close(off_diagonal, torch.full_like(off_diagonal, 168.0))  # 4 x 42
    torch.testing.assert_close(LeNet5().output.centres, centres)  # deterministic


def test_paley_hadamard_and_many_classes() -> None:
    h = torch.tensor(_paley_hadamard(83), dtype=torch.float64)
    torch.testing.assert_close(h @ h.T, 84 * torch.eye(84, dtype=torch.float64))
    codes = torch.tensor(rbf_centres(300))
    assert codes.shape == (300, 84)
    assert len({tuple(row) for row in codes.tolist()}) == 300  # every class its own centre
    with pytest.raises(ValueError):
        _paley_hadamard(89)  # 89 = 1 mod 4


# ---------------------------------------------------------------------------------------------
# LeNet-5 as a whole


def test_lenet5_layer_sizes_and_params_match_the_paper() -> None:
    model = LeNet5()
    names = ["c1", "s2", "c3", "s4", "c5", "f6", "output"]
    shapes = _output_shapes(model, torch.randn(1, 1, 32, 32), names)
    assert shapes == {
        "c1": (6, 28, 28),
        "s2": (6, 14, 14),
        "c3": (16, 10, 10),
        "s4": (16, 5, 5),
        "c5": (120, 1, 1),
        "f6": (84,),
        "output": (10,),
    }
    per_layer = {name: count_params(getattr(model, name)) for name in names}
    assert per_layer == {
        "c1": 156,
        "s2": 12,
        "c3": 1_516,
        "s4": 32,
        "c5": 48_120,
        "f6": 10_164,
        "output": 0,
    }
    assert count_params(model) == 60_000


def test_lenet5_connections_340908_and_macs() -> None:
    """Count connections from the built layers; the paper reports 340,908 (sec. II-B)."""
    model = LeNet5()
    shapes = _output_shapes(model, torch.randn(1, 1, 32, 32), ["c1", "s2", "c3", "s4", "c5"])

    def units(name: str) -> int:
        return int(torch.tensor(shapes[name]).prod())

    c3_maps = shapes["c3"][1] * shapes["c3"][2]
    c3_inputs = sum(25 * len(inputs) for inputs in model.c3.table)
    macs = (
        units("c1") * 25
        + c3_maps * c3_inputs
        + units("c5") * 16 * 25
        + 84 * 120  # F6
        + 84 * 10  # RBF: one squared difference per centre coordinate
    )
    bias_connections = units("c1") + c3_maps * 16 + units("c5") + 84
    subsampling_connections = units("s2") * 5 + units("s4") * 5  # 4 inputs + bias
    assert macs == model_info("lenet5").macs == 326_520
    assert macs + bias_connections + subsampling_connections == 340_908


def test_lenet5_paper_initialisation_bounds() -> None:
    torch.manual_seed(0)
    model = LeNet5()
    bounds = {"c1": 2.4 / 25, "s2": 2.4 / 4, "s4": 2.4 / 4, "c5": 2.4 / 400, "f6": 2.4 / 120}
    for name, bound in bounds.items():
        weight = getattr(model, name).weight.detach().abs()
        assert weight.max() <= bound
        assert weight.max() > 0.5 * bound  # spread over the range, not a narrower one
    start = 0
    for inputs in C3_TABLE:  # per-map fan-in: 75, 100 or 150
        kernels = model.c3.weight.detach()[start : start + len(inputs)].abs()
        start += len(inputs)
        assert kernels.max() <= 2.4 / (25 * len(inputs))
    assert model.c3.weight.detach().abs().max() > 0.8 * 2.4 / 75


def test_lenet5_forward_composes_the_layers() -> None:
    torch.manual_seed(0)
    model = LeNet5().eval()
    x = torch.randn(2, 1, 32, 32)

    def squash(a: Tensor) -> Tensor:
        return 1.7159 * torch.tanh(2 * a / 3)

    sd = model.state_dict()

    def subsample(a: Tensor, prefix: str) -> Tensor:
        summed = F.avg_pool2d(a, 2) * 4
        return summed * sd[f"{prefix}.weight"].view(1, -1, 1, 1) + sd[f"{prefix}.bias"].view(
            1, -1, 1, 1
        )

    h = squash(subsample(squash(F.conv2d(x, sd["c1.weight"], sd["c1.bias"])), "s2"))
    h = squash(subsample(squash(model.c3(h)), "s4"))
    h = squash(F.conv2d(h, sd["c5.weight"], sd["c5.bias"])).flatten(1)
    f6 = squash(F.linear(h, sd["f6.weight"], sd["f6.bias"]))
    logits = -((f6[:, None, :] - sd["output.centres"][None]) ** 2).sum(-1)
    torch.testing.assert_close(model(x), logits)
    torch.testing.assert_close(model.forward_head(model.forward_features(x), pre_logits=True), f6)


def test_lenet5_trains_on_a_separable_batch() -> None:
    torch.manual_seed(0)
    model = LeNet5(num_classes=4)
    # Paper's input range: background -0.1, foreground 1.175; class k is a square in quadrant k.
    x = torch.full((16, 1, 32, 32), -0.1)
    y = torch.arange(16) % 4
    for n, k in enumerate(y.tolist()):
        row, col = divmod(k, 2)
        x[n, 0, 4 + 14 * row : 14 + 14 * row, 4 + 14 * col : 14 + 14 * col] = 1.175
    x += 0.05 * torch.randn_like(x)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    losses = []
    for _ in range(30):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.25 * losses[0]
    assert bool(model(x).argmax(1).eq(y).all())
    torch.testing.assert_close(model.output.centres, LeNet5(num_classes=4).output.centres)


def test_lenet5_reset_classifier_builds_new_centres() -> None:
    model = LeNet5()
    model.reset_classifier(5)
    assert model.num_classes == 5
    assert model.get_classifier() is model.output
    assert model.output.centres.shape == (5, 84)
    assert model(torch.randn(1, 1, 32, 32)).shape == (1, 5)
    assert count_params(model) == 60_000


# ---------------------------------------------------------------------------------------------
# lenet5_modern and lenet_book


@pytest.mark.parametrize("name", ["lenet5", "lenet5_modern", "lenet_book"])
def test_one_pixel_less_fails_inside_a_layer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = create_model(name)
    assert isinstance(model, LeNet5 | LeNet5Modern | LeNetBook)
    h, w = model_info(name).min_size
    assert model(torch.randn(1, 1, h, w)).shape == (1, 10)
    monkeypatch.setattr(model, "check_input", lambda x: None)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, 1, h - 1, w - 1))


@pytest.mark.parametrize("name", ["lenet5_modern", "lenet_book"])
def test_macs_match_flop_counter(name: str) -> None:
    info = model_info(name)
    model = create_model(name)
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *info.input_size))
    assert counter.get_total_flops() == 2 * info.macs  # FLOPs = 2 x MACs for conv and linear


@pytest.mark.parametrize("pool, kind", [("avg", nn.AvgPool2d), ("max", nn.MaxPool2d)])
def test_lenet5_modern_pool_argument(pool: str, kind: type[nn.Module]) -> None:
    torch.manual_seed(0)
    model = create_model("lenet5_modern", pool=pool)
    assert isinstance(model, LeNet5Modern)
    assert isinstance(model.s2, kind) and isinstance(model.s4, kind)
    assert count_params(model) == 61_706
    assert count_params(model.c3) == 6 * 16 * 25 + 16  # full C3
    x = torch.randn(1, 1, 32, 32)
    sd = model.state_dict()
    pool_fn = F.avg_pool2d if pool == "avg" else F.max_pool2d
    h = pool_fn(F.relu(F.conv2d(x, sd["c1.weight"], sd["c1.bias"])), 2)
    h = pool_fn(F.relu(F.conv2d(h, sd["c3.weight"], sd["c3.bias"])), 2)
    h = F.relu(F.conv2d(h, sd["c5.weight"], sd["c5.bias"])).flatten(1)
    h = F.relu(F.linear(h, sd["f6.weight"], sd["f6.bias"]))
    torch.testing.assert_close(model(x), F.linear(h, sd["output.weight"], sd["output.bias"]))
    with pytest.raises(ValueError, match="pool"):
        create_model("lenet5_modern", pool="min")


def test_lenet_book_layer_shapes() -> None:
    model = LeNetBook()
    names = ["conv1", "pool1", "conv2", "pool2", "fc1", "fc2", "fc3"]
    shapes = _output_shapes(model, torch.randn(1, 1, 28, 28), names)
    assert shapes == {
        "conv1": (6, 28, 28),  # 3x3 with padding 1 keeps 28
        "pool1": (6, 14, 14),
        "conv2": (16, 10, 10),
        "pool2": (16, 5, 5),  # 400 features, as in LeNet-5
        "fc1": (120,),
        "fc2": (84,),
        "fc3": (10,),
    }


ACTIVATIONS = {
    None: lambda a: a,
    "relu": F.relu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
}


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_lenet_book_activation(activation: str | None) -> None:
    torch.manual_seed(0)
    model = create_model("lenet_book", activation=activation)
    act = ACTIVATIONS[activation]
    x = torch.randn(2, 1, 28, 28)
    sd = model.state_dict()
    h = F.max_pool2d(act(F.conv2d(x, sd["conv1.weight"], sd["conv1.bias"], padding=1)), 2)
    h = F.max_pool2d(act(F.conv2d(h, sd["conv2.weight"], sd["conv2.bias"])), 2).flatten(1)
    h = act(F.linear(h, sd["fc1.weight"], sd["fc1.bias"]))
    h = act(F.linear(h, sd["fc2.weight"], sd["fc2.bias"]))
    torch.testing.assert_close(model(x), F.linear(h, sd["fc3.weight"], sd["fc3.bias"]))
    # Activations or not, the modules and the state_dict keys stay the same.
    assert list(sd) == list(LeNetBook().state_dict())
    hidden = model.forward_head(model.forward_features(x), pre_logits=True)
    assert bool(hidden.lt(0).any()) == (activation in (None, "tanh"))


def test_lenet_book_rejects_unknown_activation() -> None:
    with pytest.raises(ValueError, match="relu"):
        create_model("lenet_book", activation="gelu")
