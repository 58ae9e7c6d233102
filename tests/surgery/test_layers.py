"""cnnzoo.surgery.layers: extract_layers, truncate, freeze, adapt_input_channels."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

from _helpers import randomise_batch_norms
from cnnzoo import (
    adapt_input_channels,
    create_model,
    extract_layers,
    freeze,
    truncate,
)
from cnnzoo.surgery import FrozenBatchNorm2d, node_names


def _resnet18_stem(model: Any, x: Tensor) -> Tensor:
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


# --- extract_layers ----------------------------------------------------------------------------


def test_extract_layers_on_simple_cnn_gives_its_three_convs() -> None:
    model = create_model("simple_cnn")
    convs = extract_layers(model)
    assert convs.names == [
        "features.block1.conv",
        "features.block2.conv",
        "features.block3.conv",
    ]
    # The very layers of the model, not copies; reachable by position, slice and name.
    assert convs[0] is model.features.block1.conv
    assert convs["features.block3.conv"] is model.features.block3.conv
    assert [c.out_channels for c in convs] == [32, 64, 128]
    assert convs[1:].names == ["features.block2.conv", "features.block3.conv"]
    # state_dict keys are the model's own.
    own = {k: v for k, v in model.state_dict().items() if ".conv." in k}
    assert list(convs.state_dict()) == list(own)


def test_extract_layers_by_other_types() -> None:
    model = create_model("simple_cnn")
    linears = extract_layers(model, nn.Linear)
    assert linears.names == ["hidden.fc1", "hidden.fc2", "fc"]
    both = extract_layers(model, (nn.Conv2d, nn.MaxPool2d))
    assert len(both) == 6
    with pytest.raises(KeyError, match="no layer named 'fc9'"):
        linears["fc9"]


# --- truncate ----------------------------------------------------------------------------------


def test_truncate_resnet18_after_layer2_equals_the_first_layers() -> None:
    model = create_model("resnet18").eval()
    x = torch.randn(2, 3, 64, 64)
    backbone = truncate(model, upto="layer2")
    with torch.no_grad():
        expected = model.layer2(model.layer1(_resnet18_stem(model, x)))
        assert torch.equal(backbone(x), expected)
    assert not hasattr(backbone, "layer3") and not hasattr(backbone, "fc")  # never run
    assert backbone.get_submodule("layer1.0.conv1") is model.layer1[0].conv1  # shared


def test_truncate_at_functional_results() -> None:
    model = create_model("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.equal(truncate(model, "flatten")(x), pooled)
        block = model.layer1[0]
        stem = _resnet18_stem(model, x)
        residual = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(stem)))))
        assert torch.equal(truncate(model, "layer1.0.add")(x), residual + stem)
        # BasicBlock calls its one ReLU twice: the second call is the block's output.
        assert torch.equal(truncate(model, "layer1.0.relu_1")(x), model.layer1[0](stem))
    names = node_names(model)
    assert names.index("layer1") < names.index("layer2") < names.index("fc")


def test_truncate_through_a_sliced_sequential() -> None:
    # AlexNet's head calls self.classifier[:-1], a Sequential that is not installed in the model.
    model = create_model("alexnet").eval()
    x = torch.randn(1, 3, 63, 63)
    with torch.no_grad():
        pre_logits = model.forward_head(model.forward_features(x), pre_logits=True)
        assert torch.equal(truncate(model, "classifier.5")(x), pre_logits)


def test_truncate_unknown_name_suggests_close_ones() -> None:
    with pytest.raises(ValueError, match=r"no layer or operation named 'layer5'.*layer[1-4]"):
        truncate(create_model("resnet18"), upto="layer5")


# --- freeze ------------------------------------------------------------------------------------


def test_freeze_upto_layer2_keeps_the_frozen_part_fixed_in_train_mode() -> None:
    model = create_model("resnet18")
    keys_before = [(k, v.shape) for k, v in model.state_dict().items()]
    frozen = freeze(model, upto="layer2")
    assert frozen[0] == "conv1.weight" and frozen[-1] == "layer2.1.bn2.bias"
    for name, param in model.named_parameters():
        assert param.requires_grad == name.startswith(("layer3", "layer4", "fc")), name
    assert isinstance(model.layer2[1].bn2, FrozenBatchNorm2d)
    assert isinstance(model.layer3[0].bn1, nn.BatchNorm2d)
    # Same state_dict keys and shapes: checkpoints load either way.
    assert [(k, v.shape) for k, v in model.state_dict().items()] == keys_before

    model.train()
    x = torch.randn(4, 3, 64, 64)
    stats_before = model.layer1[0].bn1.running_mean.clone()
    upto_layer2 = truncate(model, "layer2")
    first = upto_layer2(x)
    model(x).sum().backward()
    assert torch.equal(model.layer1[0].bn1.running_mean, stats_before)
    model.eval()
    assert torch.equal(upto_layer2(x), first)  # train and eval mode agree on the frozen part
    assert model.conv1.weight.grad is None
    assert model.layer3[0].conv1.weight.grad is not None


def test_freeze_default_leaves_only_the_classifier_trainable() -> None:
    model = create_model("resnet20")
    freeze(model, freeze_bn=False)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable == ["fc.weight", "fc.bias"]
    assert not any(isinstance(m, FrozenBatchNorm2d) for m in model.modules())


def test_freeze_unknown_name() -> None:
    with pytest.raises(ValueError, match=r"no module named 'layer9'.*did you mean"):
        freeze(create_model("resnet20"), upto="layer9")


def test_frozen_batch_norm_is_batch_norm_in_eval_mode() -> None:
    bn = nn.BatchNorm2d(8, eps=1e-3)
    randomise_batch_norms(bn)
    x = torch.randn(2, 8, 5, 5)
    frozen = FrozenBatchNorm2d.from_batch_norm(bn)
    assert torch.allclose(frozen(x), bn.eval()(x), rtol=1e-6, atol=1e-6)
    assert list(frozen.state_dict()) == list(bn.state_dict())


# --- adapt_input_channels ----------------------------------------------------------------------


def test_one_channel_sums_the_kernels_so_grey_input_is_unchanged() -> None:
    model = create_model("resnet20").eval()
    grey = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        expected = model(grey.expand(-1, 3, -1, -1))
        adapt_input_channels(model, 1)
        assert model.in_channels == 1 and model.conv1.weight.shape[1] == 1
        assert torch.allclose(model(grey), expected, rtol=1e-5, atol=1e-5)


def test_more_channels_repeat_and_rescale() -> None:
    model = create_model("resnet18").eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        expected = model(x)
        adapt_input_channels(model, 6)
        # The old channels repeated: exactly the old output (each kernel scaled by 3/6).
        assert torch.allclose(model(torch.cat([x, x], 1)), expected, rtol=1e-5, atol=1e-5)
        adapt_input_channels(model, 2)
        assert model(torch.randn(1, 2, 64, 64)).shape == (1, 1000)


def test_adapt_input_channels_refusals() -> None:
    with pytest.raises(ValueError, match="transform_input"):
        adapt_input_channels(create_model("googlenet", transform_input=True), 1)
    with pytest.raises(ValueError, match="must be positive"):
        adapt_input_channels(create_model("resnet20"), 0)
