"""torch.distributed set-up for `torchrun`: one process per device, rank 0 writes.

Launch: ``cnnzoo train MODEL --nproc-per-node N ...`` (or ``torchrun --standalone
--nproc_per_node=N -m cnnzoo train MODEL ...``) on one machine; on several, ``torchrun --nnodes=M
--node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT --nproc_per_node=N -m cnnzoo train ...``
on each (torchrun's rendezvous). gloo on CPU, nccl on GPU.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "PeerLost",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "check_global_batch",
    "env_rank",
    "from_main",
    "launch",
    "peers_watched",
    "setup",
    "teardown",
]


_T = TypeVar("_T")


class PeerLost(RuntimeError):
    """Another rank of the job died or stopped answering; this rank ends too."""


def env_rank() -> int:
    """This process's rank as torchrun sets it (0 outside torchrun), before any set-up."""
    return int(os.environ.get("RANK", "0"))


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device: str) -> tuple[DistInfo, torch.device]:
    """Join the process group torchrun describes in the environment (if any) and pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistInfo(), torch.device(device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.startswith("cuda"):
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        backend = "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistInfo(rank, world_size, local_rank), dev


def launch(nproc: int, command: list[str]) -> int:
    """Run ``python -m cnnzoo COMMAND`` as ``nproc`` workers on this machine, as ``torchrun
    --standalone`` does (its own code, in this process), and return the job's exit status: the
    first failed worker's, so a stopped job exits 130 (torchrun itself exits 1 for any failure)
    and bad input 2; a worker killed by a signal gives 1."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import get_args_parser
    from torch.distributed.run import run as torchrun

    args = get_args_parser().parse_args(
        ["--standalone", f"--nproc-per-node={nproc}", "-m", "cnnzoo", *command]
    )
    try:
        torchrun(args)  # type: ignore[no-untyped-call]
    except ChildFailedError as error:
        _, first = error.get_first_failure()
        return first.exitcode if first.exitcode > 0 else 1
    except SignalException:  # the launcher was signalled; the workers stopped and saved
        return 130
    return 0


def check_global_batch(batch_size: int, world_size: int) -> None:
    """Raise ``ValueError`` unless ``batch_size`` (the global batch) splits evenly over
    ``world_size`` processes."""
    if batch_size % world_size:
        raise ValueError(
            f"batch size {batch_size} does not split over {world_size} processes (the batch "
            f"size is the global batch, {world_size} equal shares); use a multiple of "
            f"{world_size}"
        )


def all_reduce_sum(tensor: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Sum a tensor over ranks (a no-op in a single process)."""
    if info.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def any_rank(flag: bool, info: DistInfo, device: torch.device | None = None) -> bool:
    """True on every rank when ``flag`` is True on any: ranks agree on a stop at a step
    boundary, so they all leave the loop after the same step (none waits in a collective)."""
    if not info.enabled:
        return flag
    vote = torch.tensor([1 if flag else 0], dtype=torch.int32, device=device)
    dist.all_reduce(vote, op=dist.ReduceOp.MAX)
    return bool(vote.item())


def from_main(value: _T, info: DistInfo) -> _T:
    """Rank 0's ``value`` on every rank (``value`` itself in a single process): for the choices
    each rank would make on its own hardware (``--precision auto`` on machines of two kinds), so
    that all ranks run, and rank 0 saves, one decision."""
    if not info.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def teardown() -> None:
    """Leave the process group, if this process joined one. On every way out of a run: a group
    left to the interpreter's exit can abort it ("terminate called without an active
    exception": gloo's threads destroyed while still joinable)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@contextlib.contextmanager
def peers_watched(info: DistInfo, out: Path) -> Iterator[None]:
    """A collective failing because another rank died (gloo: connection reset; nccl: timeout)
    becomes one clear :class:`PeerLost` line instead of a traceback or a hang."""
    try:
        yield
    except RuntimeError as error:
        from cnnzoo.train.run import NonFiniteLossError

        if not info.enabled or isinstance(error, NonFiniteLossError):
            raise
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        first = re.sub(r"\[[^\]]*\] ?", "", first).split(". ")[0]  # gloo's source locations
        raise PeerLost(
            f"rank {info.rank}: another rank of the job stopped answering ({first}); "
            f"ending this one too. Resume with: cnnzoo train --resume {out}"
        ) from error
