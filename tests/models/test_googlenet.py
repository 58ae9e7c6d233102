"""GoogLeNet: torchvision's ``googlenet`` and the paper's ``googlenet_original``.

torchvision cannot be imported here, so "same function as torchvision" is shown against an
independent functional reference: the forward recomputed from the state_dict with
torch.nn.functional calls, following torchvision's documented GoogLeNet (conv-BN(eps 1e-3)-ReLU
units, ceil-mode pools, a 3x3 "5x5" branch, a 2x2 pool before 5a, adaptive 4x4 aux pooling).
Generic checks (param counts, shapes, gradients, min size, state_dict keys) live in
test_all_models.py.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import assert_trains, count_macs, count_macs_by_hooks, count_params, meta_model
from cnnzoo import create_model, model_info
from cnnzoo.layers import BasicConv2d, imagenet_to_unit_range
from cnnzoo.models.googlenet import (
    AUX_INPUT_RANGE_ORIGINAL,
    BN_INCEPTION_SPECS,
    INCEPTION_SPECS,
    BNInception,
    ConvBNReLU,
    GoogLeNet,
    GoogLeNetOriginal,
    GoogLeNetOutputs,
    Inception,
    InceptionAux,
)

State = dict[str, Tensor]
STAGES = ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")


def _scramble_(model: nn.Module) -> nn.Module:
    """Weights that keep activations O(1) through the net, and non-trivial BN statistics, so a
    wrong eps, order or wiring shows in the output (torchvision's small-std init would shrink
    the signal towards 0 and make any comparison pass)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.uniform_(m.bias, -0.2, 0.2)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.uniform_(m.weight, 0.5, 1.5)
                nn.init.uniform_(m.bias, -0.2, 0.2)
                m.running_mean.uniform_(-0.02, 0.02)
                m.running_var.uniform_(0.005, 0.015)  # ~0.01: eps 1e-3 is 10% of it
        for m in model.modules():
            if isinstance(m, BasicConv2d):
                m.conv.weight.mul_(0.1)  # conv outputs of variance ~0.01, matching the BN stats
    return model.eval()


def _assert_same(ours: Tensor, ref: Tensor) -> None:
    assert ours.shape == ref.shape
    scale = ref.abs().max().item()
    assert scale > 1e-2, "reference output is ~0: the comparison would prove nothing"
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-5 * scale)


# --- functional reference: torchvision's GoogLeNet, from its documented architecture ---------


def _ref_conv_bn(x: Tensor, sd: State, p: str, stride: int = 1, padding: int = 0) -> Tensor:
    x = F.conv2d(x, sd[f"{p}.conv.weight"], None, stride, padding)
    x = F.batch_norm(
        x,
        sd[f"{p}.bn.running_mean"],
        sd[f"{p}.bn.running_var"],
        sd[f"{p}.bn.weight"],
        sd[f"{p}.bn.bias"],
        training=False,
        eps=1e-3,
    )
    return F.relu(x)


def _ref_inception(x: Tensor, sd: State, p: str) -> Tensor:
    b1 = _ref_conv_bn(x, sd, f"{p}.branch1")
    b2 = _ref_conv_bn(_ref_conv_bn(x, sd, f"{p}.branch2.0"), sd, f"{p}.branch2.1", padding=1)
    b3 = _ref_conv_bn(_ref_conv_bn(x, sd, f"{p}.branch3.0"), sd, f"{p}.branch3.1", padding=1)
    pooled = F.max_pool2d(x, 3, stride=1, padding=1, ceil_mode=True)
    b4 = _ref_conv_bn(pooled, sd, f"{p}.branch4.1")
    return torch.cat([b1, b2, b3, b4], 1)


def _ref_aux(x: Tensor, sd: State, p: str) -> Tensor:  # eval mode: dropout is the identity
    x = _ref_conv_bn(F.adaptive_avg_pool2d(x, (4, 4)), sd, f"{p}.conv").flatten(1)
    x = F.relu(F.linear(x, sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"]))
    return F.linear(x, sd[f"{p}.fc2.weight"], sd[f"{p}.fc2.bias"])


def _ref_googlenet(x: Tensor, sd: State) -> Tensor:
    x = _ref_conv_bn(x, sd, "conv1", stride=2, padding=3)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = _ref_conv_bn(x, sd, "conv2")
    x = _ref_conv_bn(x, sd, "conv3", padding=1)
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for stage in STAGES:
        x = _ref_inception(x, sd, f"inception{stage}")
        if stage == "3b":
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
        elif stage == "4e":
            x = F.max_pool2d(x, 2, 2, ceil_mode=True)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


# --- functional reference: the paper's network (sec. 5, Table 1, Figure 3) ---------------------


def _ref_conv_relu(x: Tensor, sd: State, p: str, stride: int = 1, padding: int = 0) -> Tensor:
    return F.relu(F.conv2d(x, sd[f"{p}.conv.weight"], sd[f"{p}.conv.bias"], stride, padding))


def _ref_lrn(x: Tensor) -> Tensor:
    # BVLC Caffe GoogLeNet: local_size 5, alpha 1e-4 (Caffe divides it by 5, as PyTorch does), k 1.
    return F.local_response_norm(x, 5, alpha=1e-4, beta=0.75, k=1.0)


def _ref_inception_original(x: Tensor, sd: State, p: str) -> Tensor:
    b1 = _ref_conv_relu(x, sd, f"{p}.branch1")
    b2 = _ref_conv_relu(_ref_conv_relu(x, sd, f"{p}.branch2.0"), sd, f"{p}.branch2.1", padding=1)
    b3 = _ref_conv_relu(_ref_conv_relu(x, sd, f"{p}.branch3.0"), sd, f"{p}.branch3.1", padding=2)
    b4 = _ref_conv_relu(F.max_pool2d(x, 3, stride=1, padding=1), sd, f"{p}.branch4.1")
    return torch.cat([b1, b2, b3, b4], 1)


def _ref_aux_original(x: Tensor, sd: State, p: str) -> Tensor:
    x = _ref_conv_relu(F.avg_pool2d(x, 5, stride=3), sd, f"{p}.conv").flatten(1)
    x = F.relu(F.linear(x, sd[f"{p}.fc1.weight"], sd[f"{p}.fc1.bias"]))
    return F.linear(x, sd[f"{p}.fc2.weight"], sd[f"{p}.fc2.bias"])


def _ref_googlenet_original(x: Tensor, sd: State) -> Tensor:
    x = _ref_conv_relu(x, sd, "conv1", stride=2, padding=3)
    x = _ref_lrn(F.max_pool2d(x, 3, 2, ceil_mode=True))
    x = _ref_conv_relu(x, sd, "conv2")
    x = _ref_lrn(_ref_conv_relu(x, sd, "conv3", padding=1))
    x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    for stage in STAGES:
        x = _ref_inception_original(x, sd, f"inception{stage}")
        if stage in ("3b", "4e"):
            x = F.max_pool2d(x, 3, 2, ceil_mode=True)
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


# --- torchvision's googlenet ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scrambled_googlenet() -> GoogLeNet:
    torch.manual_seed(1)
    model = create_model("googlenet")
    assert isinstance(model, GoogLeNet)
    _scramble_(model)
    return model


def test_whole_forward_matches_functional_reference(scrambled_googlenet: GoogLeNet) -> None:
    # 64x64 makes every ceil-mode pool differ from floor mode (32 -> 16 not 15, 16 -> 8, 8 -> 4).
    x = torch.randn(2, 3, 64, 64)
    sd = scrambled_googlenet.state_dict()
    with torch.no_grad():
        _assert_same(scrambled_googlenet(x), _ref_googlenet(x, sd))


def test_inception_module_matches_functional_reference(scrambled_googlenet: GoogLeNet) -> None:
    x = torch.randn(2, 480, 9, 9)
    sd = scrambled_googlenet.state_dict()
    with torch.no_grad():
        _assert_same(scrambled_googlenet.inception4a(x), _ref_inception(x, sd, "inception4a"))


@pytest.mark.parametrize("side", [14, 9])  # 14: the 4a/4d maps at 224; 9: adaptive pooling
def test_aux_head_matches_functional_reference(scrambled_googlenet: GoogLeNet, side: int) -> None:
    x = torch.randn(2, 528, side, side)
    sd = scrambled_googlenet.state_dict()
    assert scrambled_googlenet.aux2 is not None
    with torch.no_grad():
        _assert_same(scrambled_googlenet.aux2(x), _ref_aux(x, sd, "aux2"))


def test_training_output_is_torchvision_namedtuple_with_aux_on_4a_and_4d() -> None:
    model = create_model("googlenet", dropout=0.0, dropout_aux=0.0).train()
    taps: dict[str, Tensor] = {}
    for name in ("inception4a", "inception4d", "aux1", "aux2"):
        getattr(model, name).register_forward_hook(
            lambda m, i, o, name=name: taps.__setitem__(name, (i[0], o))
        )
    out = model(torch.randn(2, 3, 32, 32))  # torchvision's aux heads pool adaptively: any size
    assert type(out).__name__ == "GoogLeNetOutputs"
    assert isinstance(out, GoogLeNetOutputs)
    assert out._fields == ("logits", "aux_logits2", "aux_logits1")
    assert all(isinstance(t, Tensor) and t.shape == (2, 1000) for t in out)
    # aux_logits1 comes from the head on 4a's output, aux_logits2 from the head on 4d's.
    assert taps["aux1"][0] is taps["inception4a"][1]
    assert taps["aux2"][0] is taps["inception4d"][1]
    assert out.aux_logits1 is taps["aux1"][1]
    assert out.aux_logits2 is taps["aux2"][1]

    model.eval()
    with torch.no_grad():
        assert isinstance(model(torch.randn(1, 3, 32, 32)), Tensor)


def test_without_aux_heads_training_returns_a_tensor_and_keys_lose_aux(
    torchvision_state_dicts: dict[str, Any],
) -> None:
    with torch.device("meta"):
        model = create_model("googlenet", aux_logits=False).train()
        out = model(torch.empty(2, 3, 224, 224))
    assert isinstance(out, Tensor) and out.shape == (2, 1000)
    assert model.aux1 is None and model.aux2 is None
    reference = [
        [k, shape]
        for k, shape in torchvision_state_dicts["googlenet"]["state_dict"]
        if not k.startswith(("aux1.", "aux2."))
    ]
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == reference
    assert count_params(model) == 6_624_904  # torchvision docs: googlenet without aux heads


def test_transform_input_hand_example() -> None:
    # A pixel of raw value v, ImageNet-normalised as (v - mean) / std, must come out (v - 0.5)/0.5.
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    raw = torch.tensor([0.0, 0.5, 1.0, 0.25])
    normalised = (raw[None, None, :] - mean[:, None, None]) / std[:, None, None]  # (3, 1, 4)
    out = imagenet_to_unit_range(normalised[None])
    expected = torch.tensor([-1.0, 0.0, 1.0, -0.5]).expand(3, 1, 4)
    torch.testing.assert_close(out[0], expected, rtol=0, atol=1e-6)
    # torchvision's formula, channel 0 of an input 1.0: 1.0 * (0.229 / 0.5) + (0.485 - 0.5) / 0.5
    assert imagenet_to_unit_range(torch.ones(1, 3, 1, 1))[0, 0, 0, 0].item() == pytest.approx(0.428)


def test_transform_input_is_applied_before_conv1() -> None:
    plain = _scramble_(create_model("googlenet", aux_logits=False, init_weights=False))
    transformed = create_model("googlenet", aux_logits=False, transform_input=True).eval()
    transformed.load_state_dict(plain.state_dict())
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(transformed(x), plain(imagenet_to_unit_range(x)))
        assert not torch.allclose(transformed(x), plain(x))
    with pytest.raises(ValueError, match="in_channels=3"):
        create_model("googlenet", in_channels=1, transform_input=True)


def test_torchvision_structure_and_init() -> None:
    model = create_model("googlenet")
    assert isinstance(model, GoogLeNet)
    for stage in STAGES:
        block = getattr(model, f"inception{stage}")
        assert isinstance(block, Inception)
        assert block.branch3[1].conv.kernel_size == (3, 3)  # torchvision's deviation (vision#906)
        assert block.branch1.conv.out_channels == INCEPTION_SPECS[stage].c1x1
    assert model.maxpool4.kernel_size == 2 and model.maxpool1.ceil_mode
    assert model.dropout.p == 0.2 and model.aux1 is not None and model.aux1.dropout.p == 0.7
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(bns) == len(convs) == 59 and all(bn.eps == 1e-3 for bn in bns)
    assert all(m.bias is None for m in convs)
    assert all(torch.equal(bn.weight, torch.ones_like(bn.weight)) for bn in bns)
    assert all(torch.equal(bn.bias, torch.zeros_like(bn.bias)) for bn in bns)
    # trunc_normal(std 0.01) on every conv and linear weight: 13M samples pin the std tightly.
    weights = torch.cat(
        [
            m.weight.flatten()
            for m in model.modules()
            if hasattr(m, "weight") and isinstance(m, (nn.Conv2d, nn.Linear))
        ]
    )
    assert weights.std().item() == pytest.approx(0.01, rel=0.01)
    # init_weights=False keeps PyTorch's defaults: conv1's std is 1 / sqrt(3 * 147) = 0.048.
    default = create_model("googlenet", init_weights=False)
    assert default.conv1.conv.weight.std().item() == pytest.approx(0.048, rel=0.05)


def test_custom_blocks_are_used_and_validated() -> None:
    class MyConv(BasicConv2d):
        pass

    with torch.device("meta"):
        model = create_model("googlenet", blocks=[MyConv, Inception, InceptionAux])
        assert isinstance(model.conv1, MyConv) and isinstance(model.conv3, MyConv)
        # torchvision does not pass conv_block to the Inception modules: they keep BasicConv2d.
        assert type(model.inception3a.branch1) is BasicConv2d
        with pytest.raises(ValueError, match="blocks"):
            create_model("googlenet", blocks=[MyConv, Inception])


# --- the paper's googlenet_original ---------------------------------------------------------------


def test_original_has_lrn_5x5_branches_biases_and_no_batchnorm() -> None:
    with torch.device("meta"):
        model = create_model("googlenet_original")
    assert isinstance(model, GoogLeNetOriginal)
    stem = [name for name, _ in model.named_children()][:7]
    # Figure 3: LRN after the first max pool, and after the 3x3 conv (Table 1's conv2 row).
    assert stem == ["conv1", "maxpool1", "norm1", "conv2", "conv3", "norm2", "maxpool2"]
    lrns = [m for m in model.modules() if isinstance(m, nn.LocalResponseNorm)]
    assert lrns == [model.norm1, model.norm2]
    assert all((m.size, m.alpha, m.beta, m.k) == (5, 1e-4, 0.75, 1.0) for m in lrns)
    for stage in STAGES:
        conv5 = getattr(model, f"inception{stage}").branch3[1].conv
        assert conv5.kernel_size == (5, 5) and conv5.padding == (2, 2)
        assert conv5.out_channels == INCEPTION_SPECS[stage].c5x5
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 57 + 2  # 3 stem + 9 x 6 modules, + one 1x1 conv per aux head
    assert all(m.bias is not None for m in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model.maxpool4.kernel_size == 3  # Table 1: 3x3/2 before 5a
    assert model.dropout.p == 0.4  # Table 1: dropout (40%)
    assert model.aux_loss_weight == 0.3  # sec. 5


def test_original_aux_heads_follow_section_5() -> None:
    with torch.device("meta"):
        model = create_model("googlenet_original")
    for aux, in_channels in ((model.aux1, 512), (model.aux2, 528)):
        assert aux is not None
        assert isinstance(aux.pool, nn.AvgPool2d)
        assert (aux.pool.kernel_size, aux.pool.stride) == (5, 3)
        assert (aux.conv.conv.in_channels, aux.conv.conv.out_channels) == (in_channels, 128)
        assert aux.conv.conv.kernel_size == (1, 1)
        assert (aux.fc1.in_features, aux.fc1.out_features) == (2048, 1024)
        assert aux.dropout.p == 0.7 and aux.fc2.out_features == 1000


def test_original_param_counts_with_and_without_aux() -> None:
    # Computed (tests/data/published_numbers.md); the paper says ~6.8M without the aux heads.
    with torch.device("meta"):
        assert count_params(create_model("googlenet_original")) == 13_378_280
        assert count_params(create_model("googlenet_original", aux_logits=False)) == 6_998_552
    assert model_info("googlenet_original").params == 13_378_280  # aux heads built by default


def test_original_init_follows_the_caffe_reference() -> None:
    model = create_model("googlenet_original")
    for name, m in model.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(3.0 / m.weight[0].numel())
            assert m.weight.abs().max().item() <= bound, name
            classifier = name == "fc" or name.endswith("fc2")
            assert torch.all(m.bias == (0.0 if classifier else 0.2)), name
    w = model.inception4c.branch2[0].conv.weight  # 65,536 samples of U(-b, b): std b / sqrt(3)
    assert w.std().item() == pytest.approx(math.sqrt(1.0 / w[0].numel()), rel=0.02)


def test_original_whole_forward_matches_functional_reference() -> None:
    model = _scramble_(create_model("googlenet_original"))
    # LRN divides by (1 + 2e-5 * sum of 5 squares)^0.75: it only bites on large activations.
    x = 100 * torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        out = model(x)
        _assert_same(out, _ref_googlenet_original(x, model.state_dict()))
        model.norm1, model.norm2 = nn.Identity(), nn.Identity()
        assert not torch.allclose(model(x), out, rtol=1e-2), "the LRNs must matter here"


def test_original_aux_head_matches_functional_reference() -> None:
    model = _scramble_(create_model("googlenet_original"))
    x = torch.randn(2, 512, 14, 14)
    assert model.aux1 is not None
    with torch.no_grad():
        _assert_same(model.aux1(x), _ref_aux_original(x, model.state_dict(), "aux1"))


def test_original_training_output_and_aux_input_range() -> None:
    low, high = AUX_INPUT_RANGE_ORIGINAL
    assert (low, high) == (223, 270)
    with torch.device("meta"):
        model = create_model("googlenet_original").train()
        for side in (low, 224, high):
            out = model(torch.empty(2, 3, side, side))
            assert isinstance(out, GoogLeNetOutputs)
            assert all(t is not None and t.shape == (2, 1000) for t in out)
        for side in (low - 1, high + 1):
            with pytest.raises(ValueError, match=rf"googlenet_original .*{low}\.\.{high}"):
                model(torch.empty(2, 3, side, side))
            # Without the check the aux head itself fails: the range is the true one.
            x = model._stem(torch.empty(2, 3, side, side))
            x = model.inception4a(model.maxpool3(model.inception3b(model.inception3a(x))))
            assert model.aux1 is not None
            with pytest.raises(RuntimeError):
                model.aux1(x)
        # Eval mode and aux-less builds take any size from the minimum up.
        model.eval()
        assert isinstance(model(torch.empty(1, 3, 300, 300)), Tensor)
        plain = create_model("googlenet_original", aux_logits=False).train()
        assert isinstance(plain(torch.empty(2, 3, 300, 300)), Tensor)


# --- both ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["googlenet", "googlenet_original"])
def test_macs_and_stage_reductions(name: str) -> None:
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
        sizes: dict[str, int] = {}
        modules = dict(model.named_modules())
        for f in model.feature_info:
            modules[f.module].register_forward_hook(
                lambda m, i, o, key=f.module: sizes.__setitem__(key, o.shape[-1])
            )
        macs = count_macs_by_hooks(model, (3, 224, 224))
    if name == "googlenet":
        assert round(macs / 1e9, 3) == 1.498  # torchvision: 1.498 GFLOPS (= MACs)
    else:
        assert macs == info.macs == 1_582_671_872  # computed; published_numbers.md: 1.583G
    # Ceil-mode pools give Table 1's 112 / 56 / 28 / 14 / 7 maps at 224.
    assert {k: 224 // v for k, v in sizes.items()} == {
        f.module: f.reduction for f in model.feature_info
    }


@pytest.mark.parametrize("name", ["googlenet", "googlenet_original"])
def test_reset_classifier_also_resizes_the_aux_heads(name: str) -> None:
    with torch.device("meta"):
        model = create_model(name)
        model.reset_classifier(5)
        out = model.train()(torch.empty(2, 3, 224, 224))
    assert [t.shape for t in out] == [(2, 5)] * 3


# --- BN-Inception (Ioffe & Szegedy 2015, Appendix, Figure 5) ------------------------------

# Figure 5's rows, copied column by column: #1x1, #3x3 reduce, #3x3, double #3x3 reduce,
# double #3x3, pool type, pool projection (0: "pass through"), stride.
FIGURE_5 = {
    "3a": (64, 64, 64, 64, 96, "avg", 32, 1),
    "3b": (64, 64, 96, 64, 96, "avg", 64, 1),
    "3c": (0, 128, 160, 64, 96, "max", 0, 2),
    "4a": (224, 64, 96, 96, 128, "avg", 128, 1),
    "4b": (192, 96, 128, 96, 128, "avg", 128, 1),
    "4c": (160, 128, 160, 128, 160, "avg", 128, 1),
    "4d": (96, 128, 192, 160, 192, "avg", 128, 1),
    "4e": (0, 128, 192, 192, 256, "max", 0, 2),
    "5a": (352, 192, 320, 160, 224, "avg", 128, 1),
    "5b": (352, 192, 320, 192, 224, "max", 128, 1),
}
# Output grid and channels at 224. The printed output column says 576 for 4c/4d and 1024 for 4e;
# the branch columns add up to 608 and 1056 (see BN_INCEPTION_SPECS).
BN_INCEPTION_OUTPUTS = {
    "3a": (256, 28), "3b": (320, 28), "3c": (576, 14), "4a": (576, 14), "4b": (576, 14),
    "4c": (608, 14), "4d": (608, 14), "4e": (1056, 7), "5a": (1024, 7), "5b": (1024, 7),
}  # fmt: skip


def test_bn_inception_table_is_figure_5() -> None:
    assert {k: tuple(v) for k, v in BN_INCEPTION_SPECS.items()} == FIGURE_5


def test_bn_inception_grids_and_channels_at_224() -> None:
    model = meta_model("bn_inception", BNInception).eval()
    shapes: dict[str, tuple[int, int]] = {}
    for key in FIGURE_5:
        getattr(model, f"inception{key}").register_forward_hook(
            lambda m, i, o, key=key: shapes.__setitem__(key, (o.shape[1], o.shape[2]))
        )
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert shapes == BN_INCEPTION_OUTPUTS


def test_bn_inception_has_bn_before_every_relu_and_no_5x5() -> None:
    model = meta_model("bn_inception", BNInception)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert all(c.kernel_size in ((1, 1), (3, 3)) for c in convs[1:])  # conv1 is the 7x7 stem
    assert convs[0].kernel_size == (7, 7) and convs[0].stride == (2, 2)
    assert all(c.bias is None for c in convs)  # BN's shift replaces the bias
    units = [m for m in model.modules() if isinstance(m, ConvBNReLU)]
    assert len(units) == len(convs)
    assert all(isinstance(u.bn, nn.BatchNorm2d) and isinstance(u.relu, nn.ReLU) for u in units)
    assert not any("aux" in n for n, _ in model.named_modules())  # Figure 5 lists none


def test_bn_inception_params_by_hand_and_macs() -> None:
    # Each conv-BN unit: in * k * k * out weights + 2 * out BN; the stem, then Figure 5's rows.
    def unit(c_in: int, c_out: int, k: int) -> int:
        return c_in * k * k * c_out + 2 * c_out

    total, c = unit(3, 64, 7) + unit(64, 64, 1) + unit(64, 192, 3), 192
    for c1, r3, c3, rd, d3, _, proj, _ in FIGURE_5.values():
        total += (unit(c, c1, 1) if c1 else 0) + unit(c, r3, 1) + unit(r3, c3, 3)
        total += (
            unit(c, rd, 1) + unit(rd, d3, 3) + unit(d3, d3, 3) + (unit(c, proj, 1) if proj else 0)
        )
        c = c1 + c3 + d3 + (proj or c)
    total += (c + 1) * 1000  # fc
    info = model_info("bn_inception")
    assert total == info.params == count_params(meta_model("bn_inception", BNInception))
    assert count_macs(meta_model("bn_inception", BNInception), info.input_size) == info.macs


def _conv_bn_relu(x: Tensor, unit: ConvBNReLU) -> Tensor:
    conv, bn = unit.conv, unit.bn
    assert bn.running_mean is not None and bn.running_var is not None
    y = F.conv2d(x, conv.weight, None, conv.stride, conv.padding)
    return F.relu(F.batch_norm(y, bn.running_mean, bn.running_var, bn.weight, bn.bias, eps=bn.eps))


@pytest.mark.parametrize("key", ["3c", "4a", "5b"])  # stride-2 pass-through, avg + proj, max + proj
def test_bn_inception_module_matches_functional_reference(key: str) -> None:
    model = create_model("bn_inception").eval()
    _scramble_(model)
    module = getattr(model, f"inception{key}")
    spec = BN_INCEPTION_SPECS[key]
    c_in = module.branch2[0].conv.in_channels
    x = torch.randn(1, c_in, 9, 7)  # odd sizes: every branch must give ceil(H / stride)
    s = spec.stride
    with torch.no_grad():
        branches = []
        if module.branch1 is not None:
            branches.append(_conv_bn_relu(x, module.branch1))
        branches.append(_conv_bn_relu(_conv_bn_relu(x, module.branch2[0]), module.branch2[1]))
        d = x
        for unit in module.branch3:
            d = _conv_bn_relu(d, unit)
        branches.append(d)
        pooled = F.avg_pool2d(x, 3, s, 1) if spec.pool == "avg" else F.max_pool2d(x, 3, s, 1)
        branches.append(_conv_bn_relu(pooled, module.branch4[1]) if spec.pool_proj else pooled)
        reference = torch.cat(branches, 1)
        _assert_same(module(x), reference)
    assert reference.shape[1:] == (spec.out_channels(c_in), -(-9 // s), -(-7 // s))


def test_bn_inception_trains_on_cifar_shaped_input() -> None:
    model = create_model("bn_inception", num_classes=10)
    assert isinstance(model.dropout, nn.Dropout) and model.dropout.p == 0.0  # sec. 4.2.1
    assert_trains(model, torch.randn(8, 3, 32, 32), torch.arange(8) % 10, steps=6)
