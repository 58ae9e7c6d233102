"""Shared fixtures: reference data copied from ../shared/reference into tests/data/."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

DATA = Path(__file__).parent / "data"

# One thread per test process: `make test` runs two xdist workers on two cores, and on a shared
# machine extra threads only fight each other (tests measure behaviour, never speed).
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seeded() -> Iterator[None]:
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def torchvision_state_dicts() -> dict[str, Any]:
    """torchvision 0.28's num_params and [key, shape] state_dict pairs per compatible model."""
    with open(DATA / "torchvision_state_dicts.json", encoding="utf-8") as f:
        return json.load(f)  # type: ignore[no-any-return]
