"""Inception v3 (``inception_v3``), torchvision's layout.

torchvision cannot be imported here, so "same function as torchvision" is shown against an
independent functional reference: each block type (InceptionA-E, the aux head) and the whole
forward recomputed from the state_dict with torch.nn.functional calls, following torchvision's
documented Inception3 (conv-BN(eps 1e-3)-ReLU units, unpadded "valid" stem convs and pools,
3x3/1 average pools with zero padding counted, the aux head on Mixed_6e). Generic checks (param
counts, shapes, gradients, min size, state_dict keys) live in test_all_models.py.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from _helpers import count_macs_by_hooks, count_params
from cnnzoo import create_model, model_info
from cnnzoo.layers import BasicConv2d, imagenet_to_unit_range
from cnnzoo.models.inception import (
    AUX_MIN_INPUT_SIZE,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
    InceptionOutputs,
)

State = dict[str, Tensor]


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


# --- functional reference: torchvision's Inception3, from its documented architecture ----------


def _cbr(
    x: Tensor, sd: State, p: str, stride: int = 1, padding: int | tuple[int, int] = 0
) -> Tensor:
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


def _avg3(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, 3, stride=1, padding=1)  # count_include_pad, as torchvision


def _ref_a(x: Tensor, sd: State, p: str) -> Tensor:
    b1 = _cbr(x, sd, f"{p}.branch1x1")
    b5 = _cbr(_cbr(x, sd, f"{p}.branch5x5_1"), sd, f"{p}.branch5x5_2", padding=2)
    b3 = _cbr(x, sd, f"{p}.branch3x3dbl_1")
    b3 = _cbr(b3, sd, f"{p}.branch3x3dbl_2", padding=1)
    b3 = _cbr(b3, sd, f"{p}.branch3x3dbl_3", padding=1)
    return torch.cat([b1, b5, b3, _cbr(_avg3(x), sd, f"{p}.branch_pool")], 1)


def _ref_b(x: Tensor, sd: State, p: str) -> Tensor:
    b3 = _cbr(x, sd, f"{p}.branch3x3", stride=2)
    d = _cbr(x, sd, f"{p}.branch3x3dbl_1")
    d = _cbr(d, sd, f"{p}.branch3x3dbl_2", padding=1)
    d = _cbr(d, sd, f"{p}.branch3x3dbl_3", stride=2)
    return torch.cat([b3, d, F.max_pool2d(x, 3, stride=2)], 1)


def _ref_c(x: Tensor, sd: State, p: str) -> Tensor:
    row, col = (0, 3), (3, 0)  # padding of the 1x7 and the 7x1 convs
    b1 = _cbr(x, sd, f"{p}.branch1x1")
    b7 = _cbr(x, sd, f"{p}.branch7x7_1")
    b7 = _cbr(b7, sd, f"{p}.branch7x7_2", padding=row)
    b7 = _cbr(b7, sd, f"{p}.branch7x7_3", padding=col)
    d = _cbr(x, sd, f"{p}.branch7x7dbl_1")
    for i, pad in ((2, col), (3, row), (4, col), (5, row)):
        d = _cbr(d, sd, f"{p}.branch7x7dbl_{i}", padding=pad)
    return torch.cat([b1, b7, d, _cbr(_avg3(x), sd, f"{p}.branch_pool")], 1)


def _ref_d(x: Tensor, sd: State, p: str) -> Tensor:
    b3 = _cbr(_cbr(x, sd, f"{p}.branch3x3_1"), sd, f"{p}.branch3x3_2", stride=2)
    b7 = _cbr(x, sd, f"{p}.branch7x7x3_1")
    b7 = _cbr(b7, sd, f"{p}.branch7x7x3_2", padding=(0, 3))
    b7 = _cbr(b7, sd, f"{p}.branch7x7x3_3", padding=(3, 0))
    b7 = _cbr(b7, sd, f"{p}.branch7x7x3_4", stride=2)
    return torch.cat([b3, b7, F.max_pool2d(x, 3, stride=2)], 1)


def _ref_e(x: Tensor, sd: State, p: str) -> Tensor:
    b1 = _cbr(x, sd, f"{p}.branch1x1")
    t = _cbr(x, sd, f"{p}.branch3x3_1")
    b3 = torch.cat(
        [
            _cbr(t, sd, f"{p}.branch3x3_2a", padding=(0, 1)),
            _cbr(t, sd, f"{p}.branch3x3_2b", padding=(1, 0)),
        ],
        1,
    )
    u = _cbr(_cbr(x, sd, f"{p}.branch3x3dbl_1"), sd, f"{p}.branch3x3dbl_2", padding=1)
    d = torch.cat(
        [
            _cbr(u, sd, f"{p}.branch3x3dbl_3a", padding=(0, 1)),
            _cbr(u, sd, f"{p}.branch3x3dbl_3b", padding=(1, 0)),
        ],
        1,
    )
    return torch.cat([b1, b3, d, _cbr(_avg3(x), sd, f"{p}.branch_pool")], 1)


def _ref_aux(x: Tensor, sd: State, p: str = "AuxLogits") -> Tensor:
    x = _cbr(_cbr(F.avg_pool2d(x, 5, stride=3), sd, f"{p}.conv0"), sd, f"{p}.conv1")
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd[f"{p}.fc.weight"], sd[f"{p}.fc.bias"])


def _ref_inception_v3(x: Tensor, sd: State) -> Tensor:
    x = _cbr(x, sd, "Conv2d_1a_3x3", stride=2)
    x = _cbr(x, sd, "Conv2d_2a_3x3")
    x = _cbr(x, sd, "Conv2d_2b_3x3", padding=1)
    x = F.max_pool2d(x, 3, stride=2)
    x = _cbr(x, sd, "Conv2d_3b_1x1")
    x = _cbr(x, sd, "Conv2d_4a_3x3")
    x = F.max_pool2d(x, 3, stride=2)
    for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
        x = _ref_a(x, sd, name)
    x = _ref_b(x, sd, "Mixed_6a")
    for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
        x = _ref_c(x, sd, name)
    x = _ref_d(x, sd, "Mixed_7a")
    x = _ref_e(x, sd, "Mixed_7b")
    x = _ref_e(x, sd, "Mixed_7c")
    x = F.adaptive_avg_pool2d(x, 1).flatten(1)
    return F.linear(x, sd["fc.weight"], sd["fc.bias"])


@pytest.fixture(scope="module")
def default_v3() -> Inception3:
    """The default build with torchvision's init (read-only: tests copy it before changing it)."""
    torch.manual_seed(0)
    model = create_model("inception_v3")
    assert isinstance(model, Inception3)
    return model


@pytest.fixture(scope="module")
def scrambled_v3(default_v3: Inception3) -> Inception3:
    torch.manual_seed(1)
    model = _scramble_(copy.deepcopy(default_v3))
    assert isinstance(model, Inception3)
    return model


def test_whole_forward_matches_functional_reference(scrambled_v3: Inception3) -> None:
    x = torch.randn(2, 3, 75, 75)  # the smallest input: every map is as small as it gets
    with torch.no_grad():
        _assert_same(scrambled_v3(x), _ref_inception_v3(x, scrambled_v3.state_dict()))


@pytest.mark.parametrize(
    ("module", "block_type", "reference", "in_shape"),
    [
        ("Mixed_5c", InceptionA, _ref_a, (256, 9, 9)),
        ("Mixed_6a", InceptionB, _ref_b, (288, 9, 9)),
        ("Mixed_6d", InceptionC, _ref_c, (768, 9, 9)),
        ("Mixed_7a", InceptionD, _ref_d, (768, 9, 9)),
        ("Mixed_7c", InceptionE, _ref_e, (2048, 5, 5)),
        ("AuxLogits", InceptionAux, _ref_aux, (768, 17, 17)),
    ],
)
def test_every_block_type_matches_functional_reference(
    scrambled_v3: Inception3,
    module: str,
    block_type: type[nn.Module],
    reference: Any,
    in_shape: tuple[int, int, int],
) -> None:
    block = getattr(scrambled_v3, module)
    assert type(block) is block_type
    x = torch.randn(2, *in_shape)
    with torch.no_grad():
        _assert_same(block(x), reference(x, scrambled_v3.state_dict(), module))


def test_training_output_is_torchvision_namedtuple_with_aux_on_mixed_6e() -> None:
    with torch.device("meta"):  # shapes and wiring only: no arithmetic needed
        model = create_model("inception_v3").train()
        taps: dict[str, Any] = {}
        for name in ("Mixed_6e", "AuxLogits"):
            getattr(model, name).register_forward_hook(
                lambda m, i, o, name=name: taps.__setitem__(name, (i[0], o))
            )
        out = model(torch.empty(2, 3, 299, 299))
        assert type(out).__name__ == "InceptionOutputs"
        assert isinstance(out, InceptionOutputs)
        assert out._fields == ("logits", "aux_logits")
        assert out.logits.shape == (2, 1000)
        assert out.aux_logits is not None and out.aux_logits.shape == (2, 1000)
        assert taps["AuxLogits"][0] is taps["Mixed_6e"][1]
        assert out.aux_logits is taps["AuxLogits"][1]

        model.eval()
        assert isinstance(model(torch.empty(1, 3, 299, 299)), Tensor)
        assert isinstance(model(torch.empty(1, 3, 75, 75)), Tensor)


def test_aux_head_needs_299_in_training_and_says_so() -> None:
    assert AUX_MIN_INPUT_SIZE == (299, 299)
    with torch.device("meta"):
        model = create_model("inception_v3").train()
        assert isinstance(model(torch.empty(2, 3, 299, 300)), InceptionOutputs)
        for shape in ((298, 299), (299, 298)):
            with pytest.raises(ValueError, match=r"inception_v3 .*299x299.*aux_logits=False"):
                model(torch.empty(2, 3, *shape))
        # Without the check, the aux head really fails: 298 gives a 16x16 Mixed_6e map, pooled
        # 5x5/3 to 4x4, too small for its 5x5 conv.
        sizes: list[int] = []
        model.Mixed_6e.register_forward_hook(lambda m, i, o: sizes.append(o.shape[-1]))
        model.forward_features(torch.empty(2, 3, 298, 298))
        assert sizes == [16]
        assert model.AuxLogits is not None
        with pytest.raises(RuntimeError):
            model.AuxLogits(torch.empty(2, 768, 16, 16))
        # Without the aux head, training works down to the model's minimum.
        plain = create_model("inception_v3", aux_logits=False).train()
        assert isinstance(plain(torch.empty(2, 3, 75, 75)), Tensor)


def test_without_aux_head_keys_lose_auxlogits(torchvision_state_dicts: dict[str, Any]) -> None:
    with torch.device("meta"):
        model = create_model("inception_v3", aux_logits=False)
    assert model.AuxLogits is None
    reference = [
        [k, shape]
        for k, shape in torchvision_state_dicts["inception_v3"]["state_dict"]
        if not k.startswith("AuxLogits.")
    ]
    assert [[k, list(v.shape)] for k, v in model.state_dict().items()] == reference
    assert count_params(model) == 23_834_568  # torchvision docs: inception_v3 without the aux head


def test_transform_input_hand_example_and_placement(scrambled_v3: Inception3) -> None:
    # Raw pixel values v, ImageNet-normalised, come out as (v - 0.5) / 0.5: -1, 0, 1.
    mean, std = torch.tensor([0.485, 0.456, 0.406]), torch.tensor([0.229, 0.224, 0.225])
    raw = torch.tensor([0.0, 0.5, 1.0])
    normalised = ((raw[None, :] - mean[:, None]) / std[:, None])[None, :, :, None]  # (1,3,3,1)
    expected = torch.tensor([-1.0, 0.0, 1.0]).expand(1, 3, 3)[..., None]
    torch.testing.assert_close(imagenet_to_unit_range(normalised), expected, rtol=0, atol=1e-6)

    transformed = copy.deepcopy(scrambled_v3)
    transformed.transform_input = True
    x = torch.randn(1, 3, 75, 75)
    with torch.no_grad():
        torch.testing.assert_close(transformed(x), scrambled_v3(imagenet_to_unit_range(x)))
    with pytest.raises(ValueError, match="in_channels=3"):
        create_model("inception_v3", in_channels=4, transform_input=True)


def test_torchvision_init_including_its_aux_stddev_quirk(default_v3: Inception3) -> None:
    model = default_v3
    assert model.AuxLogits is not None
    # torchvision tags AuxLogits.conv1 (a BasicConv2d) with stddev 0.01, but its init loop only
    # reads the tag on nn.Conv2d / nn.Linear: the conv really gets the default 0.1.
    assert model.AuxLogits.conv1.conv.weight.std().item() == pytest.approx(0.1, rel=0.02)
    assert model.AuxLogits.fc.weight.std().item() == pytest.approx(0.001, rel=0.02)
    assert model.fc.weight.std().item() == pytest.approx(0.1, rel=0.02)
    body = torch.cat([m.weight.flatten() for m in model.modules() if isinstance(m, nn.Conv2d)])
    assert body.std().item() == pytest.approx(0.1, rel=0.01)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 96 and all(bn.eps == 1e-3 for bn in bns)
    assert all(bool((bn.weight == 1).all() and (bn.bias == 0).all()) for bn in bns)
    assert all(m.bias is None for m in model.modules() if isinstance(m, nn.Conv2d))


def test_constructor_arguments() -> None:
    class MyConv(BasicConv2d):
        pass

    blocks = [MyConv, InceptionA, InceptionB, InceptionC, InceptionD, InceptionE, InceptionAux]
    with torch.device("meta"):
        model = create_model("inception_v3", inception_blocks=blocks, dropout=0.3, in_channels=1)
        assert isinstance(model.Conv2d_1a_3x3, MyConv) and isinstance(model.Conv2d_4a_3x3, MyConv)
        assert model.Conv2d_1a_3x3.conv.in_channels == 1
        assert model.dropout.p == 0.3
        with pytest.raises(ValueError, match="inception_blocks"):
            create_model("inception_v3", inception_blocks=blocks[:6])
        defaults = create_model("inception_v3")
    assert defaults.dropout.p == 0.5 and defaults.aux_logits and not defaults.transform_input


def test_macs_and_stage_reductions() -> None:
    info = model_info("inception_v3")
    with torch.device("meta"):
        model = create_model("inception_v3")
        sizes: dict[str, int] = {}
        modules = dict(model.named_modules())
        for f in model.feature_info:
            modules[f.module].register_forward_hook(
                lambda m, i, o, key=f.module: sizes.__setitem__(key, o.shape[-1])
            )
        macs = count_macs_by_hooks(model, info.input_size)
    assert round(macs / 1e9, 3) == round(info.macs / 1e9, 3) == 5.713  # torchvision: 5.713 G
    # Unpadded layers make the maps 147, 71, 35, 17, 8: the nominal reductions 2 ... 32.
    assert sizes == {
        "Conv2d_2b_3x3": 147,
        "Conv2d_4a_3x3": 71,
        "Mixed_5d": 35,
        "Mixed_6e": 17,
        "Mixed_7c": 8,
    }
    assert {k: 2 ** round(math.log2(299 / v)) for k, v in sizes.items()} == {
        f.module: f.reduction for f in model.feature_info
    }


def test_reset_classifier_also_resizes_the_aux_head() -> None:
    with torch.device("meta"):
        model = create_model("inception_v3")
        model.reset_classifier(5)
        out = model.train()(torch.empty(2, 3, 299, 299))
    assert isinstance(out, InceptionOutputs)
    assert [t.shape for t in out] == [(2, 5), (2, 5)]
