"""The box ceiling: GT poses on the boxes that find a person; missed people stay missed."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from box_files import gt_boxes

from cmpose.cli.main import main
from cmpose.data.detections import load_detections
from cmpose.data.readers import read_annotations
from cmpose.eval.ceiling import box_ceiling, ceiling_predictions
from cmpose.synth import SynthConfig, generate


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ceiling")
    generate(
        root,
        SynthConfig(videos=2, frames=8, people=(2, 3), size=(160, 96), hard_ratio=0.0, val_ratio=0.5, seed=2),
        progress=False,
    )
    return root


def test_gt_boxes_reach_100_and_a_dropped_box_loses_its_person(data: Path, tmp_path: Path) -> None:
    val = data / "annotations" / "val"
    boxes = gt_boxes(val)
    people = len(boxes)
    assert people >= 4
    full = tmp_path / "full.json"
    full.write_text(json.dumps(boxes))
    report = box_ceiling(val, full, tmp_path / "p1")
    assert report["Total"] == pytest.approx(100.0)
    assert report["found"] == report["people"] == people
    # one person without a box (missed), plus a false positive far from everybody
    fewer = boxes[1:] + [{**boxes[0], "bbox": [0.0, 0.0, 3.0, 3.0]}]
    part = tmp_path / "part.json"
    part.write_text(json.dumps(fewer))
    report = box_ceiling(val, part, tmp_path / "p2")
    assert report["found"] == people - 1
    assert 0.0 < report["Total"] < 100.0
    # boxes below the score threshold are dropped, as cmpose test drops them
    low = tmp_path / "low.json"
    low.write_text(json.dumps([{**b, "score": 0.1} for b in boxes]))
    assert box_ceiling(val, low, tmp_path / "p3")["found"] == 0


def test_ceiling_predictions_put_the_gt_pose_on_its_box(data: Path, tmp_path: Path) -> None:
    val = data / "annotations" / "val"
    gt = read_annotations(val)
    # shifted boxes still overlap their person (IoU > 0.5): each finds its own
    boxes = gt_boxes(val)
    for b in boxes:
        b["bbox"] = [b["bbox"][0] + 0.05 * b["bbox"][2], *b["bbox"][1:]]
    path = tmp_path / "d.json"
    path.write_text(json.dumps(boxes))
    results, found = ceiling_predictions(gt, load_detections(path, gt))
    assert found == sum(1 for p in gt.people if p.num_annotated)
    by_key = {(p.video_id, p.frame_index): p for p in gt.people}  # any person of each frame
    for video, frames in results.items():
        for frame, preds in frames.items():
            for pred in preds:
                annotated = pred.scores > 0
                assert np.allclose(pred.scores[annotated], 0.9)
                assert (video, frame) in by_key
    # every GT pose appears exactly once among the predictions
    # (joints without annotation are NaN, "not predicted", in the predictions; -1 on both sides)
    gt_poses = sorted(
        tuple(np.round(np.where(p.keypoints[:, 2:] > 0, p.keypoints[:, :2], -1.0).ravel(), 3))
        for p in gt.people
        if p.num_annotated
    )
    pred_poses = sorted(
        tuple(np.round(np.nan_to_num(np.asarray(q.keypoints), nan=-1.0).ravel(), 3))
        for frames in results.values()
        for preds in frames.values()
        for q in preds
    )
    assert pred_poses == gt_poses


def test_cli_box_ceiling(data: Path, tmp_path: Path, capsys) -> None:
    val = data / "annotations" / "val"
    boxes = tmp_path / "b.json"
    boxes.write_text(json.dumps(gt_boxes(val)))
    assert main(["evaluate", "--gt", str(val), "--box-ceiling", str(boxes)]) == 0
    out = capsys.readouterr().out
    assert "people found" in out and "100.0" in out
    with pytest.raises(SystemExit):  # --pred and --box-ceiling exclude each other
        main(["evaluate", "--gt", str(val), "--pred", str(val), "--box-ceiling", str(boxes)])
