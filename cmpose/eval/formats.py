"""Load PoseTrack per-video files into the view poseval evaluates.

poseval reads PoseTrack2017 ``annolist`` files as they are and converts PoseTrack2018/21 files
(``images`` / ``annotations`` / ``categories``) to that layout first (poseval convert.py); both loaders
here produce the same in-memory view, so the two formats give identical numbers.

Shapes: N people of a file, J = 15 scored joints in poseval's joint-id order (``PT17_NAMES``), D
candidate points per joint (1, except for a PoseTrack2017 person listing a joint id more than once:
poseval then uses the first such point that survives the ignore regions).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmpose.data.jsonio import load_json
from cmpose.errors import DataError
from cmpose.keypoints import PT17_NAMES

log = logging.getLogger(__name__)

NUM_SCORED = len(PT17_NAMES)
# poseval gives a predicted joint without a score this value (eval_helpers.MIN_SCORE).
MIN_SCORE = -9999.0


@dataclass
class People:
    """All people of one file, sorted by frame, in file order within a frame."""

    frame: np.ndarray  # (N,) int64 frame index
    xy: np.ndarray  # (N, J, D, 2) float64
    present: np.ndarray  # (N, J, D) bool
    score: np.ndarray  # (N, J, D) float64, MIN_SCORE where a prediction has no score
    head: np.ndarray  # (N,) float64 head size 0.6 x head-box diagonal, NaN without a head box
    record: list[str]  # (N,) where the person is in the file, for messages

    @classmethod
    def empty(cls) -> People:
        z = np.zeros((0, NUM_SCORED, 1))
        return cls(np.zeros(0, np.int64), np.zeros((0, NUM_SCORED, 1, 2)), z.astype(bool), z, np.zeros(0), [])

    def take(self, idx: np.ndarray) -> People:
        return People(
            self.frame[idx],
            self.xy[idx],
            self.present[idx],
            self.score[idx],
            self.head[idx],
            [self.record[i] for i in idx],
        )


@dataclass
class VideoFile:
    """One per-video file: F frames (in file order) and the people on them."""

    path: Path
    fmt: str  # "PoseTrack2018" or "PoseTrack2017"
    frame_names: list[str]  # (F,)
    n_people: np.ndarray  # (F,) person records per frame as listed, before any filtering
    regions: dict[int, list[np.ndarray]]  # frame -> ignore polygons, each (V, 2)
    people: People
    n_unscored: int = 0  # predicted joints without a per-joint score
    track_ids: list[list[object]] = field(default_factory=list)  # (F,) track ids listed per frame

    @property
    def n_frames(self) -> int:
        return len(self.frame_names)


def head_size(x1: np.ndarray, y1: np.ndarray, x2: np.ndarray, y2: np.ndarray) -> np.ndarray:
    """0.6 x the head-box diagonal, computed from corners as poseval does (eval_helpers.getHeadSize)."""
    dx, dy = x2 - x1, y2 - y1
    return 0.6 * np.sqrt(dx * dx + dy * dy)


def scalar(value: object, path: Path, record: str, name: str, *, allow_none: bool = False) -> float:
    """A JSON number, or a one-element list holding one (PoseTrack2017 wraps every value in a list)."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None and allow_none:
        return float("nan")
    try:
        ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    except OverflowError:  # an integer beyond float range
        ok = False
    if not ok:
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        raise DataError(f"expected a finite number, got {shown}", path=path, record=record, field=name)
    return float(value)


def read_json(path: Path) -> dict:
    """A per-video JSON object; malformed or missing files raise ``DataError`` naming them."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DataError(
            "expected a JSON object (PoseTrack2018 'images'/'annotations' or PoseTrack2017 'annolist')",
            path=path,
        )
    return data


def load_video(path: Path, role: str) -> VideoFile:
    """Read one per-video file; ``role`` is "gt" or "pred" (decides which fields are needed)."""
    return parse_video(read_json(path), path, role)


def parse_video(data: dict, path: Path, role: str) -> VideoFile:
    """``load_video`` for a file already read (the tracking metrics also need the raw JSON)."""
    from cmpose.eval import pt17, pt18  # imported here: both import this module's data classes

    # poseval's test: a file holding "annolist" is PoseTrack2017, anything else is converted as 2018.
    if "annolist" in data:
        video = pt17.parse(data, path, role)
    elif "images" in data:
        video = pt18.parse(data, path, role)
    else:
        raise DataError("neither 'annolist' (PoseTrack2017) nor 'images' (PoseTrack2018) found", path=path)
    if role == "gt":
        _check_repeated_people(video)
    if role == "pred":
        _check_track_ids(video)
        if video.n_unscored:
            log.warning(
                "%s: %d predicted joints have no per-joint score; poseval silently scores them %g, so "
                "their AP depends only on the tie order. Write per-joint 'scores'.",
                path,
                video.n_unscored,
                MIN_SCORE,
            )
    return video


def _check_repeated_people(video: VideoFile) -> None:
    """A GT person listed twice in a frame would be scored as two people to find (92.8 mAP for a
    perfect prediction, issue 18): refused, as the training readers refuse it."""
    from cmpose.data.validate import duplicate_people

    p = video.people
    if len(p.frame) < 2:
        return
    joints = np.where(p.present[..., None], p.xy, 0.0).reshape(len(p.frame), -1)
    pairs = duplicate_people(p.frame, joints)
    if pairs:
        first, repeat = pairs[0]
        raise DataError(
            f"the same person (same joints) as {p.record[first]} in this frame; {len(pairs)} such repeat(s)",
            path=video.path,
            record=p.record[repeat],
            field="keypoints",
        )


def _check_track_ids(video: VideoFile) -> None:
    """poseval refuses a prediction file that repeats a track id within a frame."""
    for f, ids in enumerate(video.track_ids):
        if len(set(ids)) != len(ids):
            seen: set[object] = set()
            dup = next(t for t in ids if t in seen or seen.add(t))
            raise DataError(
                f"track_id {dup!r} is used by more than one person in this frame; track ids must be unique "
                "within a frame",
                path=video.path,
                record=f"frame {f} ({video.frame_names[f]})",
                field="track_id",
            )


def sort_people(frames: list[int], rows: dict[str, np.ndarray], records: list[str]) -> tuple:
    """Stable sort of per-person arrays by frame, keeping file order within a frame."""
    frame = np.asarray(frames, dtype=np.int64)
    order = np.argsort(frame, kind="stable")
    return frame[order], {k: v[order] for k, v in rows.items()}, [records[i] for i in order]
