"""AlexNet: torchvision's one-GPU variant and the 2012 paper's network.

References: Krizhevsky, Sutskever, Hinton 2012 (sec. 3.3 LRN, 3.5 layer table, 4.2 dropout,
5 init); torchvision 0.28's AlexNet (docs: 61,100,840 params, 0.714 GFLOPS);
tests/data/published_numbers.md for the computed numbers of ``alexnet_original``.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import (
    adaptive_avg_pool,
    assert_trains,
    count_macs,
    count_macs_by_hooks,
    count_params,
    meta_model,
)
from cnnzoo import create_model, model_info
from cnnzoo.models.alexnet import AlexNet, AlexNetOriginal, ZFNet


def torchvision_alexnet_reference(sd: dict[str, Tensor], x: Tensor, train: bool = False) -> Tensor:
    """torchvision's AlexNet forward from a state_dict, layer by layer as its docs describe:
    conv 11/4 p2, pool 3/2, conv 5 p2, pool, conv 3 p1 x3, pool, adaptive avg 6x6, and
    dropout -> fc6 -> ReLU -> dropout -> fc7 -> ReLU -> fc8."""
    x = F.max_pool2d(
        F.relu(F.conv2d(x, sd["features.0.weight"], sd["features.0.bias"], 4, 2)), 3, 2
    )
    x = F.max_pool2d(
        F.relu(F.conv2d(x, sd["features.3.weight"], sd["features.3.bias"], 1, 2)), 3, 2
    )
    x = F.relu(F.conv2d(x, sd["features.6.weight"], sd["features.6.bias"], 1, 1))
    x = F.relu(F.conv2d(x, sd["features.8.weight"], sd["features.8.bias"], 1, 1))
    x = F.relu(F.conv2d(x, sd["features.10.weight"], sd["features.10.bias"], 1, 1))
    x = F.max_pool2d(x, 3, 2)
    x = adaptive_avg_pool(x, 6, 6).flatten(1)
    x = F.relu(
        F.linear(F.dropout(x, 0.5, train), sd["classifier.1.weight"], sd["classifier.1.bias"])
    )
    x = F.relu(
        F.linear(F.dropout(x, 0.5, train), sd["classifier.4.weight"], sd["classifier.4.bias"])
    )
    return F.linear(x, sd["classifier.6.weight"], sd["classifier.6.bias"])


@pytest.fixture(scope="module")
def tv_alexnet() -> AlexNet:
    torch.manual_seed(0)
    model = create_model("alexnet")
    assert isinstance(model, AlexNet)
    return model


@pytest.fixture(scope="module")
def paper_alexnet() -> AlexNetOriginal:
    torch.manual_seed(0)
    model = create_model("alexnet_original")
    assert isinstance(model, AlexNetOriginal)
    return model


def _meta_original(**kwargs: int) -> AlexNetOriginal:
    with torch.device("meta"):
        model = create_model("alexnet_original", **kwargs)
    assert isinstance(model, AlexNetOriginal)
    return model


# --- torchvision's AlexNet ---------------------------------------------------------------


def test_alexnet_matches_functional_reference_eval_and_train(tv_alexnet: AlexNet) -> None:
    # 255x127: pool5 is 7x3, so the adaptive 6x6 pool averages overlapping windows along H and
    # repeats cells along W; a height/width mix-up would show.
    x = torch.randn(1, 3, 255, 127)
    sd = tv_alexnet.state_dict()
    with torch.no_grad():
        tv_alexnet.eval()
        torch.testing.assert_close(tv_alexnet(x), torchvision_alexnet_reference(sd, x))
        # Same seed, same dropout masks only if the dropouts sit where torchvision has them
        # (on fc6's 9216 inputs and fc7's 4096 inputs).
        tv_alexnet.train()
        torch.manual_seed(1)
        ours = tv_alexnet(x)
        torch.manual_seed(1)
        torch.testing.assert_close(ours, torchvision_alexnet_reference(sd, x, train=True))
    tv_alexnet.eval()


def test_alexnet_has_pytorch_default_init(tv_alexnet: AlexNet) -> None:
    # torchvision's AlexNet keeps PyTorch's default init: weight and bias ~ U(+-1/sqrt(fan_in)).
    for name, module in tv_alexnet.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = 1 / math.sqrt(module.weight[0].numel())
            for tensor in (module.weight, module.bias):
                assert tensor.abs().max() <= bound, name
                assert tensor.abs().max() > 0.9 * bound, name  # not some narrower init
            # uniform(-b, b) has std b/sqrt(3)
            assert module.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.05)


def test_alexnet_dropout_option_and_head() -> None:
    with torch.device("meta"):
        model = create_model("alexnet", dropout=0.25, num_classes=10)
    assert isinstance(model, AlexNet)
    assert [type(m) for m in model.classifier] == [
        nn.Dropout, nn.Linear, nn.ReLU, nn.Dropout, nn.Linear, nn.ReLU, nn.Linear
    ]  # fmt: skip
    assert model.classifier[0].p == model.classifier[3].p == 0.25
    assert model.get_classifier() is model.classifier[6]
    features = model.forward_features(torch.empty(1, 3, 224, 224, device="meta"))
    assert features.shape == (1, 256, 6, 6)
    assert model.forward_head(features, pre_logits=True).shape == (1, 4096)
    assert model.forward_head(features).shape == (1, 10)


def test_alexnet_macs_round_to_published() -> None:
    with torch.device("meta"):
        model = create_model("alexnet")
    macs = count_macs_by_hooks(model, (3, 224, 224))
    assert macs == 714_188_480  # exact count
    assert round(macs / 1e9, 3) == 0.714 == round(model_info("alexnet").macs / 1e9, 3)  # tv docs


# --- the 2012 paper's AlexNet --------------------------------------------------------------


def test_lrn_reproduces_the_paper_formula_on_a_hand_computed_example() -> None:
    # Sec. 3.3: b_i = a_i / (k + alpha * sum_{j=max(0,i-n/2)}^{min(N-1,i+n/2)} a_j^2)^beta with
    # k=2, n=5, alpha=1e-4, beta=0.75. Channels a = 100, 200, 100, 100, 0, 300, so
    # alpha*a_j^2 = 1, 4, 1, 1, 0, 9 and the clipped 5-wide window sums are
    # i=0: 1+4+1 = 6      i=1: 1+4+1+1 = 7        i=2: 1+4+1+1+0 = 7
    # i=3: 4+1+1+0+9 = 15  i=4: 1+1+0+9 = 11 (a_4=0)  i=5: 1+0+9 = 10
    a = torch.tensor([100.0, 200.0, 100.0, 100.0, 0.0, 300.0]).reshape(1, 6, 1, 1)
    expected = torch.tensor(
        [100 / 8**0.75, 200 / 9**0.75, 100 / 9**0.75, 100 / 17**0.75, 0.0, 300 / 12**0.75]
    ).reshape(1, 6, 1, 1)
    model = _meta_original()
    for norm in (model.features.norm1, model.features.norm2):  # no parameters: runs on CPU
        torch.testing.assert_close(norm(a), expected)
    # The trap: PyTorch's alpha is divided by n, so passing the paper's 1e-4 is a different layer.
    naive = nn.LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)
    assert not torch.allclose(naive(a), expected, rtol=1e-2, atol=0)


def test_original_layer_order_follows_section_3() -> None:
    model = _meta_original()
    assert list(dict(model.features.named_children())) == [
        "conv1", "relu1", "norm1", "pool1",
        "conv2", "relu2", "norm2", "pool2",
        "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5",
    ]  # fmt: skip
    # Overlapping pooling (sec. 3.4): z=3, s=2.
    for pool in (model.features.pool1, model.features.pool2, model.features.pool5):
        assert isinstance(pool, nn.MaxPool2d)
        assert (pool.kernel_size, pool.stride) == (3, 2)
    # Dropout on the outputs of the two hidden fc layers (sec. 4.2), not on fc6's inputs.
    assert list(dict(model.classifier.named_children())) == [
        "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8"
    ]  # fmt: skip
    assert model.classifier.drop6.p == model.classifier.drop7.p == 0.5
    # Fig. 2: 55x55 after conv1, 27 after pool1, 13 after pool2, 6x6x256 into fc6.
    sizes = {}
    for name, module in model.features.named_children():
        module.register_forward_hook(lambda m, i, o, key=name: sizes.__setitem__(key, o.shape[1:]))
    model.forward_features(torch.empty(1, 3, 227, 227, device="meta"))
    assert sizes["conv1"] == (96, 55, 55)
    assert sizes["conv2"] == (256, 27, 27)
    assert sizes["conv3"] == sizes["conv4"] == (384, 13, 13)
    assert sizes["pool5"] == (256, 6, 6)


def test_original_224_from_the_text_only_works_with_padding() -> None:
    model = _meta_original()
    with pytest.raises(ValueError, match="227x227"):
        model(torch.empty(1, 3, 224, 224, device="meta"))
    # Bypassing the check: conv1 gives 54x54, pool5 5x5, and fc6 cannot take 6400 features.
    with pytest.raises(RuntimeError):
        model.forward_head(model.forward_features(torch.empty(1, 3, 224, 224, device="meta")))
    padded = F.pad(torch.empty(1, 3, 224, 224, device="meta"), (1, 2, 1, 2))
    assert model(padded).shape == (1, 1000)


def test_original_convs_are_grouped_like_the_two_gpus(paper_alexnet: AlexNetOriginal) -> None:
    shapes = {
        name: tuple(module.weight.shape)
        for name, module in paper_alexnet.features.named_children()
        if isinstance(module, nn.Conv2d)
    }
    # conv2, conv4, conv5 read only their own GPU's half of the maps; conv3 reads both (sec. 3.5).
    assert shapes == {
        "conv1": (96, 3, 11, 11),
        "conv2": (256, 48, 5, 5),
        "conv3": (384, 256, 3, 3),
        "conv4": (384, 192, 3, 3),
        "conv5": (256, 192, 3, 3),
    }
    # Really grouped: changing GPU 2's input maps leaves GPU 1's outputs untouched.
    conv2 = paper_alexnet.features.conv2
    x = torch.randn(1, 96, 9, 9)
    y = x.clone()
    y[:, 48:] += 1.0
    with torch.no_grad():
        out_x, out_y = conv2(x), conv2(y)
    torch.testing.assert_close(out_x[:, :128], out_y[:, :128])
    assert not torch.allclose(out_x[:, 128:], out_y[:, 128:])


def test_original_groups_1_connects_everything() -> None:
    model = _meta_original(groups=1)
    # published_numbers.md: 62,378,344 ungrouped (60,965,224 grouped).
    assert count_params(model) == 62_378_344
    assert count_params(_meta_original()) == 60_965_224
    assert model.features.conv2.weight.shape == (256, 96, 5, 5)
    assert model.features.conv5.weight.shape == (256, 384, 3, 3)


def test_original_paper_init(paper_alexnet: AlexNetOriginal) -> None:
    # Sec. 5: weights ~ N(0, 0.01); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere.
    bias_one = {"conv2", "conv4", "conv5", "fc6", "fc7"}
    layers = [*paper_alexnet.features.named_children(), *paper_alexnet.classifier.named_children()]
    seen = set()
    for name, module in layers:
        if not isinstance(module, (nn.Conv2d, nn.Linear)):
            continue
        seen.add(name)
        w = module.weight.detach()
        assert w.mean().abs() < 5 * 0.01 / math.sqrt(w.numel()) + 1e-6, name
        assert w.std().item() == pytest.approx(0.01, rel=0.05), name
        assert torch.all(module.bias == (1.0 if name in bias_one else 0.0)), name
    assert seen == {"conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7", "fc8"}


def test_original_reset_classifier_keeps_paper_init(paper_alexnet: AlexNetOriginal) -> None:
    try:
        paper_alexnet.reset_classifier(10)
        fc8 = paper_alexnet.get_classifier()
        assert fc8 is paper_alexnet.classifier.fc8
        assert isinstance(fc8, nn.Linear) and fc8.weight.shape == (10, 4096)
        assert fc8.weight.std().item() == pytest.approx(0.01, rel=0.05)  # sec. 5, not default
        assert torch.all(fc8.bias == 0)
    finally:
        paper_alexnet.reset_classifier(1000)  # the fixture is shared by the module's tests


def test_original_macs_exact() -> None:
    # Computed 0.724 GMACs (published_numbers.md); the registry holds the exact count.
    macs = count_macs_by_hooks(_meta_original(), (3, 227, 227))
    assert macs == model_info("alexnet_original").macs == 724_406_816
    assert round(macs / 1e9, 3) == 0.724


# --- ZFNet (Zeiler & Fergus 2013) -----------------------------------------------------------


def _zfnet(**kwargs: Any) -> ZFNet:
    return meta_model("zfnet", ZFNet, **kwargs)


def test_zfnet_maps_and_filters_follow_figure_3() -> None:
    # Fig. 3 at a 224 crop: layer 1 96@110 -> pool 55; layer 2 256@26 -> pool 13; layers 3-5
    # 384, 384, 256 @13; pool 6x6; fc 4096, 4096.
    model = _zfnet().eval()
    shapes: dict[str, tuple[int, ...]] = {}
    for name, module in model.features.named_children():
        module.register_forward_hook(
            lambda m, i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:]))
        )
    model(torch.empty(1, 3, 224, 224, device="meta"))
    assert {k: v for k, v in shapes.items() if k.startswith(("conv", "pool"))} == {
        "conv1": (96, 110, 110),
        "pool1": (96, 55, 55),
        "conv2": (256, 26, 26),
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
    }
    conv1, conv2 = model.features.conv1, model.features.conv2
    assert (conv1.kernel_size, conv1.stride) == ((7, 7), (2, 2))  # sec. 4.1: not 11x11/4
    assert (conv2.kernel_size, conv2.stride) == ((5, 5), (2, 2))
    assert all(m.groups == 1 for m in model.modules() if isinstance(m, nn.Conv2d))  # one GPU
    fcs = [m.out_features for m in model.classifier if isinstance(m, nn.Linear)]
    assert fcs == [4096, 4096, 1000]


def test_zfnet_pools_then_normalises_in_layers_1_and_2() -> None:
    # Fig. 3 (and sec. 3): conv -> relu -> max pool -> contrast normalisation.
    names = [name for name, _ in _zfnet().features.named_children()]
    assert names == [
        "conv1", "relu1", "pool1", "norm1",
        "conv2", "relu2", "pool2", "norm2",
        "conv3", "relu3", "conv4", "relu4", "conv5", "relu5", "pool5",
    ]  # fmt: skip


def test_zfnet_params_by_hand_and_macs() -> None:
    # (in * k * k + 1) * out per conv, (in + 1) * out per fc.
    convs = [(3, 7, 96), (96, 5, 256), (256, 3, 384), (384, 3, 384), (384, 3, 256)]
    fcs = [(256 * 6 * 6, 4096), (4096, 4096), (4096, 1000)]
    by_hand = sum((c * k * k + 1) * o for c, k, o in convs) + sum((i + 1) * o for i, o in fcs)
    assert by_hand == count_params(_zfnet()) == model_info("zfnet").params == 62_357_608
    assert count_macs(_zfnet(), (3, 224, 224)) == model_info("zfnet").macs


def _zfnet_reference(sd: dict[str, Tensor], x: Tensor) -> Tensor:
    """ZFNet's eval forward from its state_dict, written out from Fig. 3."""

    def lrn(t: Tensor) -> Tensor:  # AlexNet's sec. 3.3 constants (PyTorch's alpha / n form)
        return F.local_response_norm(t, 5, alpha=5e-4, beta=0.75, k=2.0)

    def conv(t: Tensor, name: str, stride: int, padding: int) -> Tensor:
        w, b = sd[f"features.{name}.weight"], sd[f"features.{name}.bias"]
        return F.relu(F.conv2d(t, w, b, stride, padding))

    x = lrn(F.max_pool2d(conv(x, "conv1", 2, 1), 3, 2, ceil_mode=True))
    x = lrn(F.max_pool2d(conv(x, "conv2", 2, 0), 3, 2, ceil_mode=True))
    x = conv(conv(conv(x, "conv3", 1, 1), "conv4", 1, 1), "conv5", 1, 1)
    x = adaptive_avg_pool(F.max_pool2d(x, 3, 2, ceil_mode=True), 6, 6).flatten(1)
    x = F.relu(F.linear(x, sd["classifier.fc6.weight"], sd["classifier.fc6.bias"]))
    x = F.relu(F.linear(x, sd["classifier.fc7.weight"], sd["classifier.fc7.bias"]))
    return F.linear(x, sd["classifier.fc8.weight"], sd["classifier.fc8.bias"])


def test_zfnet_matches_functional_reference() -> None:
    model = create_model("zfnet", num_classes=10).eval()
    with torch.no_grad():
        for p in model.parameters():  # O(1) activations, so a wrong layer shows
            p.copy_(torch.randn_like(p) / math.sqrt(p[0].numel() if p.dim() > 1 else 10))
        x = torch.randn(2, 3, 97, 83)  # pool5 3x2: the adaptive pool repeats cells
        torch.testing.assert_close(model(x), _zfnet_reference(model.state_dict(), x))


def test_zfnet_init_and_reset_follow_section_3() -> None:
    model = create_model("zfnet", num_classes=10)
    model.reset_classifier(7)
    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            assert module.weight.std().item() == pytest.approx(0.01, rel=0.1), name
            assert torch.all(module.bias == 0), name
    assert model.get_classifier().weight.shape == (7, 4096)


@pytest.mark.slow  # 58M parameters: each optimizer step costs seconds on a shared 2-core CPU
def test_zfnet_trains() -> None:
    # CIFAR-like colour input at 48x48 (the smallest it takes is 47). The paper's N(0, 0.01)
    # init starts slowly (the logits are ~0), so the bar is a 5% drop in four Adam steps.
    model = create_model("zfnet", num_classes=10, dropout=0.0)
    x, y = torch.randn(8, 3, 48, 48), torch.arange(8) % 10
    assert_trains(model, x, y, steps=4, lr=3e-4, factor=0.95)
