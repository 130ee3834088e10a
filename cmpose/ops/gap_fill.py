"""Filling a detector's gaps from neighbouring frames: a person the detector misses in one frame
but finds in the frames around it gets the box it has there.

Top-down PoseTrack pipelines recover missed detections this way: Simple Baselines (Xiao et al.,
ECCV 2018) and HRNet's PoseTrack entry propagate boxes from the previous frame with optical flow,
LightTrack propagates them from the previous frame's pose. Here, without flow: a box of the frame
before and one of the frame after that overlap are averaged (the person between two positions),
a box seen on one side only is copied. Boxes are x, y, w, h in image pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from cmpose.ops.boxes import box_iou, match_boxes


def _unexplained(
    frames: Sequence[int],
    boxes: list[np.ndarray],
    scores: list[np.ndarray],
    i: int,
    j: int,
    max_gap: int,
    min_score: float,
    link_iou: float,
) -> np.ndarray:
    """Indices of neighbour j's confident boxes that overlap none of frame i's own boxes: the
    people frame i may have missed (none when j is outside the video or too far away)."""
    if not (max_gap > 0 and 0 <= j < len(frames) and abs(frames[j] - frames[i]) <= max_gap):
        return np.zeros(0, int)
    keep = scores[j] >= min_score
    if len(boxes[i]) and len(boxes[j]):
        keep &= box_iou(boxes[j], boxes[i]).max(1) < link_iou
    return np.flatnonzero(keep)


def fill_gaps(
    frames: Sequence[int],
    boxes: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    max_gap: int,
    min_score: float = 0.5,
    link_iou: float = 0.3,
    score_decay: float = 0.8,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The boxes to add to each frame of one video.

    Args:
        frames: the frame indices that carry detections (every labelled frame, those where the
            detector found nobody included), ascending.
        boxes / scores: each frame's detections, (P_i, 4) x, y, w, h and (P_i,).
        max_gap: a neighbour more than this many frames away is not used (0 = fill nothing).
        min_score: only neighbour boxes scoring at least this fill a gap (a doubtful box in a
            neighbour is as likely a false positive as a person).
        link_iou: a neighbour box overlapping one of the frame's own boxes by this IoU is the
            same person, found: nothing to fill. Also the IoU at which the box before and the
            box after are taken for one person.
        score_decay: an added box scores this times the lower of its sources' scores, so it
            ranks below the detector's own boxes.

    Returns:
        per frame, the added boxes (A_i, 4) and their scores (A_i,). Only the detector's own
        boxes are propagated, never added ones, so a gap is filled from its direct neighbours.
    """
    if not len(frames) == len(boxes) == len(scores):
        raise ValueError(f"{len(frames)} frames, {len(boxes)} box arrays, {len(scores)} score arrays")
    if any(b >= a for a, b in zip(frames[1:], frames[:-1], strict=False)):
        raise ValueError(f"frames must ascend, got {list(frames)}")
    boxes = [np.asarray(b, np.float64).reshape(-1, 4) for b in boxes]
    scores = [np.asarray(s, np.float64).reshape(-1) for s in scores]
    out = []
    for i in range(len(frames)):
        before = _unexplained(frames, boxes, scores, i, i - 1, max_gap, min_score, link_iou)
        after = _unexplained(frames, boxes, scores, i, i + 1, max_gap, min_score, link_iou)
        added_boxes, added_scores = [], []
        linked_b, linked_a = set(), set()
        if len(before) and len(after):
            pairs, _, _ = match_boxes(boxes[i - 1][before], boxes[i + 1][after], link_iou)
            for b, a in pairs:
                added_boxes.append((boxes[i - 1][before[b]] + boxes[i + 1][after[a]]) / 2)
                added_scores.append(score_decay * min(scores[i - 1][before[b]], scores[i + 1][after[a]]))
                linked_b.add(b)
                linked_a.add(a)
        for j, idx, linked in ((i - 1, before, linked_b), (i + 1, after, linked_a)):
            for k, d in enumerate(idx):
                if k not in linked:
                    added_boxes.append(boxes[j][d])
                    added_scores.append(score_decay * scores[j][d])
        out.append((np.array(added_boxes).reshape(-1, 4), np.array(added_scores, np.float64)))
    return out
