from __future__ import annotations

import pytest

from cnnzoo.train.config import TrainConfig, make_config


def test_precedence_defaults_recipe_flags() -> None:
    default = make_config("resnet20")
    assert (default.recipe, default.lr, default.batch_size) == ("fast", 0.05, 128)
    paper = make_config("resnet20", "he2015-cifar")
    assert (paper.lr, paper.weight_decay, paper.milestones, paper.max_steps) == (
        0.1,
        1e-4,
        (32_000, 48_000),
        64_000,
    )
    assert paper.augment == "resnet_cifar" and paper.data == "cifar10"
    flagged = make_config("resnet20", "he2015-cifar", lr=0.05, epochs=None)
    assert flagged.lr == 0.05 and flagged.epochs == paper.epochs  # None never overrides


def test_resnet110_warms_up_at_001() -> None:
    config = make_config("resnet110", "he2015-cifar")
    assert config.warmup_lr == 0.01 and config.schedule == "paper"
    assert make_config("resnet56", "he2015-cifar").warmup_lr is None


def test_nin_imagenet_takes_half_the_nin_rate() -> None:
    assert make_config("nin_imagenet").lr == 5e-4
    assert make_config("nin_cifar10").lr == 1e-3
    assert make_config("nin_imagenet", lr=1e-3).lr == 1e-3  # a flag still wins


def test_round_trip_through_dict() -> None:
    config = make_config("lenet5", "lenet5-mnist", ema=0.99, model_kwargs={"num_classes": 10})
    assert TrainConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"epochs": 0}, "epochs must be positive"),
        ({"lr": -1.0}, "learning rate must be positive"),
        ({"optimizer": "rmsprop"}, "optimizer must be one of sgd, adamw"),
        ({"precision": "int8"}, "precision must be auto or one of fp32, bf16, fp16"),
        ({"ema": 1.5}, "EMA decay"),
    ],
)
def test_bad_values_are_rejected(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make_config("lenet5", **overrides)


def test_unknown_recipe() -> None:
    with pytest.raises(ValueError, match="unknown recipe 'fastest'; expected one of fast"):
        make_config("lenet5", "fastest")


def test_speed_settings_apply_under_every_recipe_and_flags_win() -> None:
    from cnnzoo.registry import list_models
    from cnnzoo.train.config import SPEED_SETTINGS

    assert set(SPEED_SETTINGS) <= set(list_models())
    for model, settings in SPEED_SETTINGS.items():
        for recipe in (None, "fast", "he2015-cifar"):
            config = make_config(model, recipe)
            assert {k: getattr(config, k) for k in settings} == settings, (model, recipe)
    assert make_config("resnet20").precision == "auto" and make_config("resnet20").channels_last
    flagged = make_config("resnet20", precision="fp32", channels_last=False)
    assert flagged.precision == "fp32" and not flagged.channels_last
    plain = make_config("lenet5_modern")  # not measured: torch's defaults
    assert plain.precision == "fp32" and not plain.channels_last
