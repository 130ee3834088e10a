"""PoseTrack2017 ``annolist`` per-video files, read the way poseval reads them (as they are)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cmpose.errors import DataError
from cmpose.eval.formats import MIN_SCORE, NUM_SCORED, People, VideoFile, head_size, scalar, sort_people

log = logging.getLogger(__name__)


def _points(rect: dict) -> list:
    """A person's points; poseval keeps a person only when ``annopoints[0]["point"]`` exists
    (eval_helpers.rectHasPoints)."""
    ap = rect.get("annopoints")
    if not isinstance(ap, list) or not ap or not isinstance(ap[0], dict):
        return []
    return ap[0].get("point") or []


def _frame_name(frame: dict) -> str:
    image = frame.get("image")
    if isinstance(image, list) and image and isinstance(image[0], dict):
        return str(image[0].get("name", ""))
    return ""


def _regions(frame: dict, path: Path, record: str) -> list[np.ndarray]:
    polygons = []
    for k, region in enumerate(frame.get("ignore_regions") or []):
        pts = region.get("point") or [] if isinstance(region, dict) else []
        where = f"{record}.ignore_regions[{k}]"
        polygons.append(
            np.array(
                [[scalar(p.get("x"), path, where, "x"), scalar(p.get("y"), path, where, "y")] for p in pts],
                dtype=np.float64,
            ).reshape(-1, 2)
        )
    return polygons


def _joint_id(point: dict, path: Path, record: str) -> int | None:
    """poseval's joint id of a point, or None for ids it never asks for (it compares with 0..14)."""
    if not isinstance(point, dict) or "id" not in point:
        raise DataError("every point needs an 'id'", path=path, record=record, field="id")
    value = scalar(point["id"], path, record, "id")
    return int(value) if value.is_integer() and 0 <= value < NUM_SCORED else None


def parse(data: dict, path: Path, role: str) -> VideoFile:
    """Read a PoseTrack2017 annolist file (``role``: "gt" or "pred")."""
    frames_json = data["annolist"]
    if not isinstance(frames_json, list) or not all(isinstance(fr, dict) for fr in frames_json):
        raise DataError("expected a list of frame objects", path=path, field="annolist")
    n_frames = len(frames_json)
    names = [_frame_name(fr) for fr in frames_json]
    n_people = np.zeros(n_frames, dtype=np.int64)
    regions: dict[int, list[np.ndarray]] = {}
    track_ids: list[list[object]] = [[] for _ in range(n_frames)]
    frames, records, heads, joints = [], [], [], []  # joints: per person, list of (j, x, y, score)
    n_unscored = 0
    for f, fr in enumerate(frames_json):
        polys = _regions(fr, path, f"annolist[{f}]")
        if polys:
            regions[f] = polys
        rects = fr.get("annorect") or []
        n_people[f] = len(rects)
        for r, rect in enumerate(rects):
            rec = f"annolist[{f}].annorect[{r}]"
            if not isinstance(rect, dict):
                raise DataError("expected a person object", path=path, record=rec)
            head = np.nan
            if role == "gt" and all(rect.get(k) is not None for k in ("x1", "y1", "x2", "y2")):
                c = [np.float64(scalar(rect[k], path, rec, k)) for k in ("x1", "y1", "x2", "y2")]
                head = float(head_size(*c))
            if role == "pred" and rect.get("track_id") is not None:
                track_ids[f].append(scalar(rect["track_id"], path, rec, "track_id"))
            person = []
            for p, point in enumerate(_points(rect)):
                where = f"{rec}.annopoints[0].point[{p}]"
                j = _joint_id(point, path, where)
                if j is None:
                    continue
                x, y = scalar(point.get("x"), path, where, "x"), scalar(point.get("y"), path, where, "y")
                if "score" in point:
                    s = scalar(point["score"], path, where, "score", allow_none=True)
                else:
                    s = MIN_SCORE
                    n_unscored += role == "pred"
                person.append((j, x, y, s))
            frames.append(f)
            records.append(rec)
            heads.append(head)
            joints.append(person)
    video = VideoFile(path, "PoseTrack2017", names, n_people, regions, People.empty(), n_unscored, track_ids)
    if not frames:
        return video
    # D: the most times one person lists the same joint id; poseval uses the first surviving one.
    n = len(frames)
    counts = np.zeros((n, NUM_SCORED), dtype=np.int64)
    flat = []
    for i, person in enumerate(joints):
        for j, x, y, s in person:
            flat.append((i, j, counts[i, j], x, y, s))
            counts[i, j] += 1
    depth = max(1, int(counts.max()))
    xy = np.zeros((n, NUM_SCORED, depth, 2))
    present = np.zeros((n, NUM_SCORED, depth), dtype=bool)
    score = np.full((n, NUM_SCORED, depth), MIN_SCORE)
    if flat:
        arr = np.array(flat, dtype=np.float64)
        i, j, d = (arr[:, k].astype(np.int64) for k in range(3))
        xy[i, j, d] = arr[:, 3:5]
        present[i, j, d] = True
        score[i, j, d] = arr[:, 5]
    if role == "pred" and np.isnan(score[present]).any():
        log.warning(
            "%s: %d per-joint scores are null/NaN; ranked above every other score, as poseval's "
            "sort puts them",
            path,
            int(np.isnan(score[present]).sum()),
        )
    rows = {"xy": xy, "present": present, "score": score, "head": np.array(heads)}
    frame, rows, records = sort_people(frames, rows, records)
    video.people = People(frame, rows["xy"], rows["present"], rows["score"], rows["head"], records)
    return video
