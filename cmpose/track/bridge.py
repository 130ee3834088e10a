"""Offline filling of the frames a track bridged: where the tracker kept a person's id through a
gap of up to ``max_gap`` missed frames, the gap's frames get boxes interpolated linearly between
the last box before and the first box after it. This needs the frame after the gap, so it runs
after tracking a whole video (``cmpose test --track``); the streaming ``cmpose infer`` keeps the
id but adds no boxes. The pose model then runs on the filled boxes like on any detection.

Unlike ``cmpose.ops.gap_fill`` (``test.gap_fill``), which links the labelled frames' boxes by IoU
alone, this follows the tracker's identities over every frame the detector ran on.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

__all__ = ["interpolate_gaps"]


def interpolate_gaps(
    frames: ArrayLike, boxes: ArrayLike, scores: ArrayLike, max_gap: int
) -> list[tuple[int, np.ndarray, float]]:
    """Boxes for the missing frames of one track.

    Args:
        frames: (L,) the frames where the track has a box, strictly increasing.
        boxes: (L, 4) its boxes x, y, w, h; scores: (L,) their scores.
        max_gap: gaps of at most this many missing frames are filled (the tracker's ``max_gap``).

    Returns:
        ``(frame, box (4,), score)`` for every filled frame, in order; the score is the lower of
        the two ends' (a filled box is no surer than the detections it came from).
    """
    f = np.asarray(frames, dtype=np.int64).reshape(-1)
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if not (len(f) == len(b) == len(s)):
        raise ValueError(f"{len(f)} frames, {len(b)} boxes and {len(s)} scores")
    if np.any(np.diff(f) <= 0):
        raise ValueError("frames must be strictly increasing")
    out = []
    for k in range(len(f) - 1):
        missing = int(f[k + 1] - f[k] - 1)
        if not 0 < missing <= max_gap:
            continue
        for m in range(1, missing + 1):
            w = m / (missing + 1)
            out.append((int(f[k] + m), (1 - w) * b[k] + w * b[k + 1], float(min(s[k], s[k + 1]))))
    return out
