"""The motmetrics-rule accumulator behind ``cmpose evaluate --track``, one frame at a time."""

from __future__ import annotations

import numpy as np
import pytest

from cmpose.eval.track_mot import Accumulator

NAN = np.nan


def _frame(acc: Accumulator, oids: list[int], hids: list[int], d: list[list[float]]) -> None:
    """Feed a frame as the evaluator does: counts and raw distances, then the candidate pairs."""
    d_arr = np.array(d, dtype=np.float64).reshape(len(oids), len(hids))
    acc.count(len(oids), len(hids), float(np.nansum(d_arr)))
    acc.update(oids, hids, d_arr)


def test_matches_misses_false_positives():
    acc = Accumulator()
    _frame(acc, [1, 2], [10, 11, 12], [[0.1, NAN, NAN], [NAN, NAN, NAN]])
    c = acc.counts
    assert (c.objects, c.matches, c.switches, c.misses, c.false_positives) == (2, 1, 0, 1, 2)


def test_assignment_maximises_pairs_before_distance():
    # Greedy (object 1 -> 10, the closest) would leave object 2 alone; two pairs beat a cheaper one.
    acc = Accumulator()
    _frame(acc, [1, 2], [10, 11], [[0.0, 0.3], [0.4, NAN]])
    assert acc.last == {1: 11, 2: 10}
    assert acc.counts.matches == 2


def test_earlier_match_is_kept_even_if_another_is_closer():
    acc = Accumulator()
    _frame(acc, [1], [10], [[0.1]])
    _frame(acc, [1], [10, 11], [[0.4, 0.0]])
    c = acc.counts
    assert (c.matches, c.switches, c.false_positives) == (2, 0, 1)
    # MOTP's distance sum is motmetrics' whole event table: every candidate pair (raw events)
    # plus the match events: 0.1 + 0.1, then 0.4 + 0.0 + 0.4.
    assert c.sum_d == pytest.approx(1.0)


def test_switch_to_a_new_hypothesis_adds_an_ascend_distance():
    acc = Accumulator()
    _frame(acc, [1], [10], [[0.1]])
    _frame(acc, [1], [11], [[0.2]])  # 10 is gone; 11 was never matched: switch + ascend
    c = acc.counts
    assert (c.matches, c.switches) == (1, 1)
    assert c.sum_d == pytest.approx(0.1 * 2 + 0.2 * 3)


def test_swapped_ids_are_two_switches_with_transfer_distances():
    acc = Accumulator()
    _frame(acc, [1, 2], [10, 11], [[0.1, NAN], [NAN, 0.1]])
    _frame(acc, [1, 2], [10, 11], [[NAN, 0.2], [0.2, NAN]])
    c = acc.counts
    assert (c.matches, c.switches, c.misses) == (2, 2, 0)
    # Second frame, per pair: raw + switch + transfer (the hypothesis belonged to the other object);
    # no ascend (both hypotheses were matched before), no migrate (both objects were).
    assert c.sum_d == pytest.approx(4 * 0.1 + 2 * 3 * 0.2)


def test_transfer_to_a_new_object_adds_a_migrate_distance():
    acc = Accumulator()
    _frame(acc, [1], [10], [[0.1]])
    _frame(acc, [2], [10], [[0.3]])  # 10 moves to object 2, which was never matched
    c = acc.counts
    assert (c.matches, c.switches) == (2, 0)
    assert c.sum_d == pytest.approx(2 * 0.1 + 4 * 0.3)  # raw + match + transfer + migrate


def test_return_to_the_earlier_hypothesis_is_a_switch():
    acc = Accumulator()
    _frame(acc, [1], [10], [[0.1]])
    _frame(acc, [1], [11], [[0.1]])
    _frame(acc, [1], [10, 11], [[0.1, NAN]])
    assert (acc.counts.matches, acc.counts.switches) == (1, 2)


def test_a_miss_does_not_forget_the_earlier_match():
    acc = Accumulator()
    _frame(acc, [1], [10], [[0.1]])
    _frame(acc, [1], [], [])
    _frame(acc, [1], [10], [[0.1]])
    c = acc.counts
    assert (c.matches, c.switches, c.misses) == (2, 0, 1)


def test_dummy_frame_is_one_miss_and_one_false_positive():
    acc = Accumulator()
    acc.count(1, 1, 0.0)
    c = acc.counts
    assert (c.objects, c.misses, c.false_positives, c.matches) == (1, 1, 1, 0)


def test_disjoint_fast_path_equals_the_general_update():
    frames = [([1, 2], [10, 11], [[0.1, NAN], [NAN, 0.2]]), ([1, 2], [11, 10], [[0.3, NAN], [NAN, 0.1]])]
    general, fast = Accumulator(), Accumulator()
    for oids, hids, d in frames:
        _frame(general, oids, hids, d)
        d_arr = np.array(d)
        fast.count(len(oids), len(hids), float(np.nansum(d_arr)))
        for i, j in zip(*np.nonzero(np.isfinite(d_arr)), strict=True):
            fast.update_disjoint(oids[i], hids[j], float(d_arr[i, j]))
    assert general.counts == fast.counts
    assert (general.last, general.owner) == (fast.last, fast.owner)
