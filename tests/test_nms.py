"""OKS, OKS-NMS and HRNet rescoring on hand-built poses."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmpose.keypoints import JOINT_INDEX, NUM_JOINTS
from cmpose.ops.nms import POSETRACK_SIGMAS, oks, oks_nms, rescore


def _pose(seed: int = 0, offset: float = 0.0) -> np.ndarray:
    """(J, 3) pose inside a ~100 x 200 box, all joints scored 0.9."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform([100, 100], [200, 300], size=(NUM_JOINTS, 2)) + offset
    return np.concatenate([xy, np.full((NUM_JOINTS, 1), 0.9)], axis=1)


def test_sigmas() -> None:
    assert POSETRACK_SIGMAS.shape == (NUM_JOINTS,)
    expected = {
        **{"nose": 0.026, "head_bottom": 0.025, "head_top": 0.025, "left_ear": 0.035},
        **{"right_shoulder": 0.079, "left_elbow": 0.072, "right_wrist": 0.062},
        **{"left_hip": 0.107, "right_knee": 0.087, "left_ankle": 0.089},
    }
    for name, sigma in expected.items():
        assert POSETRACK_SIGMAS[JOINT_INDEX[name]] == sigma
    with pytest.raises(ValueError):
        POSETRACK_SIGMAS[0] = 1.0  # shared constant, read-only


def test_oks_values() -> None:
    a = _pose()
    assert oks(a, a[None], 2e4, np.array([2e4]), POSETRACK_SIGMAS) == pytest.approx([1.0])
    shifted = np.stack([_pose(offset=d) for d in (0, 1, 3, 10, 50)])
    values = oks(a, shifted, 2e4, np.full(5, 2e4), POSETRACK_SIGMAS)
    assert values[0] == pytest.approx(1.0)
    assert np.all(np.diff(values) < 0) and values[-1] < 0.1  # decreases with distance
    # Symmetric: the formula uses the mean of the two areas.
    b = _pose(seed=1, offset=0)
    ab = oks(a, b[None], 1e4, np.array([3e4]), POSETRACK_SIGMAS)
    ba = oks(b, a[None], 3e4, np.array([1e4]), POSETRACK_SIGMAS)
    assert ab == pytest.approx(ba)
    # One joint by hand: sigma 0.1 -> var 0.04; d = 2 px, mean area 100: e = 4 / 0.04 / 100 / 2 = 0.5.
    one = np.array([[0.0, 0.0, 1.0]])
    other = np.array([[[2.0, 0.0, 1.0]]])
    assert oks(one, other, 50.0, np.array([150.0]), np.array([0.1])) == pytest.approx([math.exp(-0.5)])


def test_oks_visibility_threshold() -> None:
    a = _pose()
    b = a.copy()
    b[0, :2] += 500.0  # the nose is far off...
    a_hidden = a.copy()
    a_hidden[0, 2] = 0.1  # ...but the reference's nose is not confident
    full = oks(a_hidden, b[None], 2e4, np.array([2e4]), POSETRACK_SIGMAS)
    masked = oks(a_hidden, b[None], 2e4, np.array([2e4]), POSETRACK_SIGMAS, vis_thr=0.2)
    assert full == pytest.approx([(NUM_JOINTS - 1) / NUM_JOINTS])
    assert masked == pytest.approx([1.0])
    nothing = a.copy()
    nothing[:, 2] = 0.0
    assert oks(nothing, a[None], 2e4, np.array([2e4]), POSETRACK_SIGMAS, vis_thr=0.2) == [0.0]
    with pytest.raises(ValueError):
        oks(a, a[None, :5], 2e4, np.array([2e4]), POSETRACK_SIGMAS)


def test_oks_nms() -> None:
    base, far = _pose(seed=0), _pose(seed=2, offset=400.0)
    poses = np.stack([base, base + [0.5, 0.5, 0], far, base + [1.0, -0.5, 0]])
    scores = np.array([0.8, 0.95, 0.5, 0.7])
    areas = np.full(4, 2e4)
    assert oks_nms(poses, scores, areas) == [1, 2]  # the best duplicate, then the distant pose
    assert oks_nms(poses, scores, areas, thr=1.0) == [1, 0, 3, 2]  # nothing suppressed: score order
    assert oks_nms(poses[:0], scores[:0], areas[:0]) == []
    # Equal scores: the earlier pose wins.
    assert oks_nms(poses[[0, 1]], np.array([0.5, 0.5]), areas[:2]) == [0]

    # Threshold: a pair with OKS ~0.85 survives at 0.9 and is merged at 0.8.
    pair = np.stack([base, base])
    d = 0.0
    while oks(base, (base + [d, 0, 0])[None], 2e4, np.array([2e4]), POSETRACK_SIGMAS)[0] > 0.85:
        d += 0.05
    pair[1, :, 0] += d
    assert oks_nms(pair, np.array([0.9, 0.8]), areas[:2], thr=0.9) == [0, 1]
    assert oks_nms(pair, np.array([0.9, 0.8]), areas[:2], thr=0.8) == [0]


def test_rescore() -> None:
    box = np.array([0.9, 0.5, 1.0])
    joints = np.array([[0.1, 0.3, 0.5], [0.1, 0.15, 0.2], [0.9, 0.9, 0.6]])
    # 0.9 * mean(0.3, 0.5); no joint above 0.2 (0.2 is not > 0.2) -> 0; 1.0 * mean(all three).
    np.testing.assert_allclose(rescore(box, joints, thr=0.2), [0.9 * 0.4, 0.0, 0.8])
