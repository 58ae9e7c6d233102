"""torch.distributed set-up for `torchrun`: one process per device, rank 0 writes.

Launch: ``torchrun --nproc_per_node=N -m cnnzoo train MODEL ...`` on one machine; on several,
``torchrun --nnodes=M --node_rank=R --rdzv_backend=c10d --rdzv_endpoint=HOST:PORT
--nproc_per_node=N -m cnnzoo train ...`` on each (torchrun's rendezvous). gloo on CPU, nccl on GPU.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "PeerLost",
    "all_reduce_sum",
    "any_rank",
    "barrier",
    "env_rank",
    "setup",
    "teardown",
]


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


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()


def teardown(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
