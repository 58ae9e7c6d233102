"""DeviceLoader: every sample once per epoch, seeded order, exact mid-epoch resume, sharding."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnzoo.data import DeviceLoader, build_pipeline, shard_indices


def _data(n: int = 50) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 4, 4).contiguous()
    return images, torch.arange(n)  # label = sample id


def _ids(loader: DeviceLoader) -> list[list[int]]:
    return [y.tolist() for _, y in loader]


def _flat(lists: list[list[int]]) -> list[int]:
    return list(itertools.chain.from_iterable(lists))


def test_each_epoch_is_a_fresh_permutation_of_all_samples() -> None:
    loader = DeviceLoader(*_data(), batch_size=8, seed=1)
    first, second = _ids(loader), _ids(loader)
    assert len(first) == len(loader) == 7 and [len(b) for b in first][-1] == 2
    assert sorted(_flat(first)) == list(range(50)) == sorted(_flat(second))
    assert _flat(first) != _flat(second) and loader.epoch == 2


def test_order_is_a_function_of_seed_and_epoch() -> None:
    a, b = (
        DeviceLoader(*_data(), batch_size=8, seed=7),
        DeviceLoader(*_data(), batch_size=8, seed=7),
    )
    assert _ids(a) == _ids(b)
    c = DeviceLoader(*_data(), batch_size=8, seed=8)
    assert _ids(c) != _ids(DeviceLoader(*_data(), batch_size=8, seed=7))
    d = DeviceLoader(*_data(), batch_size=8, seed=7)
    d.set_epoch(1)
    assert _ids(d) == _ids(a)  # a is now at epoch 1 too


def test_batches_are_gathered_images_with_their_labels() -> None:
    loader = DeviceLoader(*_data(), batch_size=16, shuffle=False, drop_last=True)
    batches = list(loader)
    assert len(batches) == 3
    x, y = batches[1]
    assert x.dtype == torch.uint8 and x.shape == (16, 1, 4, 4) and y.dtype == torch.int64
    assert torch.equal(x[:, 0, 0, 0].long(), y) and y.tolist() == list(range(16, 32))


def _augmented_loader(seed: int = 3) -> DeviceLoader:
    images = torch.randint(0, 256, (40, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator())
    pipe = build_pipeline(
        "resnet_cifar_erasing", mean=(0.5,) * 3, std=(0.2,) * 3, train=True, data_size=(3, 8, 8)
    )
    return DeviceLoader(images, torch.arange(40), batch_size=6, seed=seed, transform=pipe)


def test_resume_mid_epoch_reproduces_batches_and_augmentation_exactly() -> None:
    reference = _augmented_loader()
    full = [b for _ in range(2) for b in reference]  # two whole epochs, uninterrupted
    run = _augmented_loader()
    seen = list(run)  # epoch 0
    it = iter(run)
    seen += [next(it) for _ in range(3)]  # 3 batches into epoch 1, then "crash"
    buffer = io.BytesIO()
    torch.save(run.state_dict(), buffer)
    assert run.state_dict()["epoch"] == 1 and run.state_dict()["index"] == 3
    resumed = _augmented_loader()
    buffer.seek(0)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    seen += list(resumed)
    assert len(seen) == len(full)
    for (x1, y1), (x2, y2) in zip(seen, full, strict=True):
        assert torch.equal(y1, y2) and torch.equal(x1, x2)
    assert resumed.epoch == 2 and resumed.index == 0


def test_augmentation_differs_between_batches_epochs_and_ranks() -> None:
    loader = _augmented_loader()
    e0, e1 = [x for x, _ in loader], [x for x, _ in loader]
    assert not torch.equal(e0[0], e1[0])
    images = torch.full((8, 3, 8, 8), 200, dtype=torch.uint8)
    pipe = build_pipeline(
        "resnet_cifar", mean=(0.5,) * 3, std=(0.2,) * 3, train=True, data_size=(3, 8, 8)
    )
    outs = [
        next(
            iter(
                DeviceLoader(
                    images,
                    torch.zeros(8, dtype=torch.long),
                    batch_size=4,
                    shuffle=False,
                    transform=pipe,
                    rank=r,
                    world_size=2,
                    pad_shards=True,
                )
            )
        )[0]
        for r in (0, 1)
    ]
    assert not torch.equal(outs[0], outs[1])  # same pixels, different crops per rank


def test_state_from_other_settings_is_refused() -> None:
    state = DeviceLoader(*_data(), batch_size=8).state_dict()
    with pytest.raises(ValueError, match="saved with batch_size=8, this loader has batch_size=10"):
        DeviceLoader(*_data(), batch_size=10).load_state_dict(state)
    with pytest.raises(ValueError, match="cannot resume at batch 99"):
        DeviceLoader(*_data(), batch_size=8).load_state_dict({**state, "index": 99})


@pytest.mark.parametrize("world_size", [2, 3, 4])
def test_ranks_split_one_shared_permutation(world_size: int) -> None:
    shards = [
        _ids(DeviceLoader(*_data(), batch_size=5, seed=2, rank=r, world_size=world_size))
        for r in range(world_size)
    ]
    flat = [_flat(s) for s in shards]
    assert len({len(f) for f in flat}) == 1  # lockstep: every rank the same count
    everything = _flat(flat)
    assert sorted(set(everything)) == list(range(50))
    assert len(everything) - 50 == (-50) % world_size  # only the padding repeats
    evaluation = [
        _flat(
            _ids(DeviceLoader(*_data(), batch_size=5, shuffle=False, rank=r, world_size=world_size))
        )
        for r in range(world_size)
    ]
    assert sorted(_flat(evaluation)) == list(range(50))  # each sample exactly once


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 60), st.integers(1, 7), st.booleans())
def test_shard_indices_partition(n: int, world_size: int, pad: bool) -> None:
    order = torch.randperm(n)
    shards = [shard_indices(order, r, world_size, pad=pad) for r in range(world_size)]
    joined = torch.cat(shards).tolist()
    assert set(joined) == set(order.tolist())
    if pad:
        assert (
            len({len(s) for s in shards}) == 1 and len(joined) == -(-n // world_size) * world_size
        )
    else:
        assert sorted(joined) == sorted(order.tolist())


def test_bad_arguments() -> None:
    images, labels = _data()
    with pytest.raises(ValueError, match="50 images but 49 labels"):
        DeviceLoader(images, labels[:49], batch_size=4)
    with pytest.raises(ValueError, match="no batches"):
        DeviceLoader(images, labels, batch_size=64, drop_last=True)
    with pytest.raises(ValueError, match=r"rank 3 is outside 0\.\.2"):
        shard_indices(torch.arange(5), 3, 3)


def _ddp_worker(rank: int, world_size: int, init_file: str, out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        loader = DeviceLoader(*_data(), batch_size=4, seed=5)  # rank and world from dist
        ids = torch.tensor(_flat(_ids(loader)))
        gathered = [torch.zeros_like(ids) for _ in range(world_size)]
        dist.all_gather(gathered, ids)
        torch.save(
            {"rank": loader.rank, "world": loader.world_size, "ids": gathered},
            f"{out_dir}/{rank}.pt",
        )
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_shards_under_a_real_torch_distributed_group(tmp_path: Path) -> None:
    import torch.multiprocessing as mp

    # fork: the children need not import torch again (CPU and gloo only, so forking is safe)
    args = (2, str(tmp_path / "init"), str(tmp_path))
    mp.start_processes(_ddp_worker, args=args, nprocs=2, start_method="fork")
    results = [torch.load(tmp_path / f"{r}.pt", weights_only=True) for r in range(2)]
    assert [(r["rank"], r["world"]) for r in results] == [(0, 2), (1, 2)]
    shards = [ids.tolist() for ids in results[0]["ids"]]
    assert len(shards[0]) == len(shards[1]) == 25 and not set(shards[0]) & set(shards[1])
    assert sorted(shards[0] + shards[1]) == list(range(50))
    expected = DeviceLoader(*_data(), batch_size=4, seed=5, rank=1, world_size=2)
    assert shards[1] == _flat(_ids(expected))  # the same order as the explicit rank


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 40), st.integers(1, 5), st.booleans(), st.data())
def test_num_samples_matches_the_shard(
    n: int, world_size: int, shuffle: bool, data: st.DataObject
) -> None:
    rank = data.draw(st.integers(0, world_size - 1))
    loader = DeviceLoader(
        *_data(n), batch_size=64, shuffle=shuffle, rank=rank, world_size=world_size
    )
    assert len(loader.epoch_order(0)) == loader.num_samples
    assert len(loader) == min(1, loader.num_samples) == len(_ids(loader))
    assert len(_flat(_ids(loader))) == loader.num_samples
