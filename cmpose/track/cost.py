"""The tracker's pure functions: the similarity of tracks to detections (box IoU and the OKS of
poses), the gated Hungarian assignment, and the constant-velocity box prediction.

Shapes: A tracks, D detections, J joints; boxes are ``(x, y, w, h)`` in image pixels, poses
``(x, y, score)`` per joint in image pixels.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment

from cmpose.ops.boxes import as_boxes
from cmpose.ops.nms import POSETRACK_SIGMAS, oks

__all__ = ["assign", "pose_oks", "predict_box", "similarity"]


def pose_oks(
    poses_a: ArrayLike,
    areas_a: ArrayLike,
    poses_b: ArrayLike,
    areas_b: ArrayLike,
    sigmas: np.ndarray = POSETRACK_SIGMAS,
) -> np.ndarray:
    """OKS of every pair of poses: poses_a (A, J, 3), poses_b (D, J, 3) -> (A, D) in [0, 1].

    cocoapi's formula with the per-joint sigmas of COCO in PoseTrack18's joint order
    (``cmpose.ops.nms.POSETRACK_SIGMAS``); the scale is the mean of the two *box* areas, as
    HRNet's ``oks_iou`` compares two predicted poses (there is no segmentation area here). Every
    joint counts: a pose predicted from a crop has all J joints.
    """
    a = np.asarray(poses_a, dtype=np.float64)
    b = np.asarray(poses_b, dtype=np.float64)
    areas_a = np.asarray(areas_a, dtype=np.float64).reshape(-1)
    areas_b = np.asarray(areas_b, dtype=np.float64).reshape(-1)
    out = np.zeros((len(a), len(b)))
    if len(a) and len(b):
        for i in range(len(a)):
            out[i] = oks(a[i], b, float(areas_a[i]), areas_b, sigmas)
    return out


def similarity(
    iou: np.ndarray,
    oks_matrix: np.ndarray | None,
    iou_weight: float,
    oks_weight: float,
    has_pose_a: np.ndarray | None = None,
    has_pose_b: np.ndarray | None = None,
) -> np.ndarray:
    """The weighted mean ``(w_iou * IoU + w_oks * OKS) / (w_iou + w_oks)`` (A, D), where both the
    track and the detection have a pose; IoU alone for the pairs where either has none (and
    everywhere when ``oks_matrix`` is None or ``oks_weight`` is 0)."""
    iou = np.asarray(iou, dtype=np.float64)
    if oks_matrix is None or oks_weight == 0 or iou.size == 0:
        return iou.copy()
    both = np.ones(iou.shape, bool)
    if has_pose_a is not None:
        both &= np.asarray(has_pose_a, bool)[:, None]
    if has_pose_b is not None:
        both &= np.asarray(has_pose_b, bool)[None, :]
    mixed = (iou_weight * iou + oks_weight * np.asarray(oks_matrix, np.float64)) / (iou_weight + oks_weight)
    return np.where(both, mixed, iou)


def assign(sim: np.ndarray, threshold: float) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian assignment maximising the total similarity over the pairs that pass the gate
    ``sim >= threshold`` (the others cannot pair: their similarity counts as 0 in the solver, so a
    gated-out pair never displaces a valid one).

    Returns:
        ``(pairs, unmatched_a, unmatched_b)``: pairs (i, j) sorted by i; the unmatched indices of
        the rows (tracks) and columns (detections), ascending.
    """
    sim = np.asarray(sim, dtype=np.float64)
    n, m = sim.shape
    pairs: list[tuple[int, int]] = []
    if n and m:
        ok = sim >= threshold
        rows, cols = linear_sum_assignment(-np.where(ok, sim, 0.0))
        pairs = sorted((int(i), int(j)) for i, j in zip(rows, cols, strict=True) if ok[i, j])
    used_a = {i for i, _ in pairs}
    used_b = {j for _, j in pairs}
    return pairs, [i for i in range(n) if i not in used_a], [j for j in range(m) if j not in used_b]


def predict_box(last: ArrayLike, velocity: ArrayLike, frames: int) -> np.ndarray:
    """Constant-velocity prediction: the box ``last`` (4,) xywh moved by ``velocity`` (2,) pixels per
    frame of its centre for ``frames`` frames; the size is kept."""
    box = as_boxes(np.asarray(last, dtype=np.float64).reshape(1, 4))[0].copy()
    box[:2] += np.asarray(velocity, dtype=np.float64).reshape(2) * frames
    return box
