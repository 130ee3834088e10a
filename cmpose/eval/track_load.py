"""Load one GT / prediction video pair into the per-frame view poseval's tracking mode evaluates.

The geometry comes from the mAP readers (cmpose.eval.pt17 / pt18), so both formats and any mix of
them give the same numbers. Tracking also needs, per person, its track id and whether poseval keeps
the person at all (eval_helpers.cleanupData, removeIgnoredPoints): those are read here from the same
JSON. Shapes: G GT people, P predicted people, J = 15 joints in poseval's order (``PT17_NAMES``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmpose.errors import DataError
from cmpose.eval.formats import NUM_SCORED, VideoFile, parse_video, read_json, scalar
from cmpose.eval.posetrack import _apply_ignore_regions, _check_pair, _first_surviving
from cmpose.eval.regions import points_in_polygons

_PT17_RECORD = re.compile(r"annolist\[(\d+)\]\.annorect\[(\d+)\]$")
_PT18_RECORD = re.compile(r"annotations\[(\d+)\]")


@dataclass
class TrackPeople:
    """The people poseval keeps in the evaluated frames, sorted by frame, file order within a frame."""

    frame: np.ndarray  # (N,) evaluated-frame index
    track_id: np.ndarray  # (N,) int64
    xy: np.ndarray  # (N, J, 2)
    present: np.ndarray  # (N, J) bool, joint left after the ignore regions
    head: np.ndarray  # (N,) head size, NaN without a head box (GT only)
    record: list[str]  # (N,) where the person is in its file


@dataclass
class TrackVideo:
    """One video as the tracking metrics see it: F evaluated frames (GT frames that list someone)."""

    name: str
    gt_path: Path
    n_frames: int
    gt: TrackPeople
    pred: TrackPeople


def _load(path: Path, role: str) -> tuple[VideoFile, dict]:
    data = read_json(path)
    return parse_video(data, path, role), data


def _raw_person(video: VideoFile, data: dict, record: str) -> dict:
    """The JSON object of the person the reader named ``record``."""
    if video.fmt == "PoseTrack2017":
        m = _PT17_RECORD.match(record)
        return data["annolist"][int(m.group(1))]["annorect"][int(m.group(2))] if m else {}
    m = _PT18_RECORD.match(record)
    return data["annotations"][int(m.group(1))] if m else {}


def _track_id(person: dict, path: Path, record: str) -> int:
    """poseval needs a track id on every GT and predicted person in tracking mode (KeyError otherwise)."""
    tid = person.get("track_id")
    if isinstance(tid, list) and len(tid) == 1:  # PoseTrack2017 wraps values in a list
        tid = tid[0]
    if tid is None:
        raise DataError(
            "every person needs a track_id for --track", path=path, record=record, field="track_id"
        )
    value = scalar(tid, path, record, "track_id")
    if not value.is_integer():
        raise DataError(
            f"expected an integer track id, got {tid!r}", path=path, record=record, field="track_id"
        )
    return int(value)


def _pt17_extras(person: dict, path: Path, record: str) -> tuple[bool, np.ndarray]:
    """Whether poseval keeps the person at all (eval_helpers.rectHasPoints) and its points whose id is
    not one of the 15 scored ones (they count when poseval checks whether a person has a point left)."""
    ap = person.get("annopoints")
    has_points = isinstance(ap, list) and bool(ap) and isinstance(ap[0], dict) and "point" in ap[0]
    extra = []
    if has_points:
        for p, point in enumerate(ap[0]["point"] or []):
            value = point.get("id") if isinstance(point, dict) else None
            value = value[0] if isinstance(value, list) and len(value) == 1 else value
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                if float(value).is_integer() and 0 <= value < NUM_SCORED:
                    continue
                where = f"{record}.annopoints[0].point[{p}]"
                extra.append(
                    (scalar(point.get("x"), path, where, "x"), scalar(point.get("y"), path, where, "y"))
                )
    return has_points, np.array(extra, dtype=np.float64).reshape(-1, 2)


def _people(video: VideoFile, data: dict, keep: np.ndarray, new_index: np.ndarray) -> tuple:
    """(people of the evaluated frames, their track ids, has-points flags, extra points per person)."""
    people = video.people
    tids, has_points, extras = [], [], []
    for record in people.record:
        raw = _raw_person(video, data, record)
        tids.append(_track_id(raw, video.path, record))
        if video.fmt == "PoseTrack2017":
            ok, extra = _pt17_extras(raw, video.path, record)
        else:  # a PoseTrack2018 person always has a point list, even with all keypoints 0, 0, 0
            ok, extra = True, np.zeros((0, 2))
        has_points.append(ok)
        extras.append(extra)
    # Checked on every frame, as poseval does when loading, before the unlabelled frames go.
    _check_unique(video, people.frame, tids, people.record)
    idx = np.flatnonzero(keep[people.frame])
    people = people.take(idx)
    people.frame = new_index[people.frame]
    tid = np.array(tids, dtype=np.int64).reshape(-1)[idx]
    return people, tid, np.array(has_points, dtype=bool).reshape(-1)[idx], [extras[i] for i in idx]


def _check_unique(video: VideoFile, frame: np.ndarray, tids: list[int], records: list[str]) -> None:
    """Track ids must be unique within a frame (poseval refuses predictions that repeat one; a GT frame
    repeating one would make two people one object)."""
    seen: set[tuple[int, int]] = set()
    for f, t, rec in zip(frame.tolist(), tids, records, strict=True):
        if (f, t) in seen:
            raise DataError(
                f"track_id {t} is used by more than one person in this frame; track ids must be unique "
                "within a frame",
                path=video.path,
                record=rec,
                field="track_id",
            )
        seen.add((f, t))


def load_track_video(gt_file: Path, pred_file: Path) -> TrackVideo:
    """Read a GT / prediction pair and keep what poseval's tracking mode keeps (docs/evaluation.md)."""
    (gt, gt_data), (pr, pr_data) = _load(gt_file, "gt"), _load(pred_file, "pred")
    _check_pair(gt, pr)
    # Frames whose GT lists nobody are dropped with their predictions (eval_helpers.cleanupData).
    keep = gt.n_people > 0
    new_index = np.cumsum(keep) - 1
    g, g_tid, g_ok, g_extra = _people(gt, gt_data, keep, new_index)
    p, p_tid, p_ok, p_extra = _people(pr, pr_data, keep, new_index)
    regions = {int(new_index[f]): r for f, r in gt.regions.items() if keep[f]}
    _apply_ignore_regions(g, p, regions)
    # In frames with ignore regions poseval deletes every person left without a point, counting the
    # points of every id, scored or not (eval_helpers.removeIgnoredPointsRects).
    for people, ok, extras in ((g, g_ok, g_extra), (p, p_ok, p_extra)):
        for k in np.flatnonzero(ok & np.isin(people.frame, list(regions))):
            left = int(people.present[k].sum())
            if len(extras[k]):
                left += int((~points_in_polygons(extras[k], regions[int(people.frame[k])])).sum())
            ok[k] = left > 0
    tracks = []
    for people, tid, ok in ((g, g_tid, g_ok), (p, p_tid, p_ok)):
        idx = np.flatnonzero(ok)
        xy, present, _ = _first_surviving(people.take(idx))
        tracks.append(
            TrackPeople(
                people.frame[idx], tid[idx], xy, present, people.head[idx], [people.record[i] for i in idx]
            )
        )
    return TrackVideo(Path(gt_file).stem, Path(gt_file), int(keep.sum()), tracks[0], tracks[1])
