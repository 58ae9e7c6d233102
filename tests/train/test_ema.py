"""The EMA warms up, can be switched off from Python and the CLI, and the run reports both the
EMA's and the raw weights' accuracy."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnzoo.cli import main
from cnnzoo.train import fit, make_config
from cnnzoo.train.ema import EMA, ema_decay


def test_decay_warms_up_to_the_configured_value() -> None:
    # timm ModelEmaV2 / TF ExponentialMovingAverage(num_updates): min(decay, (1 + t) / (10 + t))
    assert ema_decay(0.998, 0) == pytest.approx(0.1)
    assert ema_decay(0.998, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.998, 10**6) == 0.998


def test_ema_follows_the_warmed_up_recurrence() -> None:
    model = nn.Linear(2, 1, bias=False)
    ema = EMA(model, 0.99)
    expected = None
    for t in range(5):
        with torch.no_grad():
            model.weight.fill_(float(t + 1))
        ema.update_parameters(model)
        w = float(t + 1)
        if expected is None:
            expected = w  # the first update copies
        else:
            decay = ema_decay(0.99, t)  # updates averaged before this one
            expected = decay * expected + (1 - decay) * w
        assert float(ema.module.weight[0, 0].detach()) == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("off", [None, 0, 0.0, False])
def test_make_config_turns_the_ema_off(off: object) -> None:
    assert make_config("lenet5").ema == 0.995  # the lenet5-mnist recipe has one
    assert make_config("lenet5", ema=off).ema is None


def test_unset_overrides_keep_the_recipe() -> None:
    assert make_config("lenet5", epochs=None).epochs == 10


def test_the_epoch_line_and_metrics_report_ema_and_raw(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = make_config("lenet_book", epochs=1, batch_size=128, ema=0.99)
    final = fit(config, tmp_path / "ema", quiet=True)
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("epoch 1/1"))
    assert "(EMA; raw weights " in line
    row = next(csv.DictReader((tmp_path / "ema" / "metrics.csv").open()))
    assert f"acc {float(row['test_accuracy']):.2%} (EMA; raw weights" in line
    assert f"raw weights {float(row['raw_test_accuracy']):.2%})" in line
    assert final["evaluated"] == "ema"


def test_cli_no_ema(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "lenet5", "--epochs", "1", "--batch-size", "128", "--out", str(out), "-q"]
    assert main([*args, "--no-ema"]) == 0
    assert json.loads((out / "config.json").read_text())["ema"] is None
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("epoch 1/1"))
    assert "EMA" not in line
    assert json.loads((out / "final.json").read_text())["evaluated"] == "raw"
