"""The one tracker (cmpose.track): cost functions, gated assignment, gap bridging, births and deaths,
the OKS term resolving a crossing that IoU alone gets wrong, and the offline gap filling."""

from __future__ import annotations

import numpy as np
import pytest

from cmpose.keypoints import NUM_JOINTS
from cmpose.track.bridge import interpolate_gaps
from cmpose.track.cost import assign, pose_oks, predict_box, similarity
from cmpose.track.tracker import PoseTracker

BOX = np.array([50.0, 50.0, 40.0, 80.0])


def _layout(seed: int) -> np.ndarray:
    """(J, 2) joint positions relative to a 40 x 80 box's centre: one person's pose."""
    return np.random.default_rng(seed).uniform([-20, -40], [20, 40], size=(NUM_JOINTS, 2))


def _pose(layout: np.ndarray, box: np.ndarray) -> np.ndarray:
    centre = box[:2] + box[2:] / 2
    return np.concatenate([layout + centre, np.ones((NUM_JOINTS, 1))], axis=1)


# --- pure functions -------------------------------------------------------------------------------
def test_pose_oks_identical_shifted_and_different() -> None:
    a = _pose(_layout(0), BOX)
    far = _pose(_layout(1), BOX)
    o = pose_oks(a[None], [3200.0], np.stack([a, a + [3, 0, 0], far]), [3200.0] * 3)
    assert o.shape == (1, 3)
    assert o[0, 0] == pytest.approx(1.0)
    assert 0.3 < o[0, 1] < 1.0  # a small shift costs some, not all
    assert o[0, 2] < 0.2 < o[0, 1]  # another pose is far
    assert pose_oks(np.zeros((0, NUM_JOINTS, 3)), [], a[None], [1.0]).shape == (0, 1)


def test_similarity_mixes_where_both_have_poses() -> None:
    iou = np.array([[0.8, 0.2], [0.4, 0.6]])
    oks = np.array([[0.2, 0.9], [1.0, 0.0]])
    np.testing.assert_allclose(similarity(iou, oks, 1.0, 1.0), [[0.5, 0.55], [0.7, 0.3]])
    np.testing.assert_allclose(similarity(iou, oks, 1.0, 3.0)[0, 0], (0.8 + 3 * 0.2) / 4)
    np.testing.assert_allclose(similarity(iou, None, 1.0, 1.0), iou)
    np.testing.assert_allclose(similarity(iou, oks, 1.0, 0.0), iou)
    mixed = similarity(iou, oks, 1.0, 1.0, has_pose_a=np.array([True, False]))
    np.testing.assert_allclose(mixed, [[0.5, 0.55], [0.4, 0.6]])  # track 1 has no pose: IoU alone


def test_assign_gates_and_a_gated_pair_never_displaces_a_valid_one() -> None:
    # Without the gate the solver would take (0, 1) + (1, 0) = 0.29 + 0.29 > 0.5 + 0.0.
    sim = np.array([[0.5, 0.29], [0.29, 0.0]])
    pairs, lost, new = assign(sim, threshold=0.3)
    assert pairs == [(0, 0)] and lost == [1] and new == [1]
    assert assign(np.zeros((0, 2)), 0.3) == ([], [], [0, 1])


def test_predict_box_moves_the_centre_only() -> None:
    np.testing.assert_allclose(predict_box(BOX, [2.0, -1.0], 3), [56.0, 47.0, 40.0, 80.0])


# --- the tracker ----------------------------------------------------------------------------------
@pytest.mark.parametrize("gap, same_id", [(0, True), (3, True), (4, False)])
def test_id_kept_through_a_gap_up_to_max_gap_only(gap: int, same_id: bool) -> None:
    tracker = PoseTracker(max_gap=3)
    pose = _pose(_layout(0), BOX)[None]
    for _ in range(3):
        assert [p.track_id for p in tracker.update(BOX[None], [0.9], pose)] == [0]
    for _ in range(gap):
        assert tracker.update(np.zeros((0, 4)), []) == []
    (p,) = tracker.update(BOX[None], [0.9], pose)
    assert (p.track_id == 0) is same_id
    assert p.gap == (gap if same_id else 0)
    assert p.detection == 0


def test_moving_person_bridged_by_the_velocity_prediction() -> None:
    """A person walking 8 px per frame is missed for 4 frames: its last box no longer overlaps the
    new one enough, the predicted one does."""
    boxes = [BOX + [8.0 * t, 0, 0, 0] for t in range(12)]
    for motion, same in ((True, True), (False, False)):
        tracker = PoseTracker(max_gap=4, motion=motion, oks_weight=0.0)
        ids = []
        for t, b in enumerate(boxes):
            seen = t < 4 or t >= 8
            out = tracker.update(b[None] if seen else np.zeros((0, 4)))
            ids += [p.track_id for p in out]
        assert (set(ids) == {0}) is same, (motion, ids)


def test_births_and_deaths() -> None:
    tracker = PoseTracker(max_gap=1, birth_score=0.5)
    other = BOX + [200, 0, 0, 0]
    assert tracker.update(BOX[None], [0.3]) == []  # too unsure to start a track
    out = tracker.update(np.stack([BOX, other]), [0.9, 0.6])
    assert [p.track_id for p in out] == [0, 1] and tracker.num_live_tracks == 2
    assert [p.track_id for p in tracker.update(BOX[None], [0.2])] == [0]  # a weak box continues a track
    tracker.update(np.zeros((0, 4)), [])
    assert tracker.num_live_tracks == 1  # track 1 missed twice > max_gap: ended, track 0 once
    tracker.update(np.zeros((0, 4)), [])
    assert tracker.num_live_tracks == 0
    assert [p.track_id for p in tracker.update(other[None], [0.9])] == [2]  # ids are never reused


def _crossing(oks_weight: float) -> list[dict[int, int]]:
    """Two people with different poses walk towards each other; per frame: track id -> person."""
    layouts = [_layout(0), _layout(1)]
    tracker = PoseTracker(oks_weight=oks_weight, motion=False)
    frames = []
    for t in range(3):
        xs = [0.0 + 12 * t, 20.0 - 12 * t]  # frame 1: each box overlaps the other's old box more
        boxes = np.array([[x, 0.0, 40.0, 80.0] for x in xs])
        poses = np.stack([_pose(layouts[k], boxes[k]) for k in range(2)])
        out = tracker.update(boxes, [0.9, 0.9], poses)
        frames.append({p.track_id: p.detection for p in out})
    return frames


def test_oks_resolves_a_crossing_that_iou_alone_switches() -> None:
    iou_only = _crossing(oks_weight=0.0)
    with_oks = _crossing(oks_weight=1.0)
    assert iou_only[0] == {0: 0, 1: 1} and iou_only[1] == {0: 1, 1: 0}  # the ids swapped people
    assert all(f == {0: 0, 1: 1} for f in with_oks)


def test_invalid_settings() -> None:
    with pytest.raises(ValueError):
        PoseTracker(max_gap=-1)
    with pytest.raises(ValueError):
        PoseTracker(iou_weight=0.0, oks_weight=0.0)
    with pytest.raises(ValueError):
        PoseTracker(smoothing=0.0)
    with pytest.raises(ValueError):
        PoseTracker().update(BOX[None], [0.9, 0.8])


# --- offline filling -------------------------------------------------------------------------------
def test_interpolate_gaps() -> None:
    boxes = np.array([[0, 0, 10, 20], [30, 0, 10, 20], [30, 0, 10, 20]], float)
    out = interpolate_gaps([0, 3, 9], boxes, [0.9, 0.6, 0.8], max_gap=2)
    assert [f for f, _, _ in out] == [1, 2]  # the 5-frame gap after frame 3 is too long
    np.testing.assert_allclose(out[0][1], [10, 0, 10, 20])
    np.testing.assert_allclose(out[1][1], [20, 0, 10, 20])
    assert all(s == 0.6 for _, _, s in out)
    assert interpolate_gaps([0, 1, 2], boxes, [1, 1, 1], max_gap=5) == []
    with pytest.raises(ValueError):
        interpolate_gaps([0, 0, 1], boxes, [1, 1, 1], max_gap=5)
