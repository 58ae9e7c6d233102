from __future__ import annotations

import itertools
import math

import pytest

from cnnzoo.train.schedule import lr_at


def _curve(schedule: str, total: int = 100, **kwargs: object) -> list[float]:
    return [
        lr_at(s, total_steps=total, base_lr=0.1, schedule=schedule, **kwargs)  # type: ignore[arg-type]
        for s in range(total)
    ]


def test_onecycle_ramps_to_peak_then_anneals() -> None:
    lrs = _curve("onecycle")
    peak = max(lrs)
    assert lrs[0] == pytest.approx(0.1 / 25)
    assert peak == pytest.approx(0.1) and lrs.index(peak) == 30
    assert all(a <= b for a, b in itertools.pairwise(lrs[:31]))
    assert all(a >= b for a, b in itertools.pairwise(lrs[30:]))
    assert lrs[-1] < 0.1 / 1000


def test_paper_schedule_he2015() -> None:
    # He et al. 2015 sec. 4.2: 0.1, /10 at 32k and 48k; ResNet-110 warms up at 0.01.
    def lr(step: int) -> float:
        return lr_at(
            step,
            total_steps=64_000,
            base_lr=0.1,
            schedule="paper",
            warmup_steps=400,
            warmup_lr=0.01,
            milestones=(32_000, 48_000),
        )

    assert [lr(s) for s in (0, 399, 400, 31_999)] == [0.01, 0.01, 0.1, 0.1]
    assert lr(32_000) == pytest.approx(0.01) and lr(47_999) == pytest.approx(0.01)
    assert lr(48_000) == pytest.approx(0.001) and lr(63_999) == pytest.approx(0.001)


def test_cosine_and_step() -> None:
    cosine = _curve("cosine", warmup_steps=10)
    assert cosine[0] == pytest.approx(0.01) and cosine[9] == pytest.approx(0.1)
    assert cosine[55] == pytest.approx(0.1 * 0.5 * (1 + math.cos(math.pi * 45 / 90)))
    step = _curve("step")
    assert step[49] == 0.1 and step[50] == pytest.approx(0.01) and step[75] == pytest.approx(0.001)


def test_steps_past_the_end_are_clamped_and_bad_input_rejected() -> None:
    assert lr_at(10_000, total_steps=100, base_lr=0.1, schedule="cosine") == pytest.approx(
        lr_at(99, total_steps=100, base_lr=0.1, schedule="cosine")
    )
    with pytest.raises(ValueError, match="unknown schedule 'linear'"):
        lr_at(0, total_steps=10, base_lr=0.1, schedule="linear")
    with pytest.raises(ValueError, match="total_steps must be positive"):
        lr_at(0, total_steps=0, base_lr=0.1, schedule="cosine")
