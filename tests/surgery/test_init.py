"""init_weights (cnnzoo.surgery.init): schemes, their statistics, the paper scheme."""

from __future__ import annotations

import math
import re

import pytest
import torch
from torch import nn

from _helpers import randomise_batch_norms
from cnnzoo import (
    create_model,
    fuse_bn,
    init_weights,
)

# --- init_weights ------------------------------------------------------------------------------


def _big_net() -> nn.Sequential:
    # conv weight: 512 x 256 x 3 x 3 = 1.18M samples, fan_in 2304, fan_out 4608; the sample std
    # is within 1e-3 relative of the true one, so a 1% check fails for any wrong formula.
    return nn.Sequential(
        nn.Conv2d(256, 512, 3), nn.BatchNorm2d(512), nn.ReLU(), nn.Linear(2048, 1024)
    )


FAN_IN, FAN_OUT = 256 * 9, 512 * 9


@pytest.mark.parametrize(
    ("scheme", "expected_std"),
    [
        ("kaiming_normal", math.sqrt(2 / FAN_IN)),  # He et al. 2015, eq. 10
        ("kaiming_uniform", math.sqrt(2 / FAN_IN)),
        ("xavier_normal", math.sqrt(2 / (FAN_IN + FAN_OUT))),  # Glorot & Bengio 2010, eq. 16
        ("xavier_uniform", math.sqrt(2 / (FAN_IN + FAN_OUT))),
        ("normal", 0.01),
        ("normal(0.02)", 0.02),
        ("normal(std=0.05)", 0.05),
    ],
)
def test_init_scheme_statistics(scheme: str, expected_std: float) -> None:
    net = _big_net()
    bn = net[1]
    randomise_batch_norms(net)
    with torch.no_grad():
        net[0].bias.fill_(3.0)
    assert init_weights(net, scheme) == []
    weight = net[0].weight
    assert weight.std().item() == pytest.approx(expected_std, rel=0.01)
    assert abs(weight.mean().item()) < 0.01 * expected_std
    if "uniform" in scheme:
        bound = math.sqrt(3) * expected_std
        assert weight.abs().max().item() <= bound
        assert weight.abs().max().item() > 0.99 * bound
    else:  # a normal distribution's kurtosis is 3, a uniform one's 1.8
        kurtosis = ((weight / weight.std()) ** 4).mean().item()
        assert kurtosis == pytest.approx(3.0, abs=0.05)
    assert torch.equal(net[0].bias, torch.zeros(512))
    assert torch.equal(bn.weight, torch.ones(512)) and torch.equal(bn.bias, torch.zeros(512))
    assert torch.equal(bn.running_mean, torch.zeros(512))
    assert torch.equal(bn.running_var, torch.ones(512))


def test_kaiming_fan_out_mode_and_the_linear_layer() -> None:
    net = _big_net()
    init_weights(net, "kaiming_normal", mode="fan_out")
    assert net[0].weight.std().item() == pytest.approx(math.sqrt(2 / FAN_OUT), rel=0.01)
    init_weights(net, "kaiming_normal")
    assert net[3].weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.01)


def test_orthogonal_rows_are_orthonormal() -> None:
    net = _big_net()
    init_weights(net, "orthogonal", gain=2.0)
    rows = net[0].weight.flatten(1)  # 512 x 2304: rows orthogonal, each of norm `gain`
    assert torch.allclose(rows @ rows.T, 4.0 * torch.eye(512), atol=1e-4)


def test_custom_layers_keep_their_own_init_and_are_reported() -> None:
    model = create_model("lenet5")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert init_weights(model, "xavier_uniform") == ["s2", "c3", "s4"]
    after = model.state_dict()
    assert all(
        not torch.equal(before[k], after[k]) for k in ("c1.weight", "s2.weight", "c3.weight")
    )
    assert torch.equal(after["c1.bias"], torch.zeros(6))


def test_paper_scheme_restores_the_builders_initialisation_exactly() -> None:
    torch.manual_seed(7)
    reference = create_model("resnet20", num_classes=5).state_dict()
    torch.manual_seed(1)
    model = create_model("resnet20", num_classes=5)
    init_weights(model, "normal(0.5)")
    torch.manual_seed(7)
    assert init_weights(model, "paper") == []
    for key, value in model.state_dict().items():
        assert torch.equal(value, reference[key]), key


def test_paper_scheme_refuses_a_changed_model() -> None:
    with pytest.raises(ValueError, match="has other layers than this model"):
        init_weights(fuse_bn(create_model("resnet20")), "paper")
    with pytest.raises(ValueError, match=r"not built by cnnzoo\.create_model"):
        init_weights(_big_net(), "paper")


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        ("he_normal", "unknown init scheme 'he_normal'"),
        ("kaiming_normal(2)", "takes no argument"),
        ("normal(wide)", "cannot read the std"),
        ("normal(-1)", "std must be positive"),
    ],
)
def test_bad_init_schemes(scheme: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        init_weights(_big_net(), scheme)
