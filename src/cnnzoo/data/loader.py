"""Batches drawn by index from a dataset held whole on the training device.

No per-sample Python: each batch is one gather from the uint8 image tensor plus the batched
augmentation. The order is a function of (seed, epoch) and the augmentation of each batch a
function of (seed, epoch, batch, rank), so the position ``(epoch, index)`` is the whole state: a
run resumed from :meth:`DeviceLoader.state_dict` mid-epoch sees exactly the batches it would
have seen. Ranks share the epoch's permutation and take every ``world_size``-th sample, as
``torch.utils.data.DistributedSampler`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["DeviceLoader", "mix_seed", "shard_indices"]

Transform = Callable[[Tensor, torch.Generator | None], Tensor]


def mix_seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (numpy's SeedSequence hash): nearby inputs such as
    (seed, epoch) and (seed, epoch + 1) give unrelated streams."""
    words = np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2)
    return (int(words[0]) << 31) ^ int(words[1])


def shard_indices(order: Tensor, rank: int, world_size: int, *, pad: bool = True) -> Tensor:
    """Rank ``rank``'s share of ``order``: every ``world_size``-th element from ``rank``.

    ``pad=True`` first repeats the head of ``order`` so every rank gets the same count (training
    must step in lockstep); ``pad=False`` gives each sample to exactly one rank (evaluation).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
    if pad and len(order) % world_size:
        total = -(-len(order) // world_size) * world_size
        repeats = -(-total // len(order))
        order = order.repeat(repeats)[:total]
    return order[rank::world_size]


def _world() -> tuple[int, int]:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class DeviceLoader:
    """Iterates ``(images, labels)`` batches of one epoch from tensors moved once to ``device``.

    ``transform(batch_uint8, generator)`` makes the model input (e.g. a
    :class:`cnnzoo.data.Pipeline`); without one, batches stay uint8. Each ``for`` loop runs the
    rest of the current epoch, then the next loop starts the next epoch. ``rank``/``world_size``
    default to torch.distributed's when it is initialised.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Tensor,
        *,
        batch_size: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        transform: Transform | None = None,
        device: torch.device | str | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        pad_shards: bool | None = None,
    ) -> None:
        if len(images) != len(labels):
            raise ValueError(f"{len(images)} images but {len(labels)} labels")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = torch.device(device) if device is not None else images.device
        self.images = images.to(self.device)
        self.labels = labels.to(self.device)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.drop_last = drop_last
        self.transform = transform
        default_rank, default_world = _world()
        self.rank = default_rank if rank is None else rank
        self.world_size = default_world if world_size is None else world_size
        # training shuffles and must keep ranks in step; evaluation must see each sample once
        self.pad_shards = shuffle if pad_shards is None else pad_shards
        self.epoch = 0
        self.index = 0  # batches of the current epoch already handed out
        # an unpadded (evaluation) shard may be empty when ranks outnumber samples; otherwise
        # zero batches is a mistake (e.g. drop_last with fewer samples than one batch)
        if len(self.images) == 0 or (len(self) == 0 and self.num_samples > 0):
            raise ValueError(
                f"no batches: {len(self.images)} samples, batch_size {batch_size}, "
                f"drop_last={drop_last}, world_size {self.world_size}"
            )

    @property
    def num_samples(self) -> int:
        """Samples this rank sees per epoch (what :func:`shard_indices` gives it)."""
        n = len(self.images)
        if self.pad_shards:
            return -(-n // self.world_size)
        return len(range(self.rank, n, self.world_size))

    def __len__(self) -> int:
        """Batches per epoch on this rank."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def epoch_order(self, epoch: int) -> Tensor:
        """This rank's sample indices for ``epoch`` (on the CPU)."""
        n = len(self.images)
        if self.shuffle:
            generator = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
            order = torch.randperm(n, generator=generator)
        else:
            order = torch.arange(n)
        return shard_indices(order, self.rank, self.world_size, pad=self.pad_shards)

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its first batch."""
        self.epoch, self.index = epoch, 0

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = self.epoch_order(self.epoch).to(self.device)
        batches = len(self)
        while self.index < batches:
            step = self.index
            idx = order[step * self.batch_size : (step + 1) * self.batch_size]
            # index_select, not images[idx]: many times faster for a gather along dim 0
            x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if self.transform is not None:
                seed = mix_seed(self.seed, self.epoch, step, self.rank)
                x = self.transform(x, torch.Generator().manual_seed(seed))
            self.index = step + 1  # before the yield: a checkpoint taken now resumes after it
            yield x, y
        self.epoch, self.index = self.epoch + 1, 0

    def state_dict(self) -> dict[str, Any]:
        """The position (epoch, index) and the settings it is only valid with."""
        return {
            "epoch": self.epoch,
            "index": self.index,
            "seed": self.seed,
            "batch_size": self.batch_size,
            "num_images": len(self.images),
            "world_size": self.world_size,
            "shuffle": self.shuffle,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Resume at a saved position; refuses a state saved with different settings."""
        for key in ("seed", "batch_size", "num_images", "world_size", "shuffle", "drop_last"):
            mine = self.state_dict()[key]
            if state.get(key) != mine:
                raise ValueError(
                    f"cannot resume: the loader state was saved with {key}={state.get(key)!r}, "
                    f"this loader has {key}={mine!r} (the batch order would differ)"
                )
        if not 0 <= state["index"] <= len(self):
            raise ValueError(f"cannot resume at batch {state['index']} of {len(self)}")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])
