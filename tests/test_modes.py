"""cnnzoo._modes.eval_mode: the one eval-mode context manager (surgery, inference)."""

from __future__ import annotations

import pytest
from torch import nn

from cnnzoo._modes import eval_mode


def test_eval_inside_and_every_modules_own_mode_restored() -> None:
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), nn.Dropout()))
    model.train()
    model[1][0].eval()  # a deliberately frozen norm inside a training model
    before = [m.training for m in model.modules()]
    with eval_mode(model) as same:
        assert same is model
        assert not any(m.training for m in model.modules())
    assert [m.training for m in model.modules()] == before  # model.train(True) would wake it
    with pytest.raises(RuntimeError), eval_mode(model):
        raise RuntimeError("restored on errors too")
    assert [m.training for m in model.modules()] == before
