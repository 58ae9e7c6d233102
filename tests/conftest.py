"""Shared fixtures: reference data copied from ../shared/reference into tests/data/."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

DATA = Path(__file__).parent / "data"

if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per xdist worker: two workers on two cores, no oversubscription.
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
