"""The one person tracker of cmpose (``cmpose infer`` and ``cmpose test --track``).

Each frame, the live tracks are matched to the frame's detections by the Hungarian assignment on
a similarity that combines box IoU and, where both sides have a pose, the OKS between the
track's last pose and the detection's pose (``cmpose.track.cost``). Rules:

- matching: a pair may match only when its similarity reaches ``match_threshold``; with
  ``motion`` a track's box (and pose) is first moved by its constant-velocity prediction to the
  current frame;
- birth: an unmatched detection scoring at least ``birth_score`` starts a track (ids 0, 1, 2, ...
  in order of creation); lower-scoring unmatched detections get no track and are not returned;
- bridging and death: a track without a detection is "missed"; a track missed for up to
  ``max_gap`` consecutive frames keeps its id when it is matched again (the returned box says how
  many frames it bridged, ``TrackedBox.gap``); one frame more and it ends, and the person gets a
  new id when seen again. The tracker itself adds no boxes in bridged frames: filling them
  (interpolated boxes between the two ends) needs the frame after the gap and is done offline by
  ``cmpose.track.bridge`` in ``cmpose test --track``.

Each track's box is smoothed over time (:class:`BoxSmoother`), so that the crops of the streaming
runner do not jitter with the detector; matching uses the raw boxes. Everything is causal: no
future frame is needed, so the tracker adds no delay to streaming.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from cmpose.ops.boxes import as_boxes, box_iou
from cmpose.track.cost import assign, pose_oks, predict_box, similarity

__all__ = ["BoxSmoother", "PoseTracker", "TrackedBox", "ema_smooth"]


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
    ``raw_box`` the detection it was matched to, ``score`` the detection's score, ``detection``
    the detection's index in the frame's input (-1 when unknown), ``gap`` the frames the track
    was missed just before this one (0: seen in the previous frame; a new track has 0)."""

    track_id: int
    box: np.ndarray
    raw_box: np.ndarray
    score: float
    detection: int = -1
    gap: int = 0


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # last matched raw box (4,)
    smoother: BoxSmoother
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre, pixels per frame
    pose_offset: np.ndarray | None = None  # (J, 2) last pose minus its box centre; (J,) scores
    pose_scores: np.ndarray | None = None
    missed: int = 0
    hits: int = 1

    def predicted(self, motion: bool) -> np.ndarray:
        """The box expected in the current frame (``missed + 1`` frames after the last match)."""
        return predict_box(self.box, self.velocity if motion else np.zeros(2), self.missed + 1)

    def predicted_pose(self, box: np.ndarray) -> np.ndarray | None:
        """(J, 3) the last pose carried along with its box, placed in the predicted ``box``."""
        if self.pose_offset is None:
            return None
        centre = box[:2] + box[2:] / 2
        return np.concatenate([self.pose_offset + centre, self.pose_scores[:, None]], axis=1)


class PoseTracker:
    """Frame-to-frame tracker: Hungarian matching on box IoU and pose OKS (module docstring).

    Args:
        iou_weight, oks_weight: weights of the two terms of the similarity (``cmpose.track.cost
            .similarity``); ``oks_weight = 0`` is an IoU-only tracker, and pairs where the track
            or the detection has no pose use IoU alone.
        match_threshold: a track and a detection can match only when their similarity reaches this.
        max_gap: a track missed for up to this many consecutive frames keeps its id; one frame
            more and it ends.
        birth_score: unmatched detections below this score start no track (they may still
            continue one).
        smoothing: EMA factor of :class:`BoxSmoother` for the returned ``box`` (1 = no smoothing).
        motion: predict each track's box (and pose) with its constant velocity before matching;
            False (the default) matches against the last box (and pose) where it was seen. On
            the synthetic benchmark the prediction, driven by the detector's jitter, added ID
            switches (docs/results.md, "Tracking").
        velocity_alpha: EMA factor of the velocity estimate (1 = the last displacement only;
            smaller values damp the detector's jitter).
    """

    def __init__(
        self,
        iou_weight: float = 1.0,
        oks_weight: float = 1.0,
        match_threshold: float = 0.3,
        max_gap: int = 5,
        birth_score: float = 0.0,
        smoothing: float = 0.6,
        motion: bool = False,
        velocity_alpha: float = 0.5,
    ) -> None:
        if max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {max_gap}")
        if iou_weight < 0 or oks_weight < 0 or iou_weight + oks_weight <= 0:
            raise ValueError(f"weights must be >= 0 and not both 0, got iou {iou_weight}, oks {oks_weight}")
        if not 0.0 < velocity_alpha <= 1.0:
            raise ValueError(f"velocity_alpha must be in (0, 1], got {velocity_alpha}")
        BoxSmoother(smoothing)  # validates
        self.iou_weight = iou_weight
        self.oks_weight = oks_weight
        self.match_threshold = match_threshold
        self.max_gap = max_gap
        self.birth_score = birth_score
        self.smoothing = smoothing
        self.motion = motion
        self.velocity_alpha = velocity_alpha
        self._tracks: list[_Track] = []
        self._next_id = 0

    @property
    def num_live_tracks(self) -> int:
        return len(self._tracks)

    def update(
        self, boxes: ArrayLike, scores: ArrayLike | None = None, poses: ArrayLike | None = None
    ) -> list[TrackedBox]:
        """Feed one frame: detections (D, 4) xywh, scores (D,) and, when known, their poses
        (D, J, 3) x, y, joint score in image pixels. Returns the tracks seen in this frame
        (matched or born), ordered by track id."""
        det = as_boxes(boxes)
        sc = np.ones(len(det)) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
        if len(sc) != len(det):
            raise ValueError(f"{len(det)} boxes but {len(sc)} scores")
        pose = None if poses is None else np.asarray(poses, dtype=np.float64).reshape(len(det), -1, 3)
        index = np.flatnonzero((det[:, 2] > 0) & (det[:, 3] > 0) & np.all(np.isfinite(det), axis=1))
        det, sc = det[index], sc[index]
        pose = None if pose is None else pose[index]

        predicted = np.array([t.predicted(self.motion) for t in self._tracks]).reshape(-1, 4)
        sim = self._similarity(predicted, det, pose)
        pairs, lost, new = assign(sim, self.match_threshold)
        out: list[TrackedBox] = []
        for i, j in pairs:
            t = self._tracks[i]
            gap = t.missed
            step = (_to_cs(det[j])[:2] - _to_cs(t.box)[:2]) / (gap + 1)
            a = self.velocity_alpha if t.hits > 1 else 1.0  # the first displacement sets it
            t.velocity = t.velocity + a * (step - t.velocity)
            t.box, t.missed, t.hits = det[j], 0, t.hits + 1
            self._set_pose(t, det[j], pose, j)
            out.append(
                TrackedBox(
                    t.track_id, t.smoother.update(det[j]), det[j].copy(), float(sc[j]), int(index[j]), gap
                )
            )
        for i in lost:
            self._tracks[i].missed += 1
        self._tracks = [t for t in self._tracks if t.missed <= self.max_gap]
        for j in new:
            if sc[j] < self.birth_score:
                continue
            t = _Track(self._next_id, det[j], BoxSmoother(self.smoothing))
            self._set_pose(t, det[j], pose, j)
            self._next_id += 1
            self._tracks.append(t)
            out.append(
                TrackedBox(t.track_id, t.smoother.update(det[j]), det[j].copy(), float(sc[j]), int(index[j]))
            )
        return sorted(out, key=lambda p: p.track_id)

    def _similarity(self, predicted: np.ndarray, det: np.ndarray, pose: np.ndarray | None) -> np.ndarray:
        iou = box_iou(predicted, det)
        if pose is None or self.oks_weight == 0 or not len(predicted) or not len(det):
            return iou
        track_poses = [t.predicted_pose(b) for t, b in zip(self._tracks, predicted, strict=True)]
        has = np.array([p is not None for p in track_poses])
        if not has.any():
            return iou
        ref = np.stack([p if p is not None else pose[0] for p in track_poses])  # placeholders are masked
        o = pose_oks(ref, predicted[:, 2] * predicted[:, 3], pose, det[:, 2] * det[:, 3])
        return similarity(iou, o, self.iou_weight, self.oks_weight, has_pose_a=has)

    @staticmethod
    def _set_pose(t: _Track, box: np.ndarray, pose: np.ndarray | None, j: int) -> None:
        """Keep the detection's pose relative to its box centre (it moves with the prediction);
        without a pose the track forgets the old one, which belonged to another box."""
        if pose is None:
            t.pose_offset = t.pose_scores = None
            return
        t.pose_offset = pose[j, :, :2] - (box[:2] + box[2:] / 2)
        t.pose_scores = pose[j, :, 2].copy()
