"""How many threads a run computes with: ``--threads``, else OMP_NUM_THREADS (torchrun sets 1
per process), else the physical cores this process may run on (hyperthread siblings share one
core's arithmetic units, so counting them only adds contention)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["default_threads", "physical_cores"]


def physical_cores() -> int:
    """Physical cores among the CPUs this process may use (Linux sysfs; else the CPU count)."""
    try:
        allowed = sorted(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
    cores = set()
    for cpu in allowed:
        siblings = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/thread_siblings_list")
        try:
            cores.add(siblings.read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def default_threads() -> int:
    value = os.environ.get("OMP_NUM_THREADS", "")
    if value.isdigit() and int(value) > 0:
        return int(value)
    return physical_cores()
