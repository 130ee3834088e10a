"""Tests for cmpose.data.sampler: keyframe grouping and the grouped, seeded, sharded sample order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmpose.data.records import PersonRecord
from cmpose.data.sampler import KeyframeGroupedSampler, keyframe_groups


def _record(video: str, frame: int) -> PersonRecord:
    return PersonRecord(video, frame, Path(f"{video}/{frame:06d}.jpg"), None, np.zeros(4))


# (video, keyframe) of each sample, deliberately interleaved so groups are not contiguous in the input.
KEYS = [
    ("a", 0), ("a", 1), ("a", 0), ("b", 0), ("a", 1), ("a", 0), ("b", 4), ("b", 0),
    ("c", 2), ("a", 5), ("b", 4), ("b", 4), ("a", 0), ("c", 2), ("b", 7), ("a", 1),
    ("d", 0), ("b", 4), ("b", 4), ("b", 4), ("a", 0), ("c", 2),
]  # fmt: skip
SAMPLES = [_record(v, f) for v, f in KEYS]


def _key(i: int) -> tuple[str, int]:
    return KEYS[i]


def _assert_grouped(order: list[int]) -> None:
    """Each keyframe's samples form one contiguous run."""
    seen: set[tuple[str, int]] = set()
    prev = None
    for i in order:
        k = _key(i)
        if k != prev:
            assert k not in seen, f"keyframe {k} split into two runs: {order}"
            seen.add(k)
            prev = k


def test_keyframe_groups_exact():
    groups = keyframe_groups(SAMPLES)
    assert groups == [
        [0, 2, 5, 12, 20],  # a/0
        [1, 4, 15],  # a/1
        [3, 7],  # b/0
        [6, 10, 11, 17, 18, 19],  # b/4
        [8, 13, 21],  # c/2
        [9],  # a/5
        [14],  # b/7
        [16],  # d/0
    ]


def test_keyframe_groups_separate_videos_with_same_frame_number():
    groups = keyframe_groups([_record("x", 3), _record("y", 3), _record("x", 3)])
    assert groups == [[0, 2], [1]]


def test_keyframe_groups_empty():
    assert keyframe_groups([]) == []


@pytest.mark.parametrize("epoch", [0, 1, 2, 7])
@pytest.mark.parametrize("seed", [0, 123])
def test_each_epoch_is_a_grouped_permutation(seed, epoch):
    sampler = KeyframeGroupedSampler(SAMPLES, seed=seed)
    sampler.set_epoch(epoch)
    order = list(sampler)
    assert sorted(order) == list(range(len(SAMPLES)))
    assert len(sampler) == len(SAMPLES)
    _assert_grouped(order)


def test_same_seed_and_epoch_same_order():
    s1 = KeyframeGroupedSampler(SAMPLES, seed=5)
    s2 = KeyframeGroupedSampler(SAMPLES, seed=5)
    s1.set_epoch(3)
    s2.set_epoch(3)
    assert list(s1) == list(s2)
    assert list(s1) == list(s1)  # iterating again does not advance any state


def test_epochs_and_seeds_change_the_order():
    sampler = KeyframeGroupedSampler(SAMPLES, seed=5)
    orders = []
    for epoch in range(6):
        sampler.set_epoch(epoch)
        orders.append(tuple(sampler))
    assert len(set(orders)) == 6
    other = KeyframeGroupedSampler(SAMPLES, seed=6)
    other.set_epoch(0)
    assert tuple(other) != orders[0]


def test_group_order_and_within_group_order_are_both_shuffled():
    sampler = KeyframeGroupedSampler(SAMPLES, seed=0)
    first_keys, b4_orders = set(), set()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        order = list(sampler)
        first_keys.add(_key(order[0]))
        b4_orders.add(tuple(i for i in order if _key(i) == ("b", 4)))
    assert len(first_keys) >= 4  # different keyframes lead
    assert len(b4_orders) >= 10  # 6 people of one keyframe in many orders (720 possible)


@pytest.mark.parametrize("world_size", [2, 3, 5])
@pytest.mark.parametrize("epoch", [0, 4])
def test_ranks_take_equal_contiguous_shares_of_one_order(world_size, epoch):
    """DistributedSampler semantics: the single-process order, padded by repeating its start to
    a multiple of world_size, cut into equal contiguous shares (unequal shares would hang DDP)."""
    whole = KeyframeGroupedSampler(SAMPLES, seed=9)
    whole.set_epoch(epoch)
    order = list(whole)
    share = -(-len(SAMPLES) // world_size)
    padded = (order * 2)[: share * world_size]
    parts = []
    for rank in range(world_size):
        s = KeyframeGroupedSampler(SAMPLES, seed=9, rank=rank, world_size=world_size)
        s.set_epoch(epoch)
        parts.append(list(s))
        assert len(parts[-1]) == len(s) == share
    assert [i for p in parts for i in p] == padded
    assert set(padded) == set(range(len(SAMPLES)))  # every sample is seen


def test_rank_out_of_range_is_rejected():
    with pytest.raises(ValueError, match="rank"):
        KeyframeGroupedSampler(SAMPLES, rank=2, world_size=2)


def test_len_matches_iteration_single_process():
    sampler = KeyframeGroupedSampler(SAMPLES, seed=2)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert len(sampler) == len(list(sampler)) == len(SAMPLES)


def test_len_matches_iteration_per_rank():
    for epoch in range(3):
        for rank in range(2):
            s = KeyframeGroupedSampler(SAMPLES, seed=0, rank=rank, world_size=2)
            s.set_epoch(epoch)
            assert len(s) == len(list(s)), (epoch, rank)


def test_works_with_a_dataloader():
    torch = pytest.importorskip("torch")
    sampler = KeyframeGroupedSampler(SAMPLES, seed=4)
    loader = torch.utils.data.DataLoader(list(range(len(SAMPLES))), batch_size=4, sampler=sampler)
    got = torch.cat(list(loader)).tolist()
    assert got == list(sampler)
