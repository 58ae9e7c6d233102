"""optimize_for_inference and the measurements behind `cnnzoo bench` (no timing asserts)."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from cnnzoo import create_model, inference, model_info, optimize_for_inference, precision, summary
from cnnzoo.inference import (
    BenchResult,
    InferenceModule,
    Timing,
    compare_outputs,
    matmul_peak_flops,
    native_precision,
    run_benchmark,
    time_module,
    time_side_by_side,
)
from cnnzoo.precision import PRECISIONS, resolve_precision


def _resnet(name: str = "resnet18") -> nn.Module:
    model = create_model(name)
    with torch.no_grad():  # non-trivial batch-norm statistics, so that fusing them matters
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def _optimize(model: nn.Module, x: torch.Tensor, **kwargs: object) -> InferenceModule:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # low precision emulated on this CPU
        return optimize_for_inference(model, x, **kwargs)  # type: ignore[arg-type]


def test_fp32_is_fused_channels_last_and_checked() -> None:
    model = _resnet().train()
    x = torch.randn(2, 3, 64, 64)
    fast = optimize_for_inference(model, x, precision="fp32")
    assert isinstance(fast, InferenceModule) and not fast.training
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())
    conv = fast.module.conv1
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(p.requires_grad for p in fast.parameters())
    # The original is untouched: still has its batch norms, still in train mode.
    assert isinstance(model.bn1, nn.BatchNorm2d) and model.training
    model.eval()
    with torch.no_grad():
        reference = model(x)
        output = fast(x)
    assert output.dtype == torch.float32
    assert fast.check is not None and fast.check.rel_error < 1e-5
    assert fast.check == compare_outputs(output, reference)


@pytest.mark.parametrize(
    ("precision", "dtype"), [("bf16", torch.bfloat16), ("fp16", torch.float16)]
)
def test_low_precision_casts_weights_not_the_interface(precision: str, dtype: torch.dtype) -> None:
    model = _resnet().eval()
    x = torch.randn(2, 3, 64, 64)
    if native_precision(dtype, "cpu") is False:
        with pytest.warns(RuntimeWarning, match=f"no native {precision}"):
            fast = optimize_for_inference(model, x, precision=precision)
    else:
        fast = optimize_for_inference(model, x, precision=precision)
    assert fast.module.conv1.weight.dtype == dtype
    with torch.no_grad():
        output = fast(x)
        reference = model(x)
    assert output.dtype == torch.float32
    assert fast.check is not None
    assert 0 < fast.check.rel_error < 2e-2  # really rounded, and within the bound
    assert fast.check == compare_outputs(output, reference)


def test_tolerance_and_bad_precision_are_errors() -> None:
    model, x = _resnet("resnet20"), torch.randn(1, 3, 32, 32)
    with pytest.raises(ValueError, match=r"optimised resnet20 \(bf16\) is off by"):
        _optimize(model, x, precision="bf16", tolerance=0.0)
    with pytest.raises(ValueError, match="unknown precision 'int8'"):
        optimize_for_inference(model, x, precision="int8")


def test_unfusable_model_still_gets_optimised() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = self.bn(self.conv(x))
            return y if x.sum() > -1e9 else -y

    with pytest.warns(RuntimeWarning, match="batch norms left unfused"):
        fast = optimize_for_inference(Branchy(), torch.randn(1, 3, 8, 8), precision="fp32")
    assert fast.check is not None and fast.check.rel_error < 1e-6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit
def test_compiled() -> None:
    model, x = _resnet("resnet20").eval(), torch.randn(2, 3, 32, 32)
    fast = optimize_for_inference(model, x, precision="fp32", compile=True)
    assert fast.check is not None and fast.check.rel_error < 1e-4
    with torch.no_grad():
        y = torch.randn(2, 3, 32, 32)
        assert torch.allclose(fast(y), model(y), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["lenet5", "resnet50", "googlenet", "simple_cnn"])
def test_bench_takes_macs_from_the_layer_table(name: str) -> None:
    # Issue 11: one fact, one counter. bench's MACs are summary()'s, not a second count.
    model = create_model(name)
    size = model_info(name).input_size
    eager, _ = run_benchmark(model, torch.randn(1, *size), precision="fp32", warmup=0, iters=1)
    assert eager.macs_per_image == summary(name, size).total_macs
    assert not hasattr(inference, "count_macs")


def test_timing_percentiles() -> None:
    timing = Timing(4, (0.5, 0.1, 0.3, 0.2, 0.4))
    assert timing.p50_s == pytest.approx(0.3)
    assert timing.p95_s == pytest.approx(0.48)  # interpolated between 0.4 and 0.5
    assert timing.images_per_s == pytest.approx(4 / 0.3)


def test_time_module_and_peak_measure_something() -> None:
    calls = []
    module = nn.Identity()
    module.register_forward_hook(lambda m, i, o: calls.append(1))
    timing = time_module(module, torch.randn(3, 2), warmup=2, iters=5)
    assert len(calls) == 7 and len(timing.latencies_s) == 5 and timing.batch_size == 3
    assert all(t > 0 for t in timing.latencies_s)
    peak = matmul_peak_flops(torch.float32)
    assert 1e8 < peak < 1e15


def test_run_benchmark_compares_eager_and_optimised() -> None:
    model = create_model("simple_cnn")
    eager, optimised = run_benchmark(
        model, torch.randn(2, 3, 32, 32), precision="fp32", warmup=0, iters=3
    )
    assert (eager.label, optimised.label) == ("torch eager fp32", "torch optimised fp32")
    assert eager.macs_per_image == optimised.macs_per_image == model_info("simple_cnn").macs
    for result in (eager, optimised):
        assert len(result.timing.latencies_s) == 3
        expected = 2 * result.macs_per_image * 2 / result.timing.p50_s
        assert result.flops_per_s == pytest.approx(expected)
        assert result.peak_flops_per_s is not None and result.flops_per_s is not None
        share = result.flops_per_s / result.peak_flops_per_s
        assert result.peak_share == (pytest.approx(share) if share <= 1 else None)
    assert eager.check is None and optimised.check is not None


def _result(precision_name: str, p50_s: float, peak: float | None) -> BenchResult:
    return BenchResult("x", precision_name, Timing(2, (p50_s,)), 1_000_000, peak)


def test_share_of_peak_is_never_above_one() -> None:
    # 2 images x 1M MACs x 2 FLOPs in 1 ms = 4 GFLOP/s
    assert _result("fp32", 1e-3, 8e9).peak_share == pytest.approx(0.5)
    assert _result("fp32", 1e-3, 2e9).peak_share is None  # the probe was no peak: not shown
    assert _result("int8", 1e-3, None).peak_share is None  # no native peak measured


def test_side_by_side_alternates_every_runner() -> None:
    calls: list[str] = []
    runners = [lambda x, k=k: calls.append(k) for k in "ab"]
    timings = time_side_by_side(runners, torch.zeros(3, 1), warmup=1, iters=4)
    assert [len(t.latencies_s) for t in timings] == [4, 4]
    assert calls[:4] == ["a", "a", "b", "b"]  # round 1: warm-up + 1 timed each, in turn
    assert calls.count("a") == calls.count("b") == 5


@pytest.mark.parametrize("native", [True, False, None])
def test_auto_picks_bf16_only_where_it_is_native(
    monkeypatch: pytest.MonkeyPatch, native: bool | None
) -> None:
    monkeypatch.setattr(precision, "native_precision", lambda dtype, device="cpu": native)
    assert resolve_precision("auto") == ("bf16" if native else "fp32")
    assert resolve_precision("fp16") == "fp16"
    with pytest.raises(ValueError, match="unknown precision 'int4'; choose auto, fp32"):
        resolve_precision("int4")


def test_auto_is_the_default_and_explicit_emulated_bf16_warns_with_the_slowdown(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model, x = create_model("simple_cnn"), torch.randn(1, 3, 32, 32)

    def fp32_only(dtype: torch.dtype, device: object = "cpu") -> bool:
        return dtype == torch.float32

    monkeypatch.setattr(precision, "native_precision", fp32_only)
    monkeypatch.setattr(inference, "native_precision", fp32_only)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert optimize_for_inference(model, x).precision == "fp32"
    with pytest.warns(RuntimeWarning, match=r"matmul probe just ran \d+\.\dx slower than fp32"):
        assert optimize_for_inference(model, x, precision="bf16").precision == "bf16"


def test_one_precisions_table() -> None:
    from cnnzoo.train import config

    assert inference.PRECISIONS is PRECISIONS and config.PRECISIONS is PRECISIONS
    assert PRECISIONS["bf16"] is torch.bfloat16
