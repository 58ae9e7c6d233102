"""Teaching nets: layer shapes, hand-computed parameter counts and MACs, the forward order."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.flop_counter import FlopCounterMode

from cnnzoo.models.teaching import TeachingCNN
from cnnzoo.registry import create_model, model_info


def _build(name: str) -> TeachingCNN:
    model = create_model(name)
    assert isinstance(model, TeachingCNN)
    return model


def _output_shapes(model: nn.Module, x: Tensor) -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    handles = [
        module.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name, module in model.named_modules()
        if isinstance(module, nn.Conv2d | nn.MaxPool2d | nn.Linear)
    ]
    model(x)
    for handle in handles:
        handle.remove()
    return shapes


def test_simple_cnn_layer_shapes() -> None:
    shapes = _output_shapes(_build("simple_cnn"), torch.randn(1, 3, 32, 32))
    assert shapes == {
        "features.block1.conv": (32, 32, 32),  # padding 1 keeps the size
        "features.block1.pool": (32, 16, 16),
        "features.block2.conv": (64, 16, 16),
        "features.block2.pool": (64, 8, 8),
        "features.block3.conv": (128, 8, 8),
        "features.block3.pool": (128, 4, 4),  # 2048 features
        "hidden.fc1": (512,),
        "hidden.fc2": (64,),
        "fc": (10,),
    }


def test_mnist_cnn_layer_shapes() -> None:
    shapes = _output_shapes(_build("mnist_cnn"), torch.randn(2, 1, 28, 28))
    assert shapes == {
        "features.block1.conv": (16, 26, 26),  # unpadded: 2048 = 128 x 4 x 4 needs it
        "features.block2.conv": (32, 24, 24),
        "features.block2.pool": (32, 12, 12),
        "features.block3.conv": (64, 10, 10),
        "features.block4.conv": (128, 8, 8),
        "features.block4.pool": (128, 4, 4),
        "hidden.fc1": (1024,),
        "hidden.fc2": (128,),
        "fc": (10,),
    }


# Hand counts (see the comments beside SIMPLE_CNN and MNIST_CNN).
HAND_PARAMS = {
    "simple_cnn": {
        "features.block1": 3 * 32 * 9 + 32,  # 896
        "features.block2": 32 * 64 * 9 + 64,  # 18,496
        "features.block3": 64 * 128 * 9 + 128,  # 73,856
        "hidden.fc1": 2048 * 512 + 512,  # 1,049,088
        "hidden.fc2": 512 * 64 + 64,  # 32,832
        "fc": 64 * 10 + 10,  # 650
    },
    "mnist_cnn": {  # convs without bias, BN weight + bias
        "features.block1": 1 * 16 * 9 + 2 * 16,
        "features.block2": 16 * 32 * 9 + 2 * 32,
        "features.block3": 32 * 64 * 9 + 2 * 64,
        "features.block4": 64 * 128 * 9 + 2 * 128,
        "hidden.fc1": 2048 * 1024 + 1024,
        "hidden.fc2": 1024 * 128 + 128,
        "fc": 128 * 10 + 10,
    },
}


@pytest.mark.parametrize("name", list(HAND_PARAMS))
def test_params_per_layer_match_hand_count(name: str) -> None:
    with torch.device("meta"):
        model = _build(name)
    modules = dict(model.named_modules())
    counted = {
        layer: sum(p.numel() for p in modules[layer].parameters()) for layer in HAND_PARAMS[name]
    }
    assert counted == HAND_PARAMS[name]
    assert sum(HAND_PARAMS[name].values()) == model_info(name).params


@pytest.mark.parametrize("name", ["simple_cnn", "mnist_cnn"])
def test_macs_match_flop_counter(name: str) -> None:
    info = model_info(name)
    model = _build(name).eval()
    with FlopCounterMode(display=False) as counter:
        model(torch.randn(1, *info.input_size))
    assert counter.get_total_flops() == 2 * info.macs  # FLOPs = 2 x MACs for conv and linear


def test_mnist_cnn_blocks_are_conv_bn_relu() -> None:
    model = _build("mnist_cnn")
    for index, block in enumerate(model.features, start=1):
        assert [type(m) for m in block][:3] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
        assert block.conv.bias is None  # BN's mean subtraction would cancel it
        assert block.conv.padding == (0, 0)
        assert hasattr(block, "pool") == (index in (2, 4))


# The architectures as the brief states them: (padding, blocks followed by a 2x2 max-pool).
ARCHITECTURES = {"simple_cnn": (1, {1, 2, 3}), "mnist_cnn": (0, {2, 4})}


def _reference_forward(name: str, sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """Independent eval-mode forward from the state_dict with torch.nn.functional calls."""
    padding, pooled = ARCHITECTURES[name]
    blocks = sorted({key.split(".")[1] for key in sd if key.startswith("features.")})
    for index, block in enumerate(blocks, start=1):
        prefix = f"features.{block}"
        x = F.conv2d(x, sd[f"{prefix}.conv.weight"], sd.get(f"{prefix}.conv.bias"), padding=padding)
        if f"{prefix}.bn.weight" in sd:
            x = F.batch_norm(
                x,
                sd[f"{prefix}.bn.running_mean"],
                sd[f"{prefix}.bn.running_var"],
                sd[f"{prefix}.bn.weight"],
                sd[f"{prefix}.bn.bias"],
                training=False,
            )
        x = F.relu(x)
        if index in pooled:
            x = F.max_pool2d(x, 2)
    x = x.flatten(1)
    x = F.relu(F.linear(x, sd["hidden.fc1.weight"], sd["hidden.fc1.bias"]))
    x = F.relu(F.linear(x, sd["hidden.fc2.weight"], sd["hidden.fc2.bias"]))
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("name", ["simple_cnn", "mnist_cnn"])
def test_forward_matches_functional_reference(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name)
    with torch.no_grad():  # non-trivial BN statistics, so a wrong BN placement shows
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)
    model.eval()
    x = torch.randn(2, *model_info(name).input_size)
    torch.testing.assert_close(model(x), _reference_forward(name, model.state_dict(), x))


@pytest.mark.parametrize("name", ["simple_cnn", "mnist_cnn"])
def test_feature_info_channels_and_pre_logits(name: str) -> None:
    model = _build(name).eval()
    outputs: dict[str, Tensor] = {}
    modules = dict(model.named_modules())
    for info in model.feature_info:
        modules[info.module].register_forward_hook(
            lambda _m, _i, out, key=info.module: outputs.__setitem__(key, out)
        )
    x = torch.randn(1, *model_info(name).input_size)
    model(x)
    for info in model.feature_info:
        assert outputs[info.module].shape[1] == info.channels
    reductions = [info.reduction for info in model.feature_info]
    assert reductions == sorted(set(reductions))  # one entry per resolution
    pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
    assert pre_logits.shape == (1, model.fc.in_features)
    assert bool(pre_logits.ge(0).all())  # after the last hidden ReLU


@pytest.mark.parametrize("name", ["simple_cnn", "mnist_cnn"])
def test_one_pixel_less_fails_inside_a_layer(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _build(name).eval()
    channels, h, w = model_info(name).input_size
    assert (h, w) == model_info(name).min_size == model.fixed_input_size
    monkeypatch.setattr(model, "check_input", lambda x: None)
    with pytest.raises(RuntimeError):
        model(torch.randn(1, channels, h - 1, w - 1))
