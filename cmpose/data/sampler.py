"""Sample orders that keep a keyframe's people together, so decoded frames are reused.

Every person of a keyframe needs the same T frames. With a plain random order a worker decodes
T JPEGs per clip; visiting a keyframe's people one after another (keyframes in random order)
lets the worker's frame cache serve all but the first of them. Batches then hold B / P
keyframes (P people per frame) instead of B, which is the price of the speed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from cmpose.data.records import PersonRecord


def keyframe_groups(samples: Sequence[PersonRecord]) -> list[list[int]]:
    """Sample indices grouped by (video, keyframe), groups in first-seen order."""
    groups: dict[tuple[str, int], list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        groups[(s.video_id, s.frame_index)].append(i)
    return list(groups.values())


class KeyframeGroupedSampler(Sampler[int]):
    """Random order of keyframes; each keyframe's people consecutively (in random order).

    Args:
        samples: the dataset's records.
        seed: base seed; the order of epoch e is fixed by (seed, e).
        rank, world_size: for distributed training. As in ``DistributedSampler``, the epoch's
            order is padded (by repeating its start) to a multiple of world_size and each rank
            takes one contiguous share, so every rank gets the same number of samples (unequal
            counts would hang DDP) and keyframe groups stay together except at share borders.
    """

    def __init__(
        self, samples: Sequence[PersonRecord], seed: int = 0, rank: int = 0, world_size: int = 1
    ) -> None:
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in 0..world_size-1, got rank {rank}, world_size {world_size}")
        self.groups = keyframe_groups(samples)
        self.num_samples = len(samples)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[int]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = [
            self.groups[g][i]
            for g in rng.permutation(len(self.groups))
            for i in rng.permutation(len(self.groups[g]))
        ]
        share = len(self)
        if order:  # pad by repeating the start, as DistributedSampler does
            order = (order * -(-share * self.world_size // len(order)))[: share * self.world_size]
        return iter(order[self.rank * share : (self.rank + 1) * share])

    def __len__(self) -> int:
        return -(-self.num_samples // self.world_size)
