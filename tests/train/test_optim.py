from __future__ import annotations

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from cnnzoo import create_model
from cnnzoo.train.config import make_config
from cnnzoo.train.optim import build_optimizer


def _train(optimizer: torch.optim.Optimizer, model: torch.nn.Module, steps: int) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(8, 1, 32, 32, generator=generator)
        y = torch.randint(0, 10, (8,), generator=generator)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_same_steps_and_state_as_torch_optim(name: str) -> None:
    """build_optimizer's classes drop torch's dynamo wrappers only: every step, the state_dict
    and a load into torch's own class must match torch.optim's fused implementation exactly."""
    config = make_config("lenet5", optimizer=name, lr=0.01, weight_decay=1e-3)
    torch.manual_seed(0)
    ours_model = create_model("lenet5")
    torch_model = create_model("lenet5")
    torch_model.load_state_dict(ours_model.state_dict())
    ours = build_optimizer(ours_model, config)
    reference_class = torch.optim.SGD if name == "sgd" else torch.optim.AdamW
    assert isinstance(ours, reference_class)
    kwargs = {"momentum": config.momentum, "nesterov": True} if name == "sgd" else {}
    groups = [
        {"params": [p for p in torch_model.parameters() if p.ndim > 1], "weight_decay": 1e-3},
        {"params": [p for p in torch_model.parameters() if p.ndim <= 1], "weight_decay": 0.0},
    ]
    reference = reference_class(groups, lr=0.01, fused=True, **kwargs)
    _train(ours, ours_model, 5)
    _train(reference, torch_model, 5)
    for (key, a), b in zip(
        ours_model.state_dict().items(), torch_model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), key
    ours_state, reference_state = ours.state_dict(), reference.state_dict()
    assert ours_state["param_groups"] == reference_state["param_groups"]
    assert ours_state["state"].keys() == reference_state["state"].keys()
    for index, entry in ours_state["state"].items():
        for key, value in entry.items():
            assert torch.equal(
                torch.as_tensor(value), torch.as_tensor(reference_state["state"][index][key])
            )
    # the state crosses to torch's class and back, and training continues identically
    reference.load_state_dict(ours_state)
    ours.load_state_dict(reference_state)
    _train(ours, ours_model, 2)
    _train(reference, torch_model, 2)
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_a_run_resumes_with_the_implementation_it_started_with(name: str) -> None:
    """Checkpoints of runs from before fused kernels hold the per-tensor loop's state: loaded,
    the optimiser steps with the loop again (bit-identical to the run continuing unfused)."""
    config = make_config("lenet5", optimizer=name, lr=0.01)
    torch.manual_seed(0)
    old_model = create_model("lenet5")
    new_model = create_model("lenet5")
    new_model.load_state_dict(old_model.state_dict())
    old = build_optimizer(old_model, config)
    assert all(group["fused"] for group in old.param_groups)
    for group in old.param_groups:  # as an older cnnzoo built it
        group["fused"] = None
    _train(old, old_model, 3)
    new = build_optimizer(new_model, config)
    new_model.load_state_dict(old_model.state_dict())
    new.load_state_dict(copy.deepcopy(old.state_dict()))  # as from a file: no shared buffers
    assert [group["fused"] for group in new.param_groups] == [None, None]
    _train(old, old_model, 2)
    _train(new, new_model, 2)
    for a, b in zip(old_model.parameters(), new_model.parameters(), strict=True):
        assert torch.equal(a, b)


def test_training_steps_do_not_import_torch_dynamo() -> None:
    """torch.optim imports torch._dynamo on first use (as long as importing torch); a run's
    optimiser must not, in a fresh interpreter."""
    code = (
        "import sys, torch\n"
        "from cnnzoo import create_model\n"
        "from cnnzoo.train.config import make_config\n"
        "from cnnzoo.train.optim import build_optimizer\n"
        "for name in ('sgd', 'adamw'):\n"
        "    model = create_model('lenet5')\n"
        "    opt = build_optimizer(model, make_config('lenet5', optimizer=name))\n"
        "    model(torch.randn(2, 1, 32, 32)).sum().backward()\n"
        "    opt.step(); opt.zero_grad(); opt.load_state_dict(opt.state_dict())\n"
        "print(sorted(m for m in sys.modules if m.startswith('torch._dynamo')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True
    )
    assert result.stdout.strip() == "[]"
