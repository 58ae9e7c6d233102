"""Surgery: extract_layers, truncate, freeze, init_weights, adapt_input_channels, fuse_bn."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cnnzoo import (
    adapt_input_channels,
    create_model,
    extract_layers,
    freeze,
    fuse_bn,
    init_weights,
    list_models,
    model_info,
    truncate,
)
from cnnzoo.inference import compare_outputs
from cnnzoo.surgery import FrozenBatchNorm2d, conv_bn_pairs, node_names

HEAVY = {n for n in list_models() if model_info(n).params > 50_000_000 or n == "resnet1202"}


def _resnet18_stem(model: Any, x: Tensor) -> Tensor:
    return model.maxpool(model.relu(model.bn1(model.conv1(x))))


def _randomise_batch_norms(model: nn.Module) -> None:
    """Give every batch norm non-trivial statistics, so that folding them is really tested."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.5, 0.5)


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
    _randomise_batch_norms(bn)
    x = torch.randn(2, 8, 5, 5)
    frozen = FrozenBatchNorm2d.from_batch_norm(bn)
    assert torch.allclose(frozen(x), bn.eval()(x), rtol=1e-6, atol=1e-6)
    assert list(frozen.state_dict()) == list(bn.state_dict())


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
    _randomise_batch_norms(net)
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
    _randomise_batch_norms(model)
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
    _randomise_batch_norms(net)
    net.eval()
    assert conv_bn_pairs(net) == [("conv", "bn")]
    fused = fuse_bn(net)
    assert isinstance(fused.bn, nn.Identity) and isinstance(fused.bn_a, nn.BatchNorm2d)
    x = torch.randn(2, 3, 9, 9)
    with torch.no_grad():
        assert compare_outputs(fused(x), net(x)).rel_error < 1e-5


def test_fuse_bn_folds_frozen_batch_norms_too() -> None:
    model = create_model("resnet20")
    _randomise_batch_norms(model)
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
