"""PoseTrack2017 annotations: the per-video "annolist" JSON that poseval reads.

Each ``annolist`` entry is one frame of the video, in order: ``image[0].name``, ``is_labeled``,
``ignore_regions`` (polygons of ``point`` entries) and ``annorect`` (people: ``x1, y1, x2, y2`` is
the *head* box, ``annopoints[0].point`` the joints with poseval ids 0..14, ``track_id``). Values
converted from MATLAB come wrapped in one-element lists, which ``unwrap`` removes.

Two image layouts are supported:
- ``original``: frames at ``root / image.name`` as listed (``images/bonn/000001_bonn/00000001.jpg``);
- ``renamed``: the DCPose/PoseWarper layout ``root/images_renamed/<video>/%08d.jpg``, frame i
  (0-based position in the annolist) stored as number i + 1.

PoseTrack17 GT has no person boxes: the box is the annotated joints' extent (see
``box_from_keypoints``).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cmpose.data.jsonio import load_json, number, unwrap
from cmpose.data.problems import Problems
from cmpose.data.readers.common import box_from_keypoints, guess_image_root
from cmpose.data.records import Dataset, PersonRecord, Video
from cmpose.data.validate import check_relative_file_name
from cmpose.errors import DataError
from cmpose.keypoints import NUM_JOINTS, PT17_TO_PT18

RENAMED_DIGITS = 8


def _frame_name(entry: Any, path: Path, rec: str) -> str:
    image = unwrap(entry.get("image")) if isinstance(entry, dict) else None
    name = image.get("name") if isinstance(image, dict) else None
    name = unwrap(name)
    if not isinstance(name, str):
        raise DataError("expected image: [{name: ...}]", path=path, record=rec, field="image")
    return check_relative_file_name(name, path=path, record=rec, field="image.name")


def _regions(entry: dict, path: Path, rec: str, problems: Problems) -> list[np.ndarray]:
    regions = []
    for i, region in enumerate(entry.get("ignore_regions", []) or []):
        points = region.get("point", []) if isinstance(region, dict) else None
        try:
            if not isinstance(points, list):
                raise DataError(
                    "expected {point: [...]}", path=path, record=rec, field=f"ignore_regions[{i}]"
                )
            poly = [
                (
                    number(p.get("x"), path=path, record=rec, field=f"ignore_regions[{i}].x"),
                    number(p.get("y"), path=path, record=rec, field=f"ignore_regions[{i}].y"),
                )
                for p in points
            ]
        except (DataError, AttributeError) as err:
            problems.warning("bad ignore regions", str(err))
            continue
        if len(poly) >= 3:
            regions.append(np.asarray(poly))
    return regions


def _person(rect: Any, path: Path, rec: str) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(J, 3) keypoints in PoseTrack18 order, head box xywh, track id."""
    if not isinstance(rect, dict):
        raise DataError("expected an object", path=path, record=rec)
    kps = np.zeros((NUM_JOINTS, 3))
    annopoints = unwrap(rect.get("annopoints"))
    points = annopoints.get("point", []) if isinstance(annopoints, dict) else []
    for k, p in enumerate(points if isinstance(points, list) else []):
        field = f"annopoints.point[{k}]"
        if not isinstance(p, dict):
            raise DataError("expected an object", path=path, record=rec, field=field)
        jid = int(number(p.get("id"), path=path, record=rec, field=field + ".id"))
        if not 0 <= jid < len(PT17_TO_PT18):
            raise DataError(f"joint id {jid} outside 0..14", path=path, record=rec, field=field + ".id")
        x = number(p.get("x"), path=path, record=rec, field=field + ".x")
        y = number(p.get("y"), path=path, record=rec, field=field + ".y")
        kps[PT17_TO_PT18[jid]] = (x, y, 1.0)
    head = None
    if all(k in rect for k in ("x1", "y1", "x2", "y2")):
        x1, y1, x2, y2 = (number(rect[k], path=path, record=rec, field=k) for k in ("x1", "y1", "x2", "y2"))
        head = np.array([x1, y1, x2 - x1, y2 - y1])
    track = (
        int(number(rect["track_id"], path=path, record=rec, field="track_id")) if "track_id" in rect else -1
    )
    return kps, head, track


def read_posetrack17(
    path: Path,
    image_root: Path | None = None,
    problems: Problems | None = None,
    layout: str = "original",
    data: Any = None,
) -> Dataset:
    """Read one PoseTrack17 annolist video file.

    Args:
        path: the JSON file (``{"annolist": [...]}``).
        image_root: dataset root the image names are relative to; guessed when None.
        problems: where skipped items are recorded.
        layout: ``original`` or ``renamed`` (see the module docstring).
        data: the file's parsed JSON, when the caller has already loaded it.
    """
    if layout not in ("original", "renamed"):
        raise ValueError(f"layout must be 'original' or 'renamed', got {layout!r}")
    problems = problems if problems is not None else Problems()
    path = Path(path)
    data = load_json(path) if data is None else data
    annolist = data.get("annolist") if isinstance(data, dict) else None
    if not isinstance(annolist, list):
        raise DataError("expected a PoseTrack17 object with an 'annolist' list", path=path, field="annolist")
    out = Dataset()
    if not annolist:
        problems.error("empty video", "no frames listed", path=path, field="annolist")
        return out
    names = [_frame_name(e, path, f"annolist[{i}]") for i, e in enumerate(annolist)]
    video_id = PurePosixPath(names[0]).parent.name
    if layout == "renamed":
        root = image_root if image_root is not None else path.resolve().parents[2]
        folder = root / "images_renamed" / video_id
        frame_paths = [folder / f"{i + 1:0{RENAMED_DIGITS}d}.jpg" for i in range(len(names))]
    else:
        root = image_root if image_root is not None else guess_image_root(path, names[0])
        frame_paths = [root / n for n in names]
    out.videos[video_id] = Video(video_id, len(names), frame_paths=frame_paths, source=path)
    out.num_listed_frames = len(names)

    for i, entry in enumerate(annolist):
        rec = f"annolist[{i}] ({names[i]})"
        rects = entry.get("annorect", []) or []
        labelled = unwrap(entry.get("is_labeled"))
        labelled = (
            bool(labelled)
            if labelled is not None
            else any(isinstance(r, dict) and r.get("annopoints") for r in rects)
        )
        if not labelled:
            continue
        regions = _regions(entry, path, rec, problems)
        out.labelled_frames[(video_id, i)] = frame_paths[i]
        out.frame_info[(video_id, i)] = (None, None, regions)
        for r, rect in enumerate(rects):
            prec = f"{rec} annorect[{r}]"
            try:
                kps, head, track = _person(rect, path, prec)
            except DataError as err:
                problems.error("malformed person", str(err))
                continue
            box = box_from_keypoints(kps)
            if box is None:
                if kps[:, 2].sum() > 0:
                    problems.error(
                        "malformed person",
                        "fewer than 2 annotated joints: no box",
                        path=path,
                        record=prec,
                        field="annopoints",
                    )
                continue  # a head-box-only rect (no joints) is not a pose sample
            out.people.append(PersonRecord(video_id, i, frame_paths[i], None, box, kps, head, track, regions))
    return out
