"""The ceiling of a set of person boxes: the PoseTrack mAP a perfect pose model would reach on
them (``cmpose evaluate --box-ceiling``).

Each GT person matched to a box (Hungarian matching on IoU, as the tracker does) gets its exact
GT pose, every joint scored with the box's score; GT people without a box stay missed, and boxes
without a person add nothing (a perfect model would give them no confident joint). The number
separates what the boxes cost (missed people) from what the pose model costs: a model's mAP with
these boxes over this ceiling is the share of the reachable accuracy it reached.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from cmpose.data.config import GapFillConfig
from cmpose.data.detections import load_detections
from cmpose.data.readers import read_annotations
from cmpose.data.records import Dataset, PersonRecord, group_by_frame
from cmpose.eval.posetrack import evaluate
from cmpose.eval.writer import PersonPrediction, write_prediction_dir
from cmpose.ops.boxes import match_boxes


def ceiling_predictions(
    gt: Dataset, boxes: list[PersonRecord], iou_threshold: float = 0.5
) -> tuple[dict[str, dict[int, list[PersonPrediction]]], int]:
    """GT poses on the boxes that find them; returns (results keyed video -> frame, as
    ``write_prediction_dir`` takes them; the number of GT people found)."""
    boxes_by_frame = group_by_frame(boxes)
    results: dict[str, dict[int, list[PersonPrediction]]] = defaultdict(lambda: defaultdict(list))
    found = 0
    for (video, frame), people in group_by_frame([p for p in gt.people if p.num_annotated]).items():
        dets = boxes_by_frame.get((video, frame), [])
        pairs, _, _ = match_boxes([p.box for p in people], [d.box for d in dets], iou_threshold)
        for i, k in pairs:
            kps = people[i].keypoints
            annotated = kps[:, 2] > 0
            xy = np.where(annotated[:, None], kps[:, :2], np.nan)  # NaN: not predicted (writer)
            score = float(dets[k].box_score)
            scores = np.where(annotated, score, 0.0)
            results[video][frame].append(PersonPrediction(xy, scores, score=score, box=dets[k].box))
            found += 1
    return {v: dict(frames) for v, frames in results.items()}, found


def box_ceiling(
    gt_dir: Path,
    detections: Path,
    out_dir: Path,
    score_threshold: float = 0.2,
    iou_threshold: float = 0.5,
    gap_fill: GapFillConfig | None = None,
) -> dict[str, Any]:
    """The PoseTrack mAP of GT poses on ``detections`` (boxes below ``score_threshold`` dropped,
    and gaps filled as ``gap_fill`` says, as ``cmpose test`` does). Writes the prediction files
    to ``out_dir``; returns the report with ``people`` (annotated GT people) and ``found``
    (those a box matched)."""
    gt = read_annotations(Path(gt_dir))
    boxes = load_detections(Path(detections), gt, score_threshold, gap_fill=gap_fill)
    results, found = ceiling_predictions(gt, boxes, iou_threshold)
    write_prediction_dir(Path(gt_dir), results, Path(out_dir))
    report = evaluate(gt_dir, out_dir)
    return {**report, "people": sum(1 for p in gt.people if p.num_annotated), "found": found}
