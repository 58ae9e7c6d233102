"""VGG: the configuration table against the paper, torchvision's layout, init and forward.

References: Simonyan & Zisserman 2014 (arXiv:1409.1556) Table 1 (configurations) and Table 2
(parameter counts in millions); torchvision 0.28's VGG (docs: params and GFLOPS, copied in
tests/data/published_numbers.md); published_numbers.md for the computed numbers of ``vgg16_c``.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import adaptive_avg_pool, count_macs_by_hooks
from cnnzoo import create_model, list_models, model_info
from cnnzoo.models.vgg import CONFIGS, VGG

# Which column of Table 1 each registered model builds.
MODEL_CONFIG = {
    "vgg11": "A", "vgg11_bn": "A", "vgg13": "B", "vgg13_bn": "B", "vgg16_c": "C",
    "vgg16": "D", "vgg16_bn": "D", "vgg19": "E", "vgg19_bn": "E",
}  # fmt: skip


def _meta_vgg(name: str, **kwargs: int | float | bool) -> VGG:
    with torch.device("meta"):
        model = create_model(name, **kwargs)
    assert isinstance(model, VGG)
    return model


def batch_norm(x: Tensor, sd: dict[str, Tensor], key: str, train: bool) -> Tensor:
    """BatchNorm2d written out: batch statistics (biased variance) in training, else running."""
    if train:
        mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
    else:
        mean, var = sd[f"{key}.running_mean"], sd[f"{key}.running_var"]
    scale = sd[f"{key}.weight"] / torch.sqrt(var + 1e-5)
    return (x - mean[:, None, None]) * scale[:, None, None] + sd[f"{key}.bias"][:, None, None]


# Configuration D as torchvision's vgg16_bn lays it out: features.N indices of each conv
# (conv, BN, ReLU per layer; a max-pool after each stage).
VGG16_BN_CONVS = [[0, 3], [7, 10], [14, 17, 20], [24, 27, 30], [34, 37, 40]]


def torchvision_vgg16_bn_reference(sd: dict[str, Tensor], x: Tensor, train: bool = False) -> Tensor:
    """torchvision's vgg16_bn forward from a state_dict: 3x3 p1 convs with BN and ReLU, 2x2/2
    max-pools, adaptive avg 7x7, fc6 -> ReLU -> dropout -> fc7 -> ReLU -> dropout -> fc8."""
    for stage in VGG16_BN_CONVS:
        for i in stage:
            x = F.conv2d(x, sd[f"features.{i}.weight"], sd[f"features.{i}.bias"], padding=1)
            x = F.relu(batch_norm(x, sd, f"features.{i + 1}", train))
        x = F.max_pool2d(x, 2, 2)
    x = adaptive_avg_pool(x, 7, 7).flatten(1)
    x = F.dropout(
        F.relu(F.linear(x, sd["classifier.0.weight"], sd["classifier.0.bias"])), 0.5, train
    )
    x = F.dropout(
        F.relu(F.linear(x, sd["classifier.3.weight"], sd["classifier.3.bias"])), 0.5, train
    )
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


@pytest.fixture(scope="module")
def vgg16_bn() -> VGG:
    torch.manual_seed(0)
    model = create_model("vgg16_bn")
    assert isinstance(model, VGG)
    return model


# --- the configuration table ---------------------------------------------------------------


def test_config_table_matches_paper_table_1() -> None:
    weight_layers = {"A": 11, "B": 13, "C": 16, "D": 16, "E": 19}  # Table 1 column headers
    convs_per_stage = {
        "A": [1, 1, 2, 2, 2],
        "B": [2, 2, 2, 2, 2],
        "C": [2, 2, 3, 3, 3],
        "D": [2, 2, 3, 3, 3],
        "E": [2, 2, 4, 4, 4],
    }
    assert sorted(CONFIGS) == ["A", "B", "C", "D", "E"]
    for key, config in CONFIGS.items():
        assert config[-1] == "M" and config.count("M") == 5, key
        convs = [spec for spec in config if spec != "M"]
        assert len(convs) + 3 == weight_layers[key], key  # + fc6, fc7, fc8
        stages: list[list[int]] = [[]]
        for spec in config[:-1]:
            if spec == "M":
                stages.append([])
            else:
                stages[-1].append(spec if isinstance(spec, int) else spec[0])
        assert [len(s) for s in stages] == convs_per_stage[key], key
        # Widths 64, 128, 256, 512, 512, constant within a stage (sec. 2.2).
        assert [set(s) for s in stages] == [{64}, {128}, {256}, {512}, {512}], key
    # C: D with the last conv of stages 3-5 a 1x1 ("conv1-256", "conv1-512" x2).
    one_by_one = [(i, spec) for i, spec in enumerate(CONFIGS["C"]) if isinstance(spec, tuple)]
    assert [spec for _, spec in one_by_one] == [(256, 1), (512, 1), (512, 1)]
    assert all(CONFIGS["C"][i + 1] == "M" for i, _ in one_by_one)
    assert [s if isinstance(s, (int, str)) else s[0] for s in CONFIGS["C"]] == CONFIGS["D"]


@pytest.mark.parametrize("name", sorted(MODEL_CONFIG))
def test_models_build_their_column(name: str) -> None:
    assert set(list_models("vgg*")) == set(MODEL_CONFIG)
    model = _meta_vgg(name)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    expected = [
        (s, 3) if isinstance(s, int) else s for s in CONFIGS[MODEL_CONFIG[name]] if s != "M"
    ]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == expected
    for conv in convs:  # stride 1; padding keeps the resolution (sec. 2.1)
        assert conv.stride == (1, 1)
        assert conv.padding == (conv.kernel_size[0] // 2,) * 2
        assert conv.bias is not None  # torchvision keeps it, with BN too
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 5 and all((p.kernel_size, p.stride) == (2, 2) for p in pools)


def test_paper_table_2_parameter_counts() -> None:
    # Table 2, "Number of parameters (in millions)": A 133, B 133, C 134, D 138, E 144.
    table_2 = {"vgg11": 133, "vgg13": 133, "vgg16_c": 134, "vgg16": 138, "vgg19": 144}
    for name, millions in table_2.items():
        params = sum(p.numel() for p in _meta_vgg(name).parameters())
        assert round(params / 1e6) == millions, name


@pytest.mark.parametrize("name", ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"])
def test_bn_variants_have_batch_norm_after_every_conv(name: str) -> None:
    layers = list(_meta_vgg(name).features)
    plain = list(_meta_vgg(name.removesuffix("_bn")).features)
    convs = [i for i, m in enumerate(layers) if isinstance(m, nn.Conv2d)]
    assert len(convs) == sum(isinstance(m, nn.Conv2d) for m in plain)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in layers) == len(convs)
    for i in convs:
        bn, relu = layers[i + 1], layers[i + 2]
        assert isinstance(bn, nn.BatchNorm2d) and bn.num_features == layers[i].out_channels
        assert isinstance(relu, nn.ReLU)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in plain)


# --- torchvision compatibility ---------------------------------------------------------------


def test_vgg16_bn_matches_functional_reference_eval_and_train(vgg16_bn: VGG) -> None:
    saved = {k: v.clone() for k, v in vgg16_bn.state_dict().items() if k.startswith("features")}
    try:
        _check_vgg16_bn_against_reference(vgg16_bn)
    finally:  # the fixture is shared: give it back as built
        vgg16_bn.load_state_dict(saved, strict=False)
        vgg16_bn.eval()


def _check_vgg16_bn_against_reference(vgg16_bn: VGG) -> None:
    # Non-trivial BN statistics and affine parameters, so the eval-mode BN is not an identity.
    with torch.no_grad():
        for module in vgg16_bn.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.normal_(0.0, 0.1)
                module.running_var.uniform_(0.5, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.normal_(0.0, 0.1)
    # 32x64: the last map is 1x2, so the adaptive 7x7 pool repeats along H and averages along W;
    # a height/width mix-up would show. Stage outputs are tapped to check feature_info.
    shapes: dict[str, tuple[int, ...]] = {}
    modules = dict(vgg16_bn.named_modules())
    hooks = [
        modules[f.module].register_forward_hook(
            lambda m, i, o, key=f.module: shapes.__setitem__(key, tuple(o.shape[1:]))
        )
        for f in vgg16_bn.feature_info
    ]
    x = torch.randn(1, 3, 32, 64)
    sd = vgg16_bn.state_dict()
    with torch.no_grad():
        vgg16_bn.eval()
        torch.testing.assert_close(vgg16_bn(x), torchvision_vgg16_bn_reference(sd, x))
        assert shapes == {
            f.module: (f.channels, 32 // f.reduction, 64 // f.reduction)
            for f in vgg16_bn.feature_info
        }
        assert [f.reduction for f in vgg16_bn.feature_info] == [1, 2, 4, 8, 16, 32]
        for hook in hooks:
            hook.remove()
        # Training mode: batch statistics, and dropout masks equal under the same seed only if
        # the dropouts follow fc6's and fc7's ReLUs as in torchvision.
        vgg16_bn.train()
        x2 = torch.randn(2, 3, 32, 32)
        torch.manual_seed(1)
        ours = vgg16_bn(x2)
        torch.manual_seed(1)
        reference = torchvision_vgg16_bn_reference(sd, x2, train=True)
        # Batch statistics of small batches amplify float32 rounding through 13 layers; a wrong
        # dropout mask would differ by the size of the logits themselves.
        torch.testing.assert_close(ours, reference, rtol=1e-3, atol=1e-4)


def test_torchvision_init(vgg16_bn: VGG) -> None:
    # torchvision: kaiming_normal_(fan_out, relu) convs, zero conv bias; BN weight 1 bias 0;
    # linear N(0, 0.01), zero bias.
    for name, module in vgg16_bn.named_modules():
        if isinstance(module, nn.Conv2d):
            fan_out = module.out_channels * module.kernel_size[0] * module.kernel_size[1]
            std = math.sqrt(2.0 / fan_out)
            assert module.weight.std().item() == pytest.approx(std, rel=0.05), name
            assert torch.all(module.bias == 0), name
        elif isinstance(module, nn.BatchNorm2d):
            assert torch.all(module.weight == 1) and torch.all(module.bias == 0), name
        elif isinstance(module, nn.Linear):
            assert module.weight.std().item() == pytest.approx(0.01, rel=0.05), name
            assert torch.all(module.bias == 0), name


def test_init_weights_false_keeps_pytorch_defaults_and_reset_follows_the_build() -> None:
    # A two-layer VGG built by the same class: the init code is the same, the fc6 is small.
    tiny = VGG([8, "M"], init_weights=False, num_classes=5)
    fc6 = tiny.classifier[0]
    assert isinstance(fc6, nn.Linear) and fc6.in_features == 8 * 7 * 7
    bound = 1 / math.sqrt(fc6.in_features)  # PyTorch's default: U(+-1/sqrt(fan_in))
    assert fc6.bias.abs().max() > 0 and fc6.weight.abs().max() <= bound
    tiny.reset_classifier(3)
    assert tiny.num_classes == 3 and tiny.get_classifier() is tiny.classifier[6]
    assert tiny.classifier[6].bias.abs().max() > 0  # default init again
    built = VGG([8, "M"], init_weights=True)
    built.reset_classifier(3)
    assert torch.all(built.classifier[6].bias == 0)  # torchvision's init again


def test_constructor_options_and_head() -> None:
    model = _meta_vgg("vgg16", num_classes=10, in_channels=1, dropout=0.3)
    assert model.features[0].in_channels == 1
    assert [type(m) for m in model.classifier] == [
        nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear
    ]  # fmt: skip
    assert model.classifier[2].p == model.classifier[5].p == 0.3
    assert model.avgpool.output_size == (7, 7)
    features = model.forward_features(torch.empty(1, 1, 224, 224, device="meta"))
    assert features.shape == (1, 512, 7, 7)
    assert model.forward_head(features, pre_logits=True).shape == (1, 4096)
    assert model.forward_head(features).shape == (1, 10)


# --- MACs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(MODEL_CONFIG))
def test_macs(name: str) -> None:
    info = model_info(name)
    assert info.macs is not None
    macs = count_macs_by_hooks(_meta_vgg(name), info.input_size)
    if info.torchvision:  # torchvision documents GFLOPS (= MACs) to three decimals
        assert round(macs / 1e9, 3) == round(info.macs / 1e9, 3)
    else:  # vgg16_c: the exact count
        assert macs == info.macs == 11_770_888_192
