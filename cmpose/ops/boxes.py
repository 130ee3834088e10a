"""Box geometry shared by the tracker, the detectors and the evaluation: pairwise IoU and the
Hungarian matching of two box sets. Boxes are ``(x, y, w, h)`` in image pixels."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy.optimize import linear_sum_assignment


def as_boxes(boxes: ArrayLike) -> np.ndarray:
    """Boxes as a float64 (N, 4) array; an empty input gives (0, 4)."""
    b = np.asarray(boxes, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4))
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) x, y, w, h; got shape {b.shape}")
    return b


def box_iou(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """IoU of every pair: a (N, 4), b (M, 4) xywh -> (N, M) in [0, 1] (0 for empty boxes)."""
    a, b = as_boxes(a), as_boxes(b)
    ax0, ay0, ax1, ay1 = a[:, 0], a[:, 1], a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax1[:, None], bx1[None]) - np.maximum(ax0[:, None], bx0[None]), 0, None)
    ih = np.clip(np.minimum(ay1[:, None], by1[None]) - np.maximum(ay0[:, None], by0[None]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2], 0, None) * np.clip(a[:, 3], 0, None)
    area_b = np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def match_boxes(
    a: ArrayLike, b: ArrayLike, iou_threshold: float
) -> tuple[list[tuple[int, int]], list[int], list[int]]:
    """Hungarian matching of boxes ``a`` (N, 4) to boxes ``b`` (M, 4) maximising the total IoU.

    Returns:
        ``(pairs, unmatched_a, unmatched_b)``: pairs (i, j) with IoU >= ``iou_threshold``, sorted
        by i; the indices of ``a`` and of ``b`` left without a partner, ascending.
    """
    iou = box_iou(a, b)
    n, m = iou.shape
    pairs: list[tuple[int, int]] = []
    if n and m:
        rows, cols = linear_sum_assignment(-iou)
        pairs = sorted(
            (int(i), int(j)) for i, j in zip(rows, cols, strict=True) if iou[i, j] >= iou_threshold
        )
    used_a = {i for i, _ in pairs}
    used_b = {j for _, j in pairs}
    return pairs, [i for i in range(n) if i not in used_a], [j for j in range(m) if j not in used_b]
