"""The tracker of ``cmpose infer``: ``cmpose.track.tracker.PoseTracker``, the one tracker cmpose
has (``cmpose test --track`` uses it too; docs/inference.md, "Tracking").

``IoUTracker`` keeps the earlier IoU tracker's name and arguments: a ``PoseTracker`` without the
OKS term and without motion prediction (``iou_threshold`` -> ``match_threshold``, ``max_age`` ->
``max_gap``, ``new_track_score`` -> ``birth_score``).
"""

from __future__ import annotations

from cmpose.ops.boxes import box_iou, match_boxes
from cmpose.track.tracker import BoxSmoother, PoseTracker, TrackedBox, ema_smooth

__all__ = [
    "BoxSmoother",
    "IoUTracker",
    "PoseTracker",
    "TrackedBox",
    "box_iou",
    "ema_smooth",
    "match_boxes",
]


class IoUTracker(PoseTracker):
    """``PoseTracker`` on box IoU alone, with the earlier IoU tracker's arguments.

    Args:
        iou_threshold: a detection continues a track only when their IoU reaches this.
        max_age: a track survives up to this many consecutive frames without a detection.
        new_track_score: unmatched detections below this score do not start tracks.
        smoothing: EMA factor of :class:`BoxSmoother` (1 = no smoothing).
    """

    def __init__(
        self,
        iou_threshold: float = 0.3,
        max_age: int = 5,
        new_track_score: float = 0.0,
        smoothing: float = 0.6,
    ) -> None:
        super().__init__(
            iou_weight=1.0,
            oks_weight=0.0,
            match_threshold=iou_threshold,
            max_gap=max_age,
            birth_score=new_track_score,
            smoothing=smoothing,
            motion=False,
        )
