"""FeatureExtractor: stage outputs against feature_info, renaming, functional results, modes."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from cnnzoo import FeatureExtractor, create_model, list_models, model_info

ALL = list_models()
SLOW_TO_TRACE = {"resnet1202", "preact_resnet1001"}  # 1,000+ convs: seconds to trace


def _stage_shapes(name: str, height: int, width: int) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # shapes only: no memory, no arithmetic
        model = create_model(name)
        extractor = FeatureExtractor(model)
        outputs = extractor(torch.empty(1, model.in_channels, height, width))
    return {key: tuple(value.shape) for key, value in outputs.items()}


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_TO_TRACE else n for n in ALL]
)
def test_stage_outputs_match_feature_info(name: str) -> None:
    info = model_info(name)
    _, height, width = info.input_size
    with torch.device("meta"):
        stages = create_model(name).feature_info
    shapes = _stage_shapes(name, height, width)
    assert list(shapes) == [stage.module for stage in stages]
    for stage, shape in zip(stages, shapes.values(), strict=True):
        assert shape[1] == stage.channels, stage
        assert shape[2] * stage.reduction <= height and shape[3] * stage.reduction <= width
    if info.fixed_size:
        return
    # `reduction` is the stage's total stride: `step` more input pixels (a multiple of every
    # stage's stride) give exactly step / reduction more output pixels, whatever the padding.
    step = max(stage.reduction for stage in stages)
    larger = _stage_shapes(name, height + step, width + 2 * step)
    for stage, small, large in zip(stages, shapes.values(), larger.values(), strict=True):
        assert large[2] - small[2] == step // stage.reduction, stage
        assert large[3] - small[3] == 2 * step // stage.reduction, stage


def _resnet18_stages(model: nn.Module, x: Tensor) -> list[Tensor]:
    x = model.maxpool(model.relu(model.bn1(model.conv1(x))))
    outputs = []
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        outputs.append(x)
    return outputs


def test_return_layers_renames_and_stops_early() -> None:
    model = create_model("resnet18").eval()
    extractor = FeatureExtractor(model, return_layers={"layer1": "c2", "layer3": "c4"})
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        outputs = extractor(x)
        c2, _, c4, _ = _resnet18_stages(model, x)
    assert list(outputs) == ["c2", "c4"]
    assert torch.equal(outputs["c2"], c2) and torch.equal(outputs["c4"], c4)
    modules = dict(extractor.named_modules())
    assert "body.layer3" in modules and "body.layer4" not in modules and "body.fc" not in modules
    assert [info.module for info in extractor.feature_info] == ["layer1", "layer3"]


def test_functional_results_by_name() -> None:
    model = create_model("resnet18").eval()
    extractor = FeatureExtractor(model, ["layer1.0.add", "flatten"])
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        outputs = extractor(x)
        pooled = model.forward_head(model.forward_features(x), pre_logits=True)
    assert torch.equal(outputs["flatten"], pooled)
    assert outputs["layer1.0.add"].shape == (1, 64, 16, 16)
    # The sum before the block's final ReLU, which is in place: the extractor must keep a copy
    # or the ReLU (still needed on the way to `flatten`) would overwrite it.
    assert outputs["layer1.0.add"].min() < 0


def test_layers_keep_their_own_train_mode_and_share_weights() -> None:
    model = create_model("resnet20")
    extractor = FeatureExtractor(model, {"layer2": "mid"})
    x = torch.randn(4, 3, 32, 32)
    extractor.train()
    train_out = extractor(x)["mid"]
    train_out.sum().backward()
    assert model.conv1.weight.grad is not None  # the extractor's layers are the model's
    extractor.eval()
    with torch.no_grad():
        eval_out = extractor(x)["mid"]
    assert not torch.allclose(train_out, eval_out)  # batch statistics vs running statistics


def test_errors() -> None:
    model = create_model("resnet18")
    with pytest.raises(ValueError, match=r"no layer or operation named 'layer0'.*did you mean"):
        FeatureExtractor(model, ["layer0"])
    with pytest.raises(ValueError, match="share an output name"):
        FeatureExtractor(model, {"layer1": "x", "layer2": "x"})
    with pytest.raises(ValueError, match="publishes no feature_info"):
        FeatureExtractor(nn.Sequential(nn.Conv2d(3, 3, 1)))
    with pytest.raises(ValueError, match="built for 3 input channels, got 1"):
        FeatureExtractor(model)(torch.randn(1, 1, 64, 64))
