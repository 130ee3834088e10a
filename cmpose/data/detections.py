"""Detector boxes for top-down testing: a JSON list of ``{image_id | image_name, bbox, score,
category_id}`` (the COCO results format, as in mmpose's ``*_human_detections.json``, or DCPose's
``image_name`` variant), turned into test samples on the labelled frames of a dataset."""

from __future__ import annotations

import logging
from collections import defaultdict
from pathlib import Path, PurePosixPath

import numpy as np

from cmpose.data.config import GapFillConfig
from cmpose.data.jsonio import load_json, number, number_list
from cmpose.data.problems import Problems
from cmpose.data.records import Dataset, PersonRecord, group_by_frame
from cmpose.errors import DataError
from cmpose.ops.gap_fill import fill_gaps

log = logging.getLogger(__name__)


def detection_fields(det: object, index: int, path: Path) -> tuple[float, np.ndarray] | None:
    """(score, (4,) x, y, w, h box) of entry ``index`` of a COCO results list; None for a category
    other than person (1). A malformed entry is a ``DataError`` naming the file and the entry."""
    rec = f"[{index}]"
    if not isinstance(det, dict):
        raise DataError("expected an object", path=path, record=rec)
    if int(number(det.get("category_id", 1), path=path, record=rec, field="category_id")) != 1:
        return None
    score = number(det.get("score"), path=path, record=rec, field="score")
    return score, np.asarray(number_list(det.get("bbox"), 4, path=path, record=rec, field="bbox"))


def image_name_key(path: Path | str) -> str:
    """``<video folder>/<frame file>``, the last two parts of an image path: how a detection's
    ``image_name`` finds its frame when its ``image_id`` does not."""
    return "/".join(PurePosixPath(str(path)).parts[-2:])


def read_detection_list(path: Path) -> list:
    """The detections JSON's entries; a clear error when the file is not a JSON list."""
    dets = load_json(path)
    if not isinstance(dets, list):
        raise DataError("expected a JSON list of detections", path=path)
    return dets


def load_detections(
    path: Path,
    data: Dataset,
    score_threshold: float = 0.2,
    problems: Problems | None = None,
    gap_fill: GapFillConfig | None = None,
) -> list[PersonRecord]:
    """One ``PersonRecord`` (box, box_score, no keypoints) per kept detection.

    Args:
        path: the detections JSON.
        data: the annotations the detections belong to; a detection is attached to a labelled
            frame by ``image_id`` or, failing that, by the image file's last two path parts
            (``<video>/<frame>.jpg``).
        score_threshold: detections with a lower score are dropped (DCPose uses 0.2 on
            PoseTrack); only category 1 (person) is kept.
        problems: where malformed entries are recorded (lenient when None).
        gap_fill: with ``max_gap > 0``, boxes from neighbouring labelled frames are added where
            the detector missed a person (``cmpose.ops.gap_fill``); they come after the
            detector's own records.

    Detections on frames the annotations do not label are counted and skipped (they cannot be
    evaluated); a summary is logged.
    """
    problems = problems if problems is not None else Problems()
    path = Path(path)
    dets = read_detection_list(path)
    by_id: dict[object, tuple[str, int]] = {}
    by_name: dict[str, tuple[str, int]] = {}
    for key, (image_id, _, _) in data.frame_info.items():
        if image_id is not None:
            by_id[image_id] = key
        p = data.labelled_frames[key]
        by_name[image_name_key(p)] = key
    out: list[PersonRecord] = []
    unmatched = low = 0
    for i, det in enumerate(dets):
        rec = f"[{i}]"
        try:
            fields = detection_fields(det, i, path)
        except DataError as err:
            problems.error("malformed detection", str(err))
            continue
        if fields is None:
            continue
        score, box = fields
        if score < score_threshold:
            low += 1
            continue
        image_id = det.get("image_id")
        # Only a scalar can name an image (a list or object here is not hashable).
        hashable = isinstance(image_id, (int, float, str)) and not isinstance(image_id, bool)
        key = by_id.get(image_id) if hashable else None
        if key is None and isinstance(det.get("image_name"), str):
            key = by_name.get(image_name_key(det["image_name"]))
        if key is None:
            unmatched += 1
            continue
        if box[2] <= 0 or box[3] <= 0:
            problems.error(
                "zero-size box", f"box {box.tolist()} has zero size", path=path, record=rec, field="bbox"
            )
            continue
        out.append(_record(data, key, box, score))
    log.info(
        "%s: %d detections kept, %d below score %.2f, %d on frames that are not labelled",
        path,
        len(out),
        low,
        score_threshold,
        unmatched,
    )
    problems.log_summary(str(path))
    if gap_fill is not None and gap_fill.max_gap > 0:
        added = _fill_gaps(out, data, gap_fill)
        log.info(
            "%s: %d boxes added in gaps (neighbours up to %d frames away)", path, len(added), gap_fill.max_gap
        )
        out += added
    return out


def _record(data: Dataset, key: tuple[str, int], box: np.ndarray, score: float) -> PersonRecord:
    image_id, size, regions = data.frame_info[key]
    return PersonRecord(
        video_id=key[0],
        frame_index=key[1],
        image_path=data.labelled_frames[key],
        image_size=size,
        box=box,
        ignore_regions=regions,
        image_id=image_id,
        box_score=score,
    )


def _fill_gaps(records: list[PersonRecord], data: Dataset, cfg: GapFillConfig) -> list[PersonRecord]:
    """Records for the boxes ``fill_gaps`` adds, video by video over every labelled frame (a
    frame where the detector found nobody is where a gap is most likely)."""
    by_frame = group_by_frame(records)
    videos: dict[str, list[int]] = defaultdict(list)
    for video, frame in data.labelled_frames:
        videos[video].append(frame)
    added = []
    for video, frames in sorted(videos.items()):
        frames.sort()
        recs = [by_frame.get((video, f), []) for f in frames]
        boxes = [np.array([r.box for r in rs]).reshape(-1, 4) for rs in recs]
        scores = [np.array([r.box_score for r in rs]) for rs in recs]
        filled = fill_gaps(frames, boxes, scores, cfg.max_gap, cfg.min_score, cfg.link_iou, cfg.score_decay)
        for frame, (new_boxes, new_scores) in zip(frames, filled, strict=True):
            added += [
                _record(data, (video, frame), b, float(s)) for b, s in zip(new_boxes, new_scores, strict=True)
            ]
    return added
