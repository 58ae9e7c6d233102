"""Presets, pipelines and the automatic input adaptation, against registered models."""

from __future__ import annotations

import pytest
import torch

from cnnzoo import create_model, model_info
from cnnzoo.data import PRESETS, adapt_stats, build_pipeline, plan_input_adaptation
from cnnzoo.data.transforms import Normalize, PadTo, RandomCrop, Resize, ToChannels


def _plan(data: tuple[int, int, int], model: str, **kwargs: object) -> object:
    info = model_info(model)
    return plan_input_adaptation(
        data, info.input_size, min_size=info.min_size, fixed_size=info.fixed_size, **kwargs
    )


def test_mnist_into_lenet5_is_padded_28_to_32() -> None:
    plan = _plan((1, 28, 28), "lenet5")
    assert plan.steps == (PadTo((32, 32)),) and plan.output_size == (1, 32, 32)
    assert plan.describe() == (
        "input adaptation: data 1x28x28 -> 1x32x32: pad 2/2 rows, 2/2 columns with black "
        "(the model takes exactly 32x32)"
    )


@pytest.mark.parametrize(
    "data, model, steps, out",
    [
        ((1, 8, 8), "lenet5", (Resize((32, 32)),), (1, 32, 32)),  # digits: 4x is no padding job
        ((1, 32, 32), "lenet_book", (Resize((28, 28)),), (1, 28, 28)),  # shrink to a fixed head
        ((3, 32, 32), "resnet18", (), (3, 32, 32)),  # global pooling takes CIFAR as it is
        ((1, 28, 28), "resnet20", (ToChannels(3),), (3, 28, 28)),
        ((1, 28, 28), "alexnet", (Resize((224, 224)), ToChannels(3)), (3, 224, 224)),  # < 63
        ((3, 32, 32), "lenet5", (ToChannels(1),), (1, 32, 32)),
        ((3, 32, 32), "alexnet_original", (Resize((227, 227)),), (3, 227, 227)),
    ],
)
def test_adaptation_decisions(
    data: tuple[int, int, int], model: str, steps: tuple[object, ...], out: tuple[int, int, int]
) -> None:
    plan = _plan(data, model)
    assert plan.steps == steps and plan.output_size == out


def test_policies_model_and_keep() -> None:
    assert _plan((3, 32, 32), "resnet18", policy="model").steps == (Resize((224, 224)),)
    assert _plan((1, 28, 28), "lenet5", policy="keep").steps == ()
    assert "no change" in _plan((3, 32, 32), "resnet20").describe()
    with pytest.raises(ValueError, match="cannot adapt 4-channel images"):
        _plan((4, 32, 32), "resnet20")


@pytest.mark.parametrize(
    "data, model", [((1, 28, 28), "lenet5"), ((1, 8, 8), "lenet5"), ((3, 32, 32), "mnist_cnn")]
)
def test_adapted_batches_run_through_the_real_model(data: tuple[int, int, int], model: str) -> None:
    info = model_info(model)
    pipe = build_pipeline(
        "resnet_cifar",
        mean=(0.5,) * data[0],
        std=(0.25,) * data[0],
        train=True,
        data_size=data,
        model_input=info.input_size,
        min_size=info.min_size,
        fixed_size=info.fixed_size,
    )
    x = torch.randint(0, 256, (2, *data), dtype=torch.uint8)
    out = pipe(x, torch.Generator().manual_seed(0))
    assert out.shape == (2, *info.input_size) and out.dtype == torch.float32
    assert create_model(model, num_classes=10)(out).shape == (2, 10)


def test_resnet_cifar_preset_is_pad4_crop_flip_then_dataset_normalisation() -> None:
    mean, std = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
    kwargs = {"mean": mean, "std": std, "data_size": (3, 32, 32)}
    train = build_pipeline("resnet_cifar", train=True, **kwargs)
    assert isinstance(train.steps[0], RandomCrop) and train.steps[0].padding == 4
    assert train.steps[-1] == Normalize(mean, std)
    evaluation = build_pipeline("resnet_cifar", train=False, **kwargs)
    assert evaluation.steps == (Normalize(mean, std),)
    x = torch.full((4, 3, 32, 32), 128, dtype=torch.uint8)
    expected = (128 / 255 - torch.tensor(mean)) / torch.tensor(std)
    assert torch.allclose(evaluation(x)[:, :, 5, 5], expected.expand(4, 3))


def test_textbook_preset_resizes_40_crops_32_and_normalises_to_minus_one_one() -> None:
    kwargs = {"mean": (0.1,), "std": (0.2,), "data_size": (3, 32, 32)}
    train = build_pipeline("textbook", train=True, **kwargs)
    assert train.output_size((3, 32, 32)) == (3, 32, 32)
    out = train(torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8), torch.Generator())
    assert out.shape == (8, 3, 32, 32) and out.min() >= -1 and out.max() <= 1
    assert out.min() < -0.9 and out.max() > 0.9
    assert build_pipeline("textbook", train=False, **kwargs).steps[-1] == Normalize(
        (0.5,) * 3, (0.5,) * 3
    )


def test_every_preset_evaluates_deterministically_and_trains_at_its_size() -> None:
    x = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    for name in PRESETS:
        kwargs = {"mean": (0.5,) * 3, "std": (0.2,) * 3, "data_size": (3, 32, 32)}
        evaluation = build_pipeline(name, train=False, **kwargs)
        assert not any(step.random for step in evaluation.steps), name
        assert torch.equal(evaluation(x), evaluation(x))
        train = build_pipeline(name, train=True, **kwargs)
        assert train(x, torch.Generator().manual_seed(0)).shape == (3, 3, 32, 32)
        assert str(train)  # printable, for the trainer's log
    with pytest.raises(ValueError, match="unknown augmentation preset 'autoaugment'"):
        build_pipeline("autoaugment", train=True, **kwargs)


def test_after_normalisation_steps_only_in_training() -> None:
    kwargs = {"mean": (0.5,), "std": (0.5,), "data_size": (1, 16, 16)}
    train = build_pipeline("resnet_cifar_cutout", train=True, **kwargs)
    assert type(train.steps[-1]).__name__ == "Cutout"
    assert type(build_pipeline("resnet_cifar_cutout", train=False, **kwargs).steps[-1]) is Normalize


def test_statistics_follow_the_channels() -> None:
    assert adapt_stats((0.13,), (0.31,), 3) == ((0.13,) * 3, (0.31,) * 3)
    mean, std = adapt_stats((1.0, 0.0, 0.0), (0.5, 0.5, 0.5), 1)
    assert mean == pytest.approx((0.299,)) and std == pytest.approx((0.5,))
    pipe = build_pipeline(
        "none",
        mean=(0.2,),
        std=(0.1,),
        train=False,
        data_size=(1, 28, 28),
        model_input=(3, 32, 32),
        fixed_size=True,
    )
    assert pipe.steps[-1] == Normalize((0.2,) * 3, (0.1,) * 3)
