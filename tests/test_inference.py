"""optimize_for_inference and the measurements behind `cnnzoo bench` (no timing asserts)."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
from torch import nn

from cnnzoo import create_model, model_info, optimize_for_inference
from cnnzoo.inference import (
    InferenceModule,
    Timing,
    compare_outputs,
    count_macs,
    matmul_peak_flops,
    native_precision,
    run_benchmark,
    time_module,
)


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
    fast = optimize_for_inference(model, x)
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
        fast = optimize_for_inference(Branchy(), torch.randn(1, 3, 8, 8))
    assert fast.check is not None and fast.check.rel_error < 1e-6


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # torch.compile's own use of torch.jit
def test_compiled() -> None:
    model, x = _resnet("resnet20").eval(), torch.randn(2, 3, 32, 32)
    fast = optimize_for_inference(model, x, compile=True)
    assert fast.check is not None and fast.check.rel_error < 1e-4
    with torch.no_grad():
        y = torch.randn(2, 3, 32, 32)
        assert torch.allclose(fast(y), model(y), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet50", "googlenet", "simple_cnn", "vgg16_bn"])
def test_count_macs_matches_the_registry(name: str) -> None:
    info = model_info(name)
    with torch.device("meta"):
        model = create_model(name)
        macs = count_macs(model, torch.empty(3, *info.input_size))
    assert info.macs is not None
    assert math.isclose(macs, info.macs, rel_tol=2e-3)  # published values are rounded to 1e-3


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
    eager, optimised = run_benchmark(model, torch.randn(2, 3, 32, 32), warmup=0, iters=3)
    assert (eager.label, optimised.label) == ("eager fp32", "optimised fp32")
    assert eager.macs_per_image == optimised.macs_per_image == model_info("simple_cnn").macs
    for result in (eager, optimised):
        assert len(result.timing.latencies_s) == 3
        expected = 2 * result.macs_per_image * 2 / result.timing.p50_s
        assert result.flops_per_s == pytest.approx(expected)
        assert result.peak_share == pytest.approx(result.flops_per_s / result.peak_flops_per_s)
    assert eager.check is None and optimised.check is not None
