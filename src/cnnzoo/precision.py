"""Numeric precisions: the one table of names and dtypes, and which of them a device computes
natively.

Every part of cnnzoo that takes a precision name (the trainer, ``optimize_for_inference``,
``cnnzoo bench``) reads ``PRECISIONS``. ``"auto"`` is not a precision but a choice:
``resolve_precision("auto", device)`` gives bf16 where the hardware computes in it and fp32
elsewhere.
"""

from __future__ import annotations

import torch

__all__ = ["AUTO", "PRECISIONS", "native_precision", "resolve_precision"]

PRECISIONS: dict[str, torch.dtype] = {
    "fp32": torch.float32,
    "bf16": torch.bfloat16,
    "fp16": torch.float16,
}
AUTO = "auto"

# CPU flags (Linux /proc/cpuinfo names) that give native low-precision matmul/conv instructions:
# AVX512-BF16 (Cooper Lake, Zen 4) and AMX (Sapphire Rapids) for bf16, AVX512-FP16 and AMX-FP16
# for fp16. oneDNN uses them when present; without them PyTorch converts to fp32 and back.
_CPU_FLAGS = {
    torch.bfloat16: ("avx512_bf16", "amx_bf16"),
    torch.float16: ("avx512_fp16", "amx_fp16"),
}


def _cpu_flags() -> set[str] | None:
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        return None
    return None


def native_precision(dtype: torch.dtype, device: torch.device | str = "cpu") -> bool | None:
    """Whether ``device`` computes in ``dtype`` natively (None: cannot tell).

    On CPUs oneDNN's own probe decides (it knows the instruction sets it will use); the CPU
    flags are the fallback where the probe is missing.
    """
    device = torch.device(device)
    if dtype == torch.float32:
        return True
    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported()) if dtype == torch.bfloat16 else True
    if device.type != "cpu" or dtype not in _CPU_FLAGS:
        return None
    probe = "_is_mkldnn_bf16_supported" if dtype == torch.bfloat16 else "_is_mkldnn_fp16_supported"
    try:
        return bool(getattr(torch.ops.mkldnn, probe)())
    except (AttributeError, RuntimeError):
        flags = _cpu_flags()
        return None if flags is None else bool(flags & set(_CPU_FLAGS[dtype]))


def resolve_precision(precision: str, device: torch.device | str = "cpu") -> str:
    """The precision to run in: ``"auto"`` is bf16 where ``device`` has native bf16 (AMX or
    AVX512-BF16 CPUs, GPUs with bf16) and fp32 elsewhere; a precision name is returned as is."""
    if precision == AUTO:
        return "bf16" if native_precision(torch.bfloat16, device) is True else "fp32"
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose {AUTO}, {', '.join(PRECISIONS)}")
    return precision
