"""Fast inference: fold batch norms, pick memory format and precision, optionally compile; and
the measurements behind ``cnnzoo bench``: PyTorch eager and optimised, ONNX Runtime fp32 and
int8, timed side by side in one run.

>>> model = cnnzoo.create_model("resnet50")
>>> example = torch.randn(8, 3, 224, 224)
>>> fast = cnnzoo.optimize_for_inference(model, example)  # precision="auto"
>>> fast.precision  # bf16 where the hardware has it (AMX, AVX512-BF16, GPUs), else fp32
'fp32'
>>> fast.check  # measured against the original on `example`
OutputCheck(max_abs_error=..., rel_error=...)
>>> logits = fast(example)  # float32 in, float32 out

Low precision only pays where the hardware computes in it. Elsewhere PyTorch emulates it, far
slower than float32: asking for it explicitly warns with the slowdown measured on the spot.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo._modes import eval_mode
from cnnzoo.precision import AUTO, PRECISIONS, native_precision, resolve_precision
from cnnzoo.surgery.fuse import fuse_bn

__all__ = [
    "PRECISIONS",
    "BenchResult",
    "InferenceModule",
    "OutputCheck",
    "Timing",
    "emulation_slowdown",
    "matmul_peak_flops",
    "measure_accuracy",
    "native_precision",
    "optimize_for_inference",
    "resolve_precision",
    "run_benchmark",
    "time_module",
    "time_side_by_side",
]

# Relative output error accepted on the example input (max |out - ref| / max |ref|). bf16 keeps
# 8 significand bits (unit roundoff 2^-8 = 3.9e-3), fp16 11 (4.9e-4); errors grow with depth.
DEFAULT_TOLERANCE = {"fp32": 1e-4, "fp16": 2e-2, "bf16": 5e-2}


@dataclass(frozen=True)
class OutputCheck:
    """How far an optimised module's output is from the original's on one input."""

    max_abs_error: float
    rel_error: float  # max |out - ref| / max |ref|

    def __str__(self) -> str:
        return f"max abs error {self.max_abs_error:.2e}, relative {self.rel_error:.2e}"


def compare_outputs(output: Any, reference: Any) -> OutputCheck:
    """Max-norm error of ``output`` against ``reference`` (tensors, or tuples of them)."""
    outs, refs = _tensors(output), _tensors(reference)
    if len(outs) != len(refs):
        raise ValueError(f"{len(outs)} outputs against {len(refs)} reference outputs")
    max_abs = max_ref = 0.0
    for out, ref in zip(outs, refs, strict=True):
        if out.shape != ref.shape:
            raise ValueError(f"output shape {tuple(out.shape)} != reference {tuple(ref.shape)}")
        diff = (out.detach().double().cpu() - ref.detach().double().cpu()).abs()
        max_abs = max(max_abs, float(diff.max()) if diff.numel() else 0.0)
        max_ref = max(max_ref, float(ref.detach().abs().max()) if ref.numel() else 0.0)
    rel = max_abs / max_ref if max_ref > 0 else (0.0 if max_abs == 0 else math.inf)
    return OutputCheck(max_abs, rel)


def _tensors(output: Any) -> list[Tensor]:
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for v in output.values() for t in _tensors(v)]
    if isinstance(output, (tuple, list)):
        return [t for v in output for t in _tensors(v)]
    return []


class InferenceModule(nn.Module):
    """An optimised model that takes and returns the caller's dtype: inputs are cast to the
    model's precision and memory format, outputs back to the input's dtype.

    ``check`` holds the output error measured against the original model when it was built.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        precision: str,
        channels_last: bool,
        check: OutputCheck | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.precision = precision
        self.dtype = PRECISIONS[precision]
        self.channels_last = channels_last
        self.check = check

    def forward(self, x: Tensor) -> Any:
        input_dtype = x.dtype
        if x.is_floating_point():
            x = x.to(self.dtype)
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        output = self.module(x)
        if isinstance(output, Tensor) and output.is_floating_point():
            return output.to(input_dtype)
        return output


def optimize_for_inference(
    model: nn.Module,
    example_input: Tensor,
    *,
    precision: str = AUTO,
    channels_last: bool = True,
    compile: bool = False,
    tolerance: float | None = None,
) -> InferenceModule:
    """An eval-mode, faster copy of ``model`` for inputs like ``example_input``.

    Batch norms after convs are folded in (``fuse_bn``), weights are cast to ``precision``
    (``auto``: bf16 where the device computes it natively, else fp32; or ``fp32``, ``bf16``,
    ``fp16``; asking for one the device emulates warns with its measured slowdown) and stored
    channels-last (oneDNN's and cuDNN's fast layout
    for convolutions), and the result is compiled with ``torch.compile`` if asked. The copy's
    output on ``example_input`` is checked against ``model``'s: the error is in ``.check``, and
    ``ValueError`` is raised if its relative error exceeds ``tolerance`` (default 1e-4 for
    fp32, 2e-2 for fp16, 5e-2 for bf16). ``model`` itself is left unchanged.
    """
    device = example_input.device
    precision = resolve_precision(precision, device)
    tolerance = DEFAULT_TOLERANCE[precision] if tolerance is None else tolerance
    name = getattr(model, "model_name", type(model).__name__)
    dtype = PRECISIONS[precision]
    if native_precision(dtype, device) is False:
        slowdown = emulation_slowdown(dtype, device)
        warnings.warn(
            f"{device.type} has no native {precision} arithmetic here: PyTorch emulates it "
            f"(a matmul probe just ran {slowdown:.1f}x slower than fp32); "
            f'precision="auto" would pick fp32',
            RuntimeWarning,
            stacklevel=2,
        )
    with torch.inference_mode(), eval_mode(model):
        reference = model(example_input)
    try:
        optimized = fuse_bn(model)
    except ValueError as error:  # not traceable: still worth the other steps
        warnings.warn(f"{name}: batch norms left unfused: {error}", RuntimeWarning, stacklevel=2)
        optimized = copy.deepcopy(model).eval()
    optimized = optimized.to(device=device, dtype=dtype)
    if channels_last:
        optimized = optimized.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    for param in optimized.parameters():
        param.requires_grad_(False)
    if compile:
        optimized = torch.compile(optimized)  # type: ignore[assignment]
    result = InferenceModule(optimized, precision=precision, channels_last=channels_last).eval()
    with torch.inference_mode():
        output = result(example_input)  # also compiles, if asked
    result.check = compare_outputs(output, reference)
    if not result.check.rel_error <= tolerance:
        raise ValueError(
            f"optimised {name} ({precision}) is off by {result.check} on the example input, "
            f"more than the tolerance {tolerance:g}"
        )
    return result


@dataclass(frozen=True)
class Timing:
    """Latencies of repeated forward passes of one batch."""

    batch_size: int
    latencies_s: tuple[float, ...]

    def percentile(self, q: float) -> float:
        """The ``q``-th percentile (0..100) of the latencies, linearly interpolated."""
        ordered = sorted(self.latencies_s)
        position = (len(ordered) - 1) * q / 100
        low = math.floor(position)
        high = min(low + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (position - low)

    @property
    def p50_s(self) -> float:
        return self.percentile(50)

    @property
    def p95_s(self) -> float:
        return self.percentile(95)

    @property
    def images_per_s(self) -> float:
        return self.batch_size / self.p50_s


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_module(
    module: nn.Module | Any, example: Tensor, *, warmup: int = 2, iters: int = 10
) -> Timing:
    """Latency of ``module(example)`` (inference mode) over ``iters`` runs after ``warmup``."""
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    latencies = []
    with torch.inference_mode():
        for _ in range(warmup):
            module(example)
        for _ in range(iters):
            _synchronize(example.device)
            start = time.perf_counter()
            module(example)
            _synchronize(example.device)
            latencies.append(time.perf_counter() - start)
    return Timing(int(example.shape[0]), tuple(latencies))


def matmul_peak_flops(
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu", repeats: int = 3
) -> float:
    """FLOP/s of the best square matmul among sizes 256 to 2048 (each repeated for at least
    20 ms, best of ``repeats``): the practical peak this device reaches right now in ``dtype``,
    for comparing a model's throughput to. Measure it only where ``dtype`` is native."""
    device = torch.device(device)
    best_rate = 0.0
    with torch.inference_mode():
        for size in (256, 512, 1024, 2048):
            a = torch.randn(size, size, device=device).to(dtype)
            b = torch.randn(size, size, device=device).to(dtype)
            torch.mm(a, b)  # warm-up (library initialisation, packing, allocation)
            _synchronize(device)
            start = time.perf_counter()
            torch.mm(a, b)
            _synchronize(device)
            inner = max(1, math.ceil(0.02 / max(time.perf_counter() - start, 1e-6)))
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                for _ in range(inner):
                    torch.mm(a, b)
                _synchronize(device)
                elapsed = time.perf_counter() - start
                best_rate = max(best_rate, inner * 2 * size**3 / elapsed)
    return best_rate


def emulation_slowdown(dtype: torch.dtype, device: torch.device | str = "cpu") -> float:
    """How many times slower a 512x512 matmul runs in ``dtype`` than in float32 right now (>1:
    slower), the best of 3 each: what asking for an emulated precision costs here."""
    device = torch.device(device)
    times = {}
    with torch.inference_mode():
        for kind in (torch.float32, dtype):
            a = torch.randn(512, 512, device=device).to(kind)
            torch.mm(a, a)
            best = math.inf
            for _ in range(3):
                _synchronize(device)
                start = time.perf_counter()
                torch.mm(a, a)
                _synchronize(device)
                best = min(best, time.perf_counter() - start)
            times[kind] = best
    return times[dtype] / times[torch.float32]


def measure_accuracy(
    model: Callable[[Tensor], Tensor], batches: Iterable[tuple[Tensor, Tensor]]
) -> tuple[float, int]:
    """(top-1 accuracy, images) of ``model`` over (input, label) ``batches``."""
    correct = total = 0
    with torch.inference_mode():
        for inputs, labels in batches:
            logits = model(inputs)
            correct += int((logits.argmax(dim=1).cpu() == labels.cpu()).sum())
            total += int(labels.numel())
    if total == 0:
        raise ValueError("no images to measure accuracy on")
    return correct / total, total


@dataclass(frozen=True)
class BenchResult:
    """One runtime of ``cnnzoo bench``: its timing, throughput, share of the same precision's
    peak and, where measured, output error and accuracy."""

    runtime: str  # "torch eager", "torch optimised", "onnxruntime"
    precision: str  # fp32, bf16, fp16, int8
    timing: Timing
    macs_per_image: int | None
    # A square matmul at the same precision, measured natively in the same run; None where
    # there is no native peak to compare with (emulated bf16, ONNX Runtime's int8).
    peak_flops_per_s: float | None
    check: OutputCheck | None = None
    accuracy: float | None = None

    @property
    def label(self) -> str:
        return f"{self.runtime} {self.precision}"

    @property
    def flops_per_s(self) -> float | None:
        if self.macs_per_image is None:
            return None
        return 2 * self.macs_per_image * self.timing.batch_size / self.timing.p50_s

    @property
    def peak_share(self) -> float | None:
        """Achieved over peak FLOP/s, never above 1: where the model beats the matmul probe
        the probe was no peak, and no share is given."""
        flops = self.flops_per_s
        if flops is None or not self.peak_flops_per_s:
            return None
        share = flops / self.peak_flops_per_s
        return share if share <= 1 else None

    def record(self, baseline: BenchResult) -> dict[str, Any]:
        """A plain-data record for ``--json``; ``speedup`` is against ``baseline``."""
        return {
            "runtime": self.runtime,
            "precision": self.precision,
            "batch_size": self.timing.batch_size,
            "images_per_second": self.timing.images_per_s,
            "latency_p50_ms": self.timing.p50_s * 1e3,
            "latency_p95_ms": self.timing.p95_s * 1e3,
            "speedup": baseline.timing.p50_s / self.timing.p50_s,
            "baseline": baseline.label,
            "macs_per_image": self.macs_per_image,
            "gflops_per_second": None if self.flops_per_s is None else self.flops_per_s / 1e9,
            "peak_share": self.peak_share,
            "rel_output_error": None if self.check is None else self.check.rel_error,
            "accuracy": self.accuracy,
        }


def time_side_by_side(
    runners: Sequence[Callable[[Tensor], Any]],
    example: Tensor,
    *,
    warmup: int = 2,
    iters: int = 10,
) -> list[Timing]:
    """Latencies of each runner on ``example``, timed in alternating rounds in one run, so
    that a burst of load from elsewhere hits them all rather than one."""
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    rounds = max(1, min(iters, 5))
    times: list[list[float]] = [[] for _ in runners]
    for index in range(rounds):
        share = iters // rounds + (1 if index < iters % rounds else 0)
        first_warmup = warmup if index == 0 else 0
        for runner, collected in zip(runners, times, strict=True):
            collected += time_module(runner, example, warmup=first_warmup, iters=share).latencies_s
    batch = int(example.shape[0])
    return [Timing(batch, tuple(collected)) for collected in times]


def native_peak(precision: str, device: torch.device | str = "cpu") -> float | None:
    """The matmul peak of ``precision`` where the device computes it natively, else None."""
    dtype = PRECISIONS.get(precision)
    if dtype is None or native_precision(dtype, device) is not True:
        return None
    return matmul_peak_flops(dtype, device)


def run_benchmark(
    model: nn.Module,
    example: Tensor,
    *,
    precision: str = AUTO,
    channels_last: bool = True,
    compile: bool = False,
    warmup: int = 2,
    iters: int = 10,
    tolerance: float | None = None,
) -> tuple[BenchResult, BenchResult]:
    """Eager fp32 ``model`` against ``optimize_for_inference(model, ...)`` on ``example``, timed
    alternately in one run so that both see the same machine load. (``cnnzoo bench`` adds ONNX
    Runtime fp32 and int8: ``cnnzoo.bench.bench_runtimes``.)"""
    from cnnzoo.inspect import summary

    model = model.eval().to(example.device)
    macs = summary(model, tuple(example.shape[1:])).total_macs
    optimized = optimize_for_inference(
        model,
        example,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        tolerance=tolerance,
    )
    eager_timing, optimized_timing = time_side_by_side(
        [model, optimized], example, warmup=warmup, iters=iters
    )
    eager = BenchResult(
        "torch eager", "fp32", eager_timing, macs, native_peak("fp32", example.device)
    )
    fast = BenchResult(
        "torch optimised",
        optimized.precision,
        optimized_timing,
        macs,
        native_peak(optimized.precision, example.device),
        optimized.check,
    )
    return eager, fast
