"""A small IoU tracker and temporal box smoothing (pure numpy + scipy, no model).

Boxes are ``(x, y, w, h)`` in image pixels, as everywhere in cmpose. A frame's detections are
matched to the live tracks by the Hungarian assignment on IoU (``scipy.optimize
.linear_sum_assignment``); a pair counts only when its IoU reaches ``iou_threshold``. A track
that finds no detection is "missed"; after more than ``max_age`` consecutive missed frames it
ends, and a person seen again later gets a new id. Unmatched detections with a score of at
least ``new_track_score`` start new tracks (ids 0, 1, 2, ... in order of creation).

Each track's box is smoothed over time (exponential moving average of centre and size,
:class:`BoxSmoother`), so that the crops, which the pose model sees, do not jitter with the
detector. The smoother is causal (it needs no future frame), so it adds no delay to streaming.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from cmpose.ops.boxes import as_boxes, box_iou, match_boxes

__all__ = [
    "BoxSmoother",
    "IoUTracker",
    "TrackedBox",
    "box_iou",
    "ema_smooth",
    "match_boxes",
]


def _to_cs(box: np.ndarray) -> np.ndarray:
    """xywh -> (cx, cy, w, h)."""
    return np.array([box[0] + box[2] / 2, box[1] + box[3] / 2, box[2], box[3]], dtype=np.float64)


def _from_cs(cs: np.ndarray) -> np.ndarray:
    return np.array([cs[0] - cs[2] / 2, cs[1] - cs[3] / 2, cs[2], cs[3]], dtype=np.float64)


class BoxSmoother:
    """Exponential moving average of a box's centre and size: ``s <- s + alpha * (box - s)``.

    ``alpha = 1`` turns smoothing off; smaller values smooth more but lag behind fast motion by
    about ``(1 - alpha) / alpha`` frames of movement (0.67 frames at the default 0.6, which the
    crop's x1.25 padding absorbs).
    """

    def __init__(self, alpha: float = 0.6) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"smoothing alpha must be in (0, 1], got {alpha}")
        self.alpha = alpha
        self._state: np.ndarray | None = None

    def update(self, box: ArrayLike) -> np.ndarray:
        """Feed the next raw box (4,) xywh; returns the smoothed box (4,) xywh."""
        cs = _to_cs(np.asarray(box, dtype=np.float64).reshape(4))
        self._state = cs if self._state is None else self._state + self.alpha * (cs - self._state)
        return _from_cs(self._state)


def ema_smooth(boxes: ArrayLike, alpha: float = 0.6) -> np.ndarray:
    """Smooth a track's boxes (L, 4) xywh in temporal order with :class:`BoxSmoother`."""
    s = BoxSmoother(alpha)
    return np.array([s.update(b) for b in as_boxes(boxes)]).reshape(-1, 4)


@dataclass
class TrackedBox:
    """One tracked person in one frame: ``box`` is the smoothed box (what the crop uses),
    ``raw_box`` the detection it was matched to, ``score`` the detection's score."""

    track_id: int
    box: np.ndarray
    raw_box: np.ndarray
    score: float


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # last matched raw box: what the next frame's detections are matched against
    smoother: BoxSmoother
    missed: int = 0
    hits: int = 1


class IoUTracker:
    """Frame-to-frame IoU tracker (Hungarian assignment).

    Args:
        iou_threshold: a detection continues a track only when their IoU reaches this.
        max_age: a track survives up to this many consecutive frames without a detection; one
            frame more and it ends (a person seen again gets a new id).
        new_track_score: unmatched detections below this score do not start tracks (they may
            still continue one).
        smoothing: EMA factor of :class:`BoxSmoother` (1 = no smoothing).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 5,
        new_track_score: float = 0.0,
        smoothing: float = 0.6,
    ) -> None:
        if max_age < 0:
            raise ValueError(f"max_age must be >= 0, got {max_age}")
        self.iou_threshold = iou_threshold
        self.max_age = max_age
        self.new_track_score = new_track_score
        self.smoothing = smoothing
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def num_live_tracks(self) -> int:
        return len(self._tracks)

    def update(self, boxes: ArrayLike, scores: ArrayLike | None = None) -> list[TrackedBox]:
        """Feed one frame's detections (D, 4) xywh and scores (D,); returns the tracks seen in
        this frame (matched or new), ordered by track id."""
        det = as_boxes(boxes)
        sc = np.ones(len(det)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(det):
            raise ValueError(f"{len(det)} boxes but {len(sc)} scores")
        ok = (det[:, 2] > 0) & (det[:, 3] > 0) & np.all(np.isfinite(det), axis=1)
        det, sc = det[ok], sc[ok]

        pairs, lost, new = match_boxes(
            np.array([t.box for t in self._tracks]).reshape(-1, 4), det, self.iou_threshold
        )
        out: list[TrackedBox] = []
        for i, j in pairs:
            t = self._tracks[i]
            t.box, t.missed, t.hits = det[j], 0, t.hits + 1
            out.append(TrackedBox(t.track_id, t.smoother.update(det[j]), det[j].copy(), float(sc[j])))
        for i in lost:
            self._tracks[i].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_age]
        for j in new:
            if sc[j] < self.new_track_score:
                continue
            t = _Track(self._next_id, det[j], BoxSmoother(self.smoothing))
            self._next_id += 1
            self._tracks.append(t)
            out.append(TrackedBox(t.track_id, t.smoother.update(det[j]), det[j].copy(), float(sc[j])))
        return sorted(out, key=lambda p: p.track_id)
