"""A CLEAR-MOT event accumulator with py-motmetrics' matching rules (the one poseval uses).

Implemented here rather than depending on motmetrics: it is about 100 lines, needs no pandas, and
only the counts poseval reads are kept (no event table). The rules, as motmetrics' MOTAccumulator
applies them frame by frame (mot.py, ``update``; see docs/evaluation.md, "Tracking mode"):

1. An object whose last matched hypothesis is in the frame, still free, and a candidate (finite
   distance) keeps it, even if another pairing would be cheaper. Objects are tried in input order.
2. The other objects and hypotheses are assigned by a linear assignment that maximises the number of
   candidate pairs, then minimises their total distance (motmetrics replaces the missing pairs by a
   large finite cost). A pair is a switch when the object was last matched to another hypothesis.
3. Unassigned objects are misses, unassigned hypotheses false positives.

poseval's MOTP sums the distance column of motmetrics' whole event table, so ``sum_d`` adds, besides
the match and switch distances, every candidate distance of the frame (motmetrics' raw events) and
the distances of its extra events: ascend (a switch to a hypothesis never matched before), transfer
(a hypothesis last matched to another object) and migrate (a transfer to an object never matched).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment


@dataclass
class MotCounts:
    """Event counts of one or more accumulators (one joint). Every object is a match, a switch or a
    miss; every hypothesis a match, a switch or a false positive."""

    objects: int = 0
    hypotheses: int = 0
    matches: int = 0
    switches: int = 0
    sum_d: float = 0.0

    @property
    def misses(self) -> int:
        return self.objects - self.matches - self.switches

    @property
    def false_positives(self) -> int:
        return self.hypotheses - self.matches - self.switches

    def add(self, other: MotCounts) -> None:
        self.objects += other.objects
        self.hypotheses += other.hypotheses
        self.matches += other.matches
        self.switches += other.switches
        self.sum_d += other.sum_d


def _assign(d: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (row, column) of finite entries of ``d`` (NaN: not allowed): most pairs, then least total.

    Missing pairs get motmetrics' large cost (lap.add_expensive_edges): 2 r c + 1 with r the smaller
    side and c the largest finite |cost| + 1, so one missing pair costs more than any trade of pairs.
    """
    valid = np.isfinite(d)
    c = np.abs(d[valid]).max() + 1
    cost = np.where(valid, d, 2 * min(d.shape) * c + 1)
    r, k = linear_sum_assignment(cost)
    return [(a, b) for a, b in zip(r.tolist(), k.tolist(), strict=True) if valid[a, b]]


@dataclass
class Accumulator:
    """One video's accumulator for one joint, fed frame by frame.

    The caller counts objects, hypotheses and the raw-event distances (they need no state: see
    ``count``); ``update`` and ``update_disjoint`` only see a frame's candidate pairs.
    """

    counts: MotCounts = field(default_factory=MotCounts)
    last: dict[int, int] = field(default_factory=dict)  # object -> hypothesis it was last matched to
    owner: dict[int, int] = field(default_factory=dict)  # hypothesis -> object of its last assignment
    matched_objects: set[int] = field(default_factory=set)  # objects matched at least once
    matched_hyps: set[int] = field(default_factory=set)  # hypotheses matched at least once

    def count(self, objects: int, hypotheses: int, raw_sum_d: float) -> None:
        """A frame's objects and hypotheses, and the sum of its candidate distances. poseval's dummy
        frame (no GT or no predictions) is ``count(1, 1, 0)``: one miss, one false positive."""
        self.counts.objects += objects
        self.counts.hypotheses += hypotheses
        self.counts.sum_d += raw_sum_d

    def _carried(self, o: int, h: int, dist: float) -> None:
        self.counts.matches += 1
        self.counts.sum_d += dist
        self.matched_objects.add(o)
        self.matched_hyps.add(h)

    def _assigned(self, o: int, h: int, dist: float) -> None:
        counts = self.counts
        if o in self.last and self.last[o] != h:
            counts.switches += 1
            if h not in self.matched_hyps:  # ascend event
                counts.sum_d += dist
        else:
            counts.matches += 1
        if h in self.owner and self.owner[h] != o:  # transfer event
            counts.sum_d += dist
            if o not in self.matched_objects:  # migrate event
                counts.sum_d += dist
        counts.sum_d += dist
        self.matched_hyps.add(h)
        self.matched_objects.add(o)
        self.last[o] = h
        self.owner[h] = o

    def update_disjoint(self, o: int, h: int, dist: float) -> None:
        """A candidate pair whose object and hypothesis have no other candidate in the frame: both
        motmetrics steps end with this pair, carried forward if it was the object's last match."""
        if o in self.last and self.last[o] == h:
            self._carried(o, h, dist)
        else:
            self._assigned(o, h, dist)

    def update(self, oids: list[int], hids: list[int], d: np.ndarray) -> None:
        """A frame's candidate pairs: object ids (unique, in input order), hypothesis ids (unique) and
        their (O, H) distances, NaN where a pair is not allowed."""
        valid = np.isfinite(d)
        o_free = np.ones(len(oids), dtype=bool)
        h_free = np.ones(len(hids), dtype=bool)
        column = {h: j for j, h in enumerate(hids)}
        for i, o in enumerate(oids):  # 1. carry the earlier matches forward
            j = column.get(self.last[o], -1) if o in self.last else -1
            if j >= 0 and h_free[j] and valid[i, j]:
                o_free[i] = h_free[j] = False
                self._carried(o, hids[j], float(d[i, j]))
        rows, cols = np.flatnonzero(o_free), np.flatnonzero(h_free)
        sub = d[np.ix_(rows, cols)]
        if np.isfinite(sub).any():  # 2. assign the rest
            for a, b in _assign(sub):
                i, j = int(rows[a]), int(cols[b])
                self._assigned(oids[i], hids[j], float(d[i, j]))
