"""fuse_bn and conv_bn_pairs (cnnzoo.surgery.fuse)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import heavy_models, randomise_batch_norms
from cnnzoo import (
    create_model,
    freeze,
    fuse_bn,
    list_models,
    model_info,
)
from cnnzoo.inference import compare_outputs
from cnnzoo.surgery import FrozenBatchNorm2d, conv_bn_pairs

HEAVY = set(heavy_models())


# --- fuse_bn -----------------------------------------------------------------------------------


def _small_input(name: str) -> Tensor:
    info = model_info(name)
    channels, height, width = info.input_size
    if not info.fixed_size:
        height = width = max(64, *info.min_size)
    return torch.randn(2, channels, height, width)


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in list_models()]
)
def test_fused_model_equals_the_original(name: str) -> None:
    with torch.device("meta"):  # building on meta costs no memory and no init
        if not any(isinstance(m, nn.BatchNorm2d) for m in create_model(name).modules()):
            pytest.skip("no batch norm to fold")
    model = create_model(name)
    randomise_batch_norms(model)
    model.eval()
    x = _small_input(name)
    fused = fuse_bn(model)
    assert type(fused) is type(model)
    assert conv_bn_pairs(fused) == []  # nothing left to fold on the eval path
    assert conv_bn_pairs(model) != []  # the original is untouched
    with torch.no_grad():
        check = compare_outputs(fused(x), model(x))
    assert check.rel_error < 1e-5, check


def test_fuse_bn_folds_only_a_batch_norm_right_after_a_conv() -> None:
    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, bias=True)
            self.bn = nn.BatchNorm2d(8)
            self.shared = nn.Conv2d(8, 8, 1)
            self.bn_a = nn.BatchNorm2d(8)
            self.bn_b = nn.BatchNorm2d(8)
            self.bn_after_relu = nn.BatchNorm2d(8)

        def forward(self, x: Tensor) -> Tensor:
            x = self.bn(self.conv(x))
            y = self.shared(x)  # read by two batch norms: cannot fold into either
            x = self.bn_a(y) + self.bn_b(y)
            return self.bn_after_relu(F.relu(x))

    net = Net()
    randomise_batch_norms(net)
    net.eval()
    assert conv_bn_pairs(net) == [("conv", "bn")]
    fused = fuse_bn(net)
    assert isinstance(fused.bn, nn.Identity) and isinstance(fused.bn_a, nn.BatchNorm2d)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert compare_outputs(fused(x), net(x)).rel_error < 1e-5


def test_fuse_bn_folds_frozen_batch_norms_too() -> None:
    model = create_model("resnet20")
    randomise_batch_norms(model)
    freeze(model)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    fused = fuse_bn(model)
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        assert compare_outputs(fused(x), model(x)).rel_error < 1e-5


def test_fuse_bn_names_a_model_it_cannot_trace() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3)

        def forward(self, x: Tensor) -> Tensor:
            return self.bn(self.conv(x)) if x.sum() > 0 else x

    with pytest.raises(ValueError, match="cannot trace Branchy symbolically"):
        fuse_bn(Branchy())
