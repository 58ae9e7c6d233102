"""Tests every registered model, so a new model is covered the moment it is registered."""

from __future__ import annotations

import functools
from typing import Any

import pytest
import torch
from torch import Tensor

from _helpers import count_params, heavy_models, logits
from cnnzoo import ClassifierModel, create_model, list_models, model_info

ALL = list_models()
TORCHVISION = [n for n in ALL if model_info(n).torchvision]
HEAVY = set(heavy_models())


@functools.cache
def _meta(name: str) -> ClassifierModel:
    """The default build on the meta device (no memory, no init), shared by the read-only tests:
    the deepest nets take seconds to build even there."""
    with torch.device("meta"):
        model = create_model(name)
    assert isinstance(model, ClassifierModel)
    return model


def _mark(names: list[str]) -> list[Any]:
    return [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n for n in names]


# Published parameter counts, independent of the registry so a wrong metadata entry is caught too.
# Sources: torchvision 0.28 docs / weights metadata (tests/data/published_numbers.md, the JSON's
# num_params); LeCun et al. 1998 sec. II-B (lenet5: 60,000); computed and cross-checked with
# torchinfo (published_numbers.md: lenet5_modern, alexnet_original, vgg16_c, googlenet_original,
# CIFAR ResNets option A, He et al. 2015 sec. 4.2).
PUBLISHED_PARAMS = {
    "lenet5": 60_000,
    "lenet5_modern": 61_706,
    "alexnet": 61_100_840,
    "alexnet_original": 60_965_224,
    "vgg11": 132_863_336,
    "vgg11_bn": 132_868_840,
    "vgg13": 133_047_848,
    "vgg13_bn": 133_053_736,
    "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992,
    "vgg19": 143_667_240,
    "vgg19_bn": 143_678_248,
    "vgg16_c": 133_638_952,
    "googlenet": 13_004_888,  # with aux heads (torchvision's default build); 6,624,904 without
    "inception_v3": 27_161_264,  # with aux head; 23,834,568 without
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "resnet101": 44_549_160,
    "resnet152": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,  # torchvision docs
    "wide_resnet50_2": 68_883_240,
    "wide_resnet101_2": 126_886_696,  # torchvision docs
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
    # He et al. 2016 (Identity Mappings), sec. 4: "1.7M" and "10.2M"; exact counts computed
    # (tests/models/test_preact_resnet.py checks the rounding and why the 1001's differs).
    "preact_resnet164": 1_703_258,
    "preact_resnet1001": 10_327_706,
    # Computed from Zeiler & Fergus 2013 Fig. 3 and Ioffe & Szegedy 2015 Figure 5 (the papers
    # print no totals; published_numbers.md).
    "zfnet": 62_357_608,
    "bn_inception": 11_285_224,
}


def _all_outputs(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    return [t for t in output if isinstance(t, Tensor)]


@pytest.mark.parametrize("name", ALL)
def test_param_count_matches_metadata(name: str) -> None:
    info = model_info(name)
    model = _meta(name)  # no memory, no init: counting is free even for VGG-19
    assert count_params(model) == info.params, info.source
    if name in PUBLISHED_PARAMS:
        assert info.params == PUBLISHED_PARAMS[name]
    assert info.source, "every published number names its source"


@pytest.mark.parametrize("name", ALL)
def test_model_describes_itself(name: str) -> None:
    info = model_info(name)
    model = _meta(name)
    assert isinstance(model, ClassifierModel)
    assert model.model_name == name
    assert model.num_classes == info.num_classes
    assert model.in_channels == info.input_size[0]
    assert model.min_input_size == info.min_size
    if info.fixed_size:
        assert model.fixed_input_size == info.input_size[1:] == info.min_size
    else:
        assert model.fixed_input_size is None
    modules = dict(model.named_modules())
    assert model.feature_info, "every model lists its stages"
    for feature in model.feature_info:
        assert feature.module in modules, feature
    assert model.get_classifier() in modules.values()
    assert info.summary and info.paper.year >= 1989


@pytest.mark.parametrize("name", _mark(ALL))
def test_default_build_forward_shape_and_feature_channels(name: str) -> None:
    info = model_info(name)
    model = create_model(name).eval()
    channels: dict[str, int] = {}
    modules = dict(model.named_modules())
    for feature in model.feature_info:
        modules[feature.module].register_forward_hook(
            lambda m, i, o, key=feature.module: channels.__setitem__(key, o.shape[1])
        )
    size = info.min_size if not info.fixed_size else info.input_size[1:]
    size = (max(size[0], 32), max(size[1], 32)) if not info.fixed_size else size
    with torch.no_grad():
        out = model(torch.randn(1, info.input_size[0], *size))
    assert isinstance(out, Tensor), "eval mode returns plain logits"
    assert out.shape == (1, info.num_classes)
    assert channels == {f.module: f.channels for f in model.feature_info}


@pytest.mark.parametrize("name", _mark(ALL))
def test_other_classes_one_channel_train_step_reaches_every_parameter(name: str) -> None:
    info = model_info(name)
    model = create_model(name, num_classes=7, in_channels=1).train()
    # Aux heads in training mode need more room than the main path: use the default size there.
    # Elsewhere at least 64x64: at 1x1 with batch 2 every BN sees two values per channel, and
    # through 150 such layers (ResNet-152) the gradients overflow, as they would in torchvision.
    has_aux = any("aux" in n.lower() for n, _ in model.named_children())
    size = info.input_size[1:] if (info.fixed_size or has_aux) else (64, 64)
    size = (max(size[0], info.min_size[0]), max(size[1], info.min_size[1]))
    x = torch.randn(2, 1, *size)
    outputs = _all_outputs(model(x))
    assert all(o.shape == (2, 7) for o in outputs), [tuple(o.shape) for o in outputs]
    sum(o.square().mean() for o in outputs).backward()  # type: ignore[union-attr]
    for pname, p in model.named_parameters():
        assert p.grad is not None, f"{pname} got no gradient"
        assert torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, f"{pname} got an all-zero gradient"


@pytest.mark.parametrize("name", _mark(ALL))
def test_smallest_input_works_and_one_pixel_less_is_a_clear_error(name: str) -> None:
    info = model_info(name)
    model = create_model(name).eval()
    c = info.input_size[0]
    h, w = info.min_size
    with torch.no_grad():
        assert logits(model(torch.randn(1, c, h, w))).shape == (1, info.num_classes)
        for smaller in ((h - 1, w), (h, w - 1)):
            if min(smaller) < 1:
                continue
            given = f"{smaller[0]}x{smaller[1]}"
            with pytest.raises(ValueError, match=rf"^{name} .*{h}x{w}.*{given}"):
                model(torch.randn(1, c, *smaller))
            # Without the check a layer really fails (or the head gets the wrong size):
            # the declared minimum is the true one.
            with pytest.raises(RuntimeError):
                model.forward_head(model.forward_features(torch.randn(1, c, *smaller)))


@pytest.mark.parametrize("name", _mark(ALL))
def test_wrong_channels_and_rank_are_clear_errors(name: str) -> None:
    info = model_info(name)
    model = _meta(name)
    c, h, w = info.input_size
    with pytest.raises(ValueError, match=rf"{name} was built for {c} input channels, got {c + 1}"):
        model(torch.empty(1, c + 1, h, w, device="meta"))
    with pytest.raises(ValueError, match=r"expects a 4-D input"):
        model(torch.empty(c, h, w, device="meta"))


@pytest.mark.parametrize("name", _mark(ALL))
def test_reset_classifier(name: str) -> None:
    info = model_info(name)
    # float64 (issue #12: a .double() ResNet got a float32 fc and its forward failed).
    model = create_model(name).double().eval()
    model.reset_classifier(3)
    assert model.num_classes == 3
    head = model.get_classifier()
    assert any(m is head for m in model.modules())
    size = info.input_size[1:] if info.fixed_size else info.min_size
    x = torch.randn(1, info.input_size[0], *size, dtype=torch.float64)
    with torch.no_grad():
        out = logits(model(x))
    assert out.shape == (1, 3) and out.dtype == torch.float64


@pytest.mark.parametrize("name", ALL)
def test_reset_classifier_keeps_every_tensor_on_the_models_device_and_dtype(name: str) -> None:
    # Every registered model (aux heads included): the new layers are built where the old ones
    # lived, in their dtype. The meta device stands for any non-default device (a default-built
    # layer would land on the CPU) and costs nothing even for VGG-19.
    with torch.device("meta"):
        model = create_model(name)
    model = model.to(torch.float64)
    model.reset_classifier(5)
    for tensor_name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert tensor.device.type == "meta", f"{tensor_name} left the model's device"
        if tensor.is_floating_point():
            assert tensor.dtype == torch.float64, f"{tensor_name} is {tensor.dtype}"


@pytest.mark.parametrize("name", TORCHVISION)
def test_torchvision_state_dict_keys_and_shapes(
    name: str, torchvision_state_dicts: dict[str, Any]
) -> None:
    with torch.device("meta"):
        model = create_model(name)
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    if name in torchvision_state_dicts:
        reference = torchvision_state_dicts[name]
        assert ours == reference["state_dict"]
        assert count_params(model) == reference["num_params"]
    else:
        # resnext101_32x8d and wide_resnet101_2 are not in the reference file: their keys follow
        # the 101-layer pattern of resnet101 with the same shapes apart from the widths.
        base = [k for k, _ in torchvision_state_dicts["resnet101"]["state_dict"]]
        assert [k for k, _ in ours] == base
