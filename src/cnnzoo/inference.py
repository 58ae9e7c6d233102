"""Fast inference: fold batch norms, pick memory format and precision, optionally compile; and
the measurements behind ``cnnzoo bench``.

>>> model = cnnzoo.create_model("resnet50")
>>> example = torch.randn(8, 3, 224, 224)
>>> fast = cnnzoo.optimize_for_inference(model, example, precision="bf16")
>>> fast.check  # measured against the original on `example`
OutputCheck(max_abs_error=..., rel_error=...)
>>> logits = fast(example)  # float32 in, float32 out

Low precision only pays where the hardware computes in it: GPUs, and CPUs with AVX512-BF16 or
AMX (bf16) / AVX512-FP16 (fp16). Elsewhere PyTorch emulates it, far slower than float32, and
``optimize_for_inference`` warns.
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from cnnzoo._modes import eval_mode
from cnnzoo.surgery.fuse import fuse_bn

__all__ = [
    "PRECISIONS",
    "BenchResult",
    "InferenceModule",
    "OutputCheck",
    "Timing",
    "count_macs",
    "matmul_peak_flops",
    "native_precision",
    "optimize_for_inference",
    "run_benchmark",
    "time_module",
]

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
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


def native_precision(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool | None:
    """Whether ``device`` computes in ``dtype`` natively (None: cannot tell)."""
    device = torch.device(device)
    if dtype == torch.float32:
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported()) if dtype == torch.bfloat16 else True
    if device.type == "cpu":
        probes = {
            torch.bfloat16: "_is_mkldnn_bf16_supported",
            torch.float16: "_is_mkldnn_fp16_supported",
        }
        try:
            return bool(getattr(torch.ops.mkldnn, probes[dtype])())
        except (AttributeError, KeyError, RuntimeError):
            return None
    return None


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
    precision: str = "fp32",
    channels_last: bool = True,
    compile: bool = False,
    tolerance: float | None = None,
) -> InferenceModule:
    """An eval-mode, faster copy of ``model`` for inputs like ``example_input``.

    Batch norms after convs are folded in (``fuse_bn``), weights are cast to ``precision``
    (``fp32``, ``bf16`` or ``fp16``) and stored channels-last (oneDNN's and cuDNN's fast layout
    for convolutions), and the result is compiled with ``torch.compile`` if asked. The copy's
    output on ``example_input`` is checked against ``model``'s: the error is in ``.check``, and
    ``ValueError`` is raised if its relative error exceeds ``tolerance`` (default 1e-4 for
    fp32, 2e-2 for fp16, 5e-2 for bf16). ``model`` itself is left unchanged.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
    tolerance = DEFAULT_TOLERANCE[precision] if tolerance is None else tolerance
    name = getattr(model, "model_name", type(model).__name__)
    dtype, device = PRECISIONS[precision], example_input.device
    if native_precision(dtype, device) is False:
        warnings.warn(
            f"{device.type} has no native {precision} arithmetic here: PyTorch emulates it, "
            "which is usually much slower than fp32",
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
    """FLOP/s of the best of ``repeats`` square matmuls, sized so one takes at least 50 ms:
    the practical peak this device reaches right now, for comparing a model's throughput to."""
    device = torch.device(device)
    size = 256
    with torch.inference_mode():
        while True:
            a = torch.randn(size, size, device=device).to(dtype)
            b = torch.randn(size, size, device=device).to(dtype)
            torch.mm(a, b)  # warm-up (library initialisation, allocation)
            best = math.inf
            for _ in range(repeats):
                _synchronize(device)
                start = time.perf_counter()
                torch.mm(a, b)
                _synchronize(device)
                best = min(best, time.perf_counter() - start)
            if best >= 0.05 or size >= 8192:
                return 2 * size**3 / best
            size *= 2


def count_macs(model: nn.Module, example: Tensor) -> int:
    """Multiply-accumulates of the conv and linear weights in one forward of ``example``, per
    image (torchvision's "GFLOPS" convention: no bias, norms, activations or pooling)."""
    total = 0

    def conv_hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.modules.conv._ConvNd)
        per_output = (module.in_channels // module.groups) * math.prod(module.kernel_size)
        total += output.numel() * per_output

    def linear_hook(module: nn.Module, inputs: Any, output: Tensor) -> None:
        nonlocal total
        assert isinstance(module, nn.Linear)
        total += output.numel() * module.in_features

    handles = []
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            handles.append(module.register_forward_hook(conv_hook))
        elif isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_hook))
    try:
        with torch.inference_mode(), eval_mode(model):
            model(example)
    finally:
        for handle in handles:
            handle.remove()
    return total // int(example.shape[0])


@dataclass(frozen=True)
class BenchResult:
    """One side of ``cnnzoo bench``: a module's timing, throughput and share of the matmul peak."""

    label: str
    precision: str
    timing: Timing
    macs_per_image: int
    flops_per_s: float  # achieved: 2 x MACs x batch / median latency
    peak_flops_per_s: float  # a square matmul at the same precision, measured in the same run
    check: OutputCheck | None

    @property
    def peak_share(self) -> float:
        return self.flops_per_s / self.peak_flops_per_s


def run_benchmark(
    model: nn.Module,
    example: Tensor,
    *,
    precision: str = "fp32",
    channels_last: bool = True,
    compile: bool = False,
    warmup: int = 2,
    iters: int = 10,
    tolerance: float | None = None,
) -> tuple[BenchResult, BenchResult]:
    """Eager fp32 ``model`` against ``optimize_for_inference(model, ...)`` on ``example``, timed
    alternately in one run so that both see the same machine load."""
    model = model.eval().to(example.device)
    macs = count_macs(model, example)
    optimized = optimize_for_inference(
        model,
        example,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        tolerance=tolerance,
    )
    # Alternate the two in rounds: a burst of load from elsewhere hits both, not one.
    rounds = max(1, min(iters, 5))
    eager_times: list[float] = []
    optimized_times: list[float] = []
    for index in range(rounds):
        share = iters // rounds + (1 if index < iters % rounds else 0)
        first_warmup = warmup if index == 0 else 0
        eager_times += time_module(model, example, warmup=first_warmup, iters=share).latencies_s
        optimized_times += time_module(
            optimized, example, warmup=first_warmup, iters=share
        ).latencies_s
    batch = int(example.shape[0])
    results = []
    for label, prec, times, check in (
        ("eager fp32", "fp32", eager_times, None),
        (f"optimised {precision}", precision, optimized_times, optimized.check),
    ):
        timing = Timing(batch, tuple(times))
        peak = matmul_peak_flops(PRECISIONS[prec], example.device)
        results.append(
            BenchResult(label, prec, timing, macs, 2 * macs * batch / timing.p50_s, peak, check)
        )
    return results[0], results[1]
