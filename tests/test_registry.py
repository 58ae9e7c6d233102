from __future__ import annotations

from collections.abc import Iterator

import pytest
from torch import nn

from cnnzoo import registry
from cnnzoo.registry import Paper, create_model, list_models, model_info, register_model

PAPER = Paper(title="A test", authors="Nobody", year=2000, link="https://example.invalid")


@pytest.fixture
def scratch_name() -> Iterator[str]:
    name = "zz_test_model"
    yield name
    registry._REGISTRY.pop(name, None)


def _register(name: str) -> None:
    @register_model(
        name=name,
        family="test",
        paper=PAPER,
        input_size=(3, 8, 8),
        min_size=(1, 1),
        params=4,
        macs=None,
        source="test",
    )
    def builder(*, num_classes: int = 3, in_channels: int = 3, bias: bool = True) -> nn.Module:
        """A linear layer standing in for a model."""
        return nn.Linear(in_channels, num_classes, bias=bias)


def test_registered_metadata_is_kept(scratch_name: str) -> None:
    _register(scratch_name)
    info = model_info(scratch_name)
    assert info.family == "test" and info.params == 4 and info.input_size == (3, 8, 8)
    assert info.summary == "A linear layer standing in for a model."
    assert info.num_classes == 3


def test_duplicate_name_raises(scratch_name: str) -> None:
    _register(scratch_name)
    with pytest.raises(ValueError, match="already registered"):
        _register(scratch_name)


def test_none_kwargs_are_dropped(scratch_name: str) -> None:
    _register(scratch_name)
    model = create_model(scratch_name, num_classes=None, in_channels=None, bias=None)
    assert isinstance(model, nn.Linear)
    assert (model.in_features, model.out_features, model.bias is not None) == (3, 3, True)
    model = create_model(scratch_name, num_classes=7, bias=False)
    assert isinstance(model, nn.Linear)
    assert (model.out_features, model.bias) == (7, None)


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(ValueError, match=r"unknown model 'resnet5'.*did you mean.*resnet50"):
        create_model("resnet5")
    with pytest.raises(ValueError, match=r"unknown model 'vgg16bn'.*vgg16_bn"):
        model_info("vgg16bn")


def test_unknown_name_without_close_match_points_to_list() -> None:
    with pytest.raises(ValueError, match="see `cnnzoo list`"):
        create_model("transformer_xxl_9000")


def test_list_models_pattern_and_order() -> None:
    everything = list_models()
    assert everything == sorted(everything)
    assert len(everything) == len(set(everything)) >= 30
    vggs = list_models("vgg*_bn")
    assert vggs == ["vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn"]
    assert list_models("resnet?") == []
    assert list_models("resnet1?") == ["resnet18"]
    assert list_models("no-such-*") == []
