"""compare and training_memory: the estimate against a real training step's measured peak, the
rows against the layer tables, every output format, the plot."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from cnnzoo import compare, create_model, summary, training_memory
from cnnzoo.compare import Comparison

# torch's profiler records every CPU allocator event with its size and time; its event tree is
# the only place that exposes them one by one (torch 2.x), hence the private import.
_profiler = pytest.importorskip("torch._C._profiler")


def _allocator_peak(step: object) -> int:
    """Peak bytes the CPU allocator holds during ``step()`` above what was held before it."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()  # type: ignore[operator]
    events: list[tuple[int, int]] = []

    def walk(node: object) -> None:
        if node.typed[0] == _profiler._EventType.Allocation:  # type: ignore[attr-defined]
            events.append((node.start_time_ns, node.typed[1].alloc_size))  # type: ignore[attr-defined]
        for child in node.children:  # type: ignore[attr-defined]
            walk(child)

    for root in prof.profiler.kineto_results.experimental_event_tree():  # type: ignore[union-attr]
        walk(root)
    assert events, "the profiler recorded no allocations"
    live = peak = 0
    for _, size in sorted(events, key=lambda e: e[0]):
        live += size
        peak = max(peak, live)
    return peak


def _measured_training_peak(name: str, optimizer: str, batch_size: int) -> int:
    """Weights + optimizer state already held, plus the allocator's peak during one steady-state
    training step (input copied in, forward, loss, backward, optimizer step)."""
    model = create_model(name).train()
    size = model_info_size(name)
    parameters = [p for p in model.parameters() if p.requires_grad]
    if optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(parameters, lr=0.01, momentum=0.9)
    else:
        opt = torch.optim.AdamW(parameters, lr=1e-3)
    data = torch.randn(batch_size, *size)
    labels = torch.randint(0, 10, (batch_size,))

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        x = data.clone()
        loss = nn.functional.cross_entropy(model(x), labels)
        loss.backward()
        opt.step()

    step()  # the first step creates the optimizer's state
    opt.zero_grad(set_to_none=True)
    held = sum(t.untyped_storage().nbytes() for t in [*model.parameters(), *model.buffers()])
    held += sum(
        v.untyped_storage().nbytes()
        for s in opt.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    return held + _allocator_peak(step)


def model_info_size(name: str) -> tuple[int, int, int]:
    from cnnzoo import model_info

    return model_info(name).input_size


@pytest.mark.parametrize(
    ("name", "optimizer", "batch_size"),
    [("simple_cnn", "sgd", 16), ("resnet20", "adamw", 8), ("lenet5", "adamw", 64)],
)
def test_training_memory_is_within_15_percent_of_the_measured_peak(
    name: str, optimizer: str, batch_size: int
) -> None:
    estimate = training_memory(name, batch_size=batch_size, optimizer=optimizer)
    measured = _measured_training_peak(name, optimizer, batch_size)
    assert abs(estimate.total - measured) / measured < 0.15, (estimate, measured)


def test_training_memory_parts() -> None:
    model = create_model("resnet20")
    params = sum(p.numel() * 4 for p in model.parameters())
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    sgd = training_memory("resnet20", batch_size=4, optimizer="sgd")
    assert sgd.weights == params + buffers
    assert sgd.gradients == params
    assert sgd.optimizer_state == params  # one momentum buffer per parameter
    plain = training_memory("resnet20", batch_size=4, optimizer="sgd", momentum=0.0)
    assert plain.optimizer_state == 0
    adamw = training_memory("resnet20", batch_size=4, optimizer="adamw")
    # exp_avg and exp_avg_sq per parameter, plus one step counter (a float32 scalar) each.
    assert adamw.optimizer_state == 2 * params + 4 * len(list(model.parameters()))
    # Saved activations grow with the batch (BN's per-channel statistics do not).
    double = training_memory("resnet20", batch_size=8, optimizer="sgd")
    assert 1.95 < double.activations / sgd.activations <= 2.0
    frozen = create_model("resnet20")
    for p in frozen.layer1.parameters():
        p.requires_grad_(False)
    partial = training_memory(frozen, (3, 32, 32), batch_size=4)
    assert partial.gradients == params - sum(p.numel() * 4 for p in frozen.layer1.parameters())
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        training_memory("resnet20", optimizer="lion")
    with pytest.raises(ValueError, match="input_size is required"):
        training_memory(frozen)


@pytest.fixture(scope="module")
def table() -> Comparison:
    return compare(["lenet5", "resnet20"], batch_size=4, repeats=2)


def test_rows_agree_with_the_layer_tables(table: Comparison) -> None:
    for row in table.rows:
        layers = summary(row.model)
        assert (row.params, row.macs) == (layers.total_params, layers.total_macs)
        assert row.activations_batch1 == layers.activation_bytes
        # Every layer output carries the batch dimension: the table at batch 4 agrees.
        assert row.activations_batch == summary(row.model, batch_size=4).activation_bytes
        assert row.training == training_memory(row.model, batch_size=4)
        assert row.latency_ms is not None and row.latency_ms > 0
        assert row.acc1 is None  # random weights: no published accuracy


def test_every_format(table: Comparison) -> None:
    records = list(csv.DictReader(io.StringIO(table.to_csv())))
    assert [r["model"] for r in records] == ["lenet5", "resnet20"]
    assert int(records[1]["params"]) == 269_722  # He et al. 2015, Table 6: 0.27M for ResNet-20
    assert int(records[0]["train_total_bytes_batch4"]) == table.rows[0].training.total
    data = json.loads(table.to_json())
    assert data["batch_size"] == 4 and data["optimizer"] == "sgd"
    assert data["rows"][1]["training"]["total"] == table.rows[1].training.total
    markdown = table.to_markdown().splitlines()
    assert markdown[0].startswith("| model | input | params | MACs")
    assert len([line for line in markdown if line.startswith("| resnet20 |")]) == 1
    assert table._repr_html_().count("<tr>") == 3
    assert "resnet20" in str(table)


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_plot(table: Comparison, tmp_path: Path, suffix: str) -> None:
    path = table.plot(tmp_path / f"models{suffix}")
    head = path.read_bytes()[:200]
    assert head.startswith(b"\x89PNG") if suffix == ".png" else b"<svg" in path.read_bytes()
    with pytest.raises(ValueError, match=r"no model has a known accuracy"):
        table.plot(tmp_path / "acc.png", y="acc1")
    with pytest.raises(ValueError, match=r"must end in .png or .svg"):
        table.plot(tmp_path / "models.jpg")


def test_known_accuracy_is_read_from_the_weights_table(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from cnnzoo.compare import published_accuracy

    fake = types.ModuleType("cnnzoo.pretrained")

    def get_weights(model: str, name: str = "DEFAULT") -> object:
        if model != "resnet18":
            raise ValueError(f"no weights for {model}")
        return types.SimpleNamespace(acc1=69.758)

    fake.get_weights = get_weights  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "cnnzoo.pretrained", fake)
    assert published_accuracy("resnet18") == pytest.approx(69.758)
    assert published_accuracy("resnet20") is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_training_memory_against_cuda_peak() -> None:
    """On a GPU the allocator counts its own peak (never run on the project's CPU machines)."""
    name, batch_size = "resnet20", 32
    device = torch.device("cuda")
    model = create_model(name).train().to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    data = torch.randn(batch_size, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch_size,), device=device)
    for _ in range(2):  # the second step is the steady state the estimate describes
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        opt.zero_grad(set_to_none=True)
        baseline = torch.cuda.memory_allocated() - data.nbytes - labels.nbytes
        nn.functional.cross_entropy(model(data.clone()), labels).backward()
        opt.step()
        torch.cuda.synchronize()
    measured = torch.cuda.max_memory_allocated() - data.nbytes - labels.nbytes
    estimate = training_memory(name, batch_size=batch_size, optimizer="sgd")
    assert baseline > 0
    assert abs(estimate.total - measured) / measured < 0.15, (estimate, measured)
