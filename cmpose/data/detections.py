"""Detector boxes for top-down testing: a JSON list of ``{image_id | image_name, bbox, score,
category_id}`` (the COCO results format, as in mmpose's ``*_human_detections.json``, or DCPose's
``image_name`` variant), turned into test samples on the labelled frames of a dataset."""

from __future__ import annotations

import logging
from pathlib import Path, PurePosixPath

import numpy as np

from cmpose.data.jsonio import load_json, number, number_list
from cmpose.data.problems import Problems
from cmpose.data.records import Dataset, PersonRecord
from cmpose.errors import DataError

log = logging.getLogger(__name__)


def load_detections(
    path: Path, data: Dataset, score_threshold: float = 0.2, problems: Problems | None = None
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

    Detections on frames the annotations do not label are counted and skipped (they cannot be
    evaluated); a summary is logged.
    """
    problems = problems if problems is not None else Problems()
    path = Path(path)
    dets = load_json(path)
    if not isinstance(dets, list):
        raise DataError("expected a JSON list of detections", path=path)
    by_id: dict[object, tuple[str, int]] = {}
    by_name: dict[str, tuple[str, int]] = {}
    for key, (image_id, _, _) in data.frame_info.items():
        if image_id is not None:
            by_id[image_id] = key
        p = data.labelled_frames[key]
        by_name["/".join(p.parts[-2:])] = key
    out: list[PersonRecord] = []
    unmatched = low = 0
    for i, det in enumerate(dets):
        rec = f"[{i}]"
        try:
            if not isinstance(det, dict):
                raise DataError("expected an object", path=path, record=rec)
            if int(number(det.get("category_id", 1), path=path, record=rec, field="category_id")) != 1:
                continue
            score = number(det.get("score"), path=path, record=rec, field="score")
            box = np.asarray(number_list(det.get("bbox"), 4, path=path, record=rec, field="bbox"))
        except DataError as err:
            problems.error("malformed detection", str(err))
            continue
        if score < score_threshold:
            low += 1
            continue
        key = by_id.get(det.get("image_id"))
        if key is None and isinstance(det.get("image_name"), str):
            key = by_name.get("/".join(PurePosixPath(det["image_name"]).parts[-2:]))
        if key is None:
            unmatched += 1
            continue
        if box[2] <= 0 or box[3] <= 0:
            problems.error(
                "zero-size box", f"box {box.tolist()} has zero size", path=path, record=rec, field="bbox"
            )
            continue
        image_id, size, regions = data.frame_info[key]
        out.append(
            PersonRecord(
                video_id=key[0],
                frame_index=key[1],
                image_path=data.labelled_frames[key],
                image_size=size,
                box=box,
                ignore_regions=regions,
                image_id=image_id,
                box_score=score,
            )
        )
    log.info(
        "%s: %d detections kept, %d below score %.2f, %d on frames that are not labelled",
        path,
        len(out),
        low,
        score_threshold,
        unmatched,
    )
    problems.log_summary(str(path))
    return out
