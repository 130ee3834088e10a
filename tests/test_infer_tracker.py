"""The IoU tracker and box smoothing of ``cmpose infer`` (pure functions, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from cmpose.infer.tracker import BoxSmoother, IoUTracker, box_iou, ema_smooth, match_boxes


def test_box_iou_values() -> None:
    a = np.array([[0, 0, 10, 10], [100, 100, 10, 10]], float)
    b = np.array([[0, 0, 10, 10], [5, 0, 10, 10], [0, 0, 0, 0]], float)
    iou = box_iou(a, b)
    assert iou.shape == (2, 3)
    np.testing.assert_allclose(iou[0], [1.0, 50 / 150, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 0.0, 0.0])
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


def test_hungarian_beats_greedy() -> None:
    # Greedy would give track 0 the box it overlaps most (box 0) and leave track 1 unmatched;
    # the assignment matches both.
    tracks = np.array([[0, 0, 10, 10], [6, 0, 10, 10]], float)
    dets = np.array([[3, 0, 10, 10], [-4, 0, 10, 10]], float)
    pairs, lost, new = match_boxes(tracks, dets, iou_threshold=0.3)
    assert pairs == [(0, 1), (1, 0)] and lost == [] and new == []


def test_ids_survive_small_motion() -> None:
    tracker = IoUTracker(max_age=2)
    ids = []
    for t in range(20):
        boxes = np.array([[10 + 2 * t, 20, 40, 100], [200 - 3 * t, 30, 50, 120]], float)
        out = tracker.update(boxes, [0.9, 0.8])
        ids.append({p.track_id: tuple(p.raw_box[:2]) for p in out})
    assert all(set(i) == {0, 1} for i in ids)
    # track 0 is the box that started at x = 10, in every frame
    assert all(i[0][0] == 10 + 2 * t for t, i in enumerate(ids))


@pytest.mark.parametrize("gap, same_id", [(3, True), (4, False)])
def test_new_id_after_gap_longer_than_max_age(gap: int, same_id: bool) -> None:
    tracker = IoUTracker(max_age=3)
    box = np.array([[50, 50, 40, 80]], float)
    assert [p.track_id for p in tracker.update(box)] == [0]
    for _ in range(gap):
        assert tracker.update(np.zeros((0, 4))) == []
    (p,) = tracker.update(box)
    assert (p.track_id == 0) is same_id
    assert tracker.num_live_tracks == 1


def test_low_scores_do_not_start_tracks_but_continue_them() -> None:
    tracker = IoUTracker(new_track_score=0.5)
    assert tracker.update([[0, 0, 10, 20]], [0.3]) == []
    assert [p.track_id for p in tracker.update([[0, 0, 10, 20]], [0.9])] == [0]
    assert [p.track_id for p in tracker.update([[1, 0, 10, 20]], [0.1])] == [0]


def test_smoothing() -> None:
    still = np.tile([[10.0, 20.0, 30.0, 60.0]], (5, 1))
    np.testing.assert_allclose(ema_smooth(still, 0.5), still)
    jump = np.array([[0, 0, 10, 10], [10, 0, 10, 10]], float)
    sm = ema_smooth(jump, 0.5)
    np.testing.assert_allclose(sm[1], [5, 0, 10, 10])  # centre moved half way, size kept
    np.testing.assert_allclose(ema_smooth(jump, 1.0), jump)
    s = BoxSmoother(0.5)
    s.update([0, 0, 10, 10])
    np.testing.assert_allclose(s.update([-5, -5, 20, 20]), [-2.5, -2.5, 15, 15])  # same centre
    with pytest.raises(ValueError):
        BoxSmoother(0.0)


def test_tracker_outputs_smoothed_box() -> None:
    tracker = IoUTracker(smoothing=0.5)
    tracker.update([[0, 0, 100, 100]])
    (p,) = tracker.update([[10, 0, 100, 100]])
    np.testing.assert_allclose(p.raw_box, [10, 0, 100, 100])
    np.testing.assert_allclose(p.box, [5, 0, 100, 100])
