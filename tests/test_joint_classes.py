"""Per-class PoseTrack mAP (cmpose.eval.joint_classes): visible / hidden here but visible within
the clip window / hidden throughout, from the ``visible_dt`` of cmpose synth --version 2."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cmpose.engine.testing import report_markdown
from cmpose.errors import DataError
from cmpose.eval import PersonPrediction, evaluate, write_prediction_dir
from cmpose.eval.joint_classes import JOINT_CLASSES, classify, clip_window, evaluate_by_class
from cmpose.eval.matching import assign_people
from cmpose.eval.writer import PT18_CATEGORY
from cmpose.keypoints import JOINT_INDEX
from cmpose.synth import SynthConfig, generate

VIDEO = "000001_mpii_test"
EARS = (JOINT_INDEX["left_ear"], JOINT_INDEX["right_ear"])
HIDDEN_1 = (JOINT_INDEX["left_wrist"], JOINT_INDEX["right_knee"])  # visible one frame away
HIDDEN_2 = (JOINT_INDEX["nose"],)  # visible two frames away
HIDDEN = (JOINT_INDEX["left_ankle"],)  # not visible within the window stored


def _joints(x0: float) -> np.ndarray:
    """(17, 2) distinct positions (the ears are left unannotated by the callers)."""
    j = np.arange(17)
    return np.stack([x0 + 7.0 * (j % 3), 10.0 + 14.0 * j], 1)


def _dt() -> list[int]:
    dt = [0] * 17
    for j in HIDDEN_1:
        dt[j] = 1
    for j in HIDDEN_2:
        dt[j] = 2
    for j in (*HIDDEN, *EARS):
        dt[j] = -1
    return dt


def _image(f: int) -> dict:
    iid = 10000010000 + f
    return {"file_name": f"images/val/{VIDEO}/{f:06d}.jpg", "id": iid, "frame_id": iid, "is_labeled": True}


def _write_gt(folder: Path, with_dt: bool = True) -> Path:
    """Two labelled frames: two people in frame 0, one of them again in frame 1."""
    anns = []
    for f, track, x0 in ((0, 0, 20.0), (0, 1, 200.0), (1, 0, 24.0)):
        kp = np.concatenate([_joints(x0), np.ones((17, 1))], 1)
        kp[list(EARS)] = 0
        ann = {
            "image_id": 10000010000 + f,
            "track_id": track,
            "keypoints": kp.ravel().tolist(),
            "bbox_head": [x0, 0.0, 20.0, 20.0],  # head size 0.6 x 28.3: a joint 50 px off is wrong
        }
        if with_dt:
            ann["visible_dt"] = _dt()
        anns.append(ann)
    folder.mkdir(parents=True, exist_ok=True)
    data = {"images": [_image(0), _image(1)], "annotations": anns, "categories": [PT18_CATEGORY]}
    (folder / f"{VIDEO}.json").write_text(json.dumps(data))
    return folder


def _write_pred(folder: Path, gt_dir: Path, people: dict[int, list[np.ndarray]]) -> Path:
    """Predictions: frame -> list of (17, 2) joint positions, each person with distinct scores."""
    results = {VIDEO: {}}
    k = 0
    for f, persons in people.items():
        for xy in persons:
            scores = 0.9 - 1e-3 * (np.arange(17) + 17 * k)
            results[VIDEO].setdefault(f, []).append(PersonPrediction(xy, scores))
            k += 1
    write_prediction_dir(gt_dir, results, folder)
    return folder


def _gt_people() -> dict[int, list[np.ndarray]]:
    return {0: [_joints(20.0), _joints(200.0)], 1: [_joints(24.0)]}


def test_classify_and_clip_window():
    dt = np.array([0, 1, 2, 3, -1, 0])
    annotated = np.array([True] * 5 + [False])
    assert classify(dt, annotated, 1).tolist() == [0, 1, 2, 2, 2, -1]
    assert classify(dt, annotated, 2).tolist() == [0, 1, 1, 2, 2, -1]
    assert classify(dt, annotated, 0).tolist() == [0, 2, 2, 2, 2, -1]
    assert (
        clip_window(3, 1) == 1
        and clip_window(3, 2) == 2
        and clip_window(5, 2) == 4
        and clip_window(1, 3) == 0
    )


def test_gt_as_prediction_scores_100_in_every_class(tmp_path):
    gt = _write_gt(tmp_path / "gt")
    pred = _write_pred(tmp_path / "pred", gt, _gt_people())
    report = evaluate_by_class(gt, pred, window=1)
    assert report["window"] == 1 and list(report["classes"]) == list(JOINT_CLASSES)
    n = {name: r["n_gt"] for name, r in report["classes"].items()}
    assert n == {"visible": 3 * 11, "hidden_here_visible_in_window": 3 * 2, "hidden_throughout": 3 * 2}
    for r in report["classes"].values():
        assert r["Total"] == 100.0
    # a joint type without GT of the class is left out (NaN), not scored 0
    hidden = report["classes"]["hidden_throughout"]
    assert hidden["joints"]["nose"]["ap"] == 100.0 and math.isnan(hidden["joints"]["head_top"]["ap"])
    assert hidden["Ankle"] == 100.0 and math.isnan(hidden["Shoulder"])
    # the window moves the nose (visible two frames away) from hidden_throughout to the window class
    wide = evaluate_by_class(gt, pred, window=2)["classes"]
    assert wide["hidden_here_visible_in_window"]["n_gt"] == 9 and wide["hidden_throughout"]["n_gt"] == 3


def test_wrong_hidden_joints_cost_their_class_only(tmp_path):
    """Predictions perfect on visible joints and 50 px off on the window class: the visible class
    stays 100 (those misses are neither its positives nor its false positives), the window class
    finds nothing, and the ordinary mAP is in between."""
    gt = _write_gt(tmp_path / "gt")
    people = _gt_people()
    for persons in people.values():
        for xy in persons:
            xy[list(HIDDEN_1), 1] += 50.0
    pred = _write_pred(tmp_path / "pred", gt, people)
    classes = evaluate_by_class(gt, pred, window=1)["classes"]
    assert classes["visible"]["Total"] == 100.0
    assert classes["hidden_here_visible_in_window"]["Total"] == 0.0
    assert classes["hidden_throughout"]["Total"] == 100.0
    assert 0.0 < evaluate(gt, pred)["Total"] < 100.0


def test_unmatched_people_count_in_the_ordinary_table_only(tmp_path):
    gt = _write_gt(tmp_path / "gt")
    people = _gt_people()
    people[1].insert(0, _joints(400.0))  # a confident person where there is nobody
    pred = _write_pred(tmp_path / "pred", gt, people)
    assert evaluate(gt, pred)["Total"] < 100.0
    for r in evaluate_by_class(gt, pred, window=1)["classes"].values():
        assert r["Total"] == 100.0


def test_without_visible_dt_there_are_no_classes_and_bad_values_are_named(tmp_path):
    gt = _write_gt(tmp_path / "plain", with_dt=False)
    pred = _write_pred(tmp_path / "pred", gt, _gt_people())
    assert evaluate_by_class(gt, pred, window=1) is None
    bad = _write_gt(tmp_path / "bad")
    data = json.loads((bad / f"{VIDEO}.json").read_text())
    data["annotations"][1]["visible_dt"] = [0] * 5
    (bad / f"{VIDEO}.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[1\].*visible_dt"):
        evaluate_by_class(bad, pred, window=1)


def test_assign_people_names_the_matched_gt_person():
    gt_xy = np.stack([_joints(20.0), _joints(200.0), _joints(24.0)])[:, :15]
    present = np.ones((3, 15), bool)
    head = np.full(3, 17.0)
    # frame 0: predictions for GT 1 then GT 0; frame 1: one far from GT 2 (unmatched)
    pr_xy = np.stack([gt_xy[1], gt_xy[0], gt_xy[2] + 300.0])
    labels, matched = assign_people(
        np.array([0, 0, 1]), gt_xy, present, head, np.array([0, 0, 1]), pr_xy, np.ones((3, 15), bool)
    )
    assert matched.tolist() == [1, 0, -1]
    assert labels[:2].all() and not labels[2].any()


def test_report_markdown_shows_the_class_table(tmp_path):
    gt = _write_gt(tmp_path / "gt")
    pred = _write_pred(tmp_path / "pred", gt, _gt_people())
    report = {"all": evaluate(gt, pred), "hard": None, "boxes": "gt"}
    report["joint_classes"] = evaluate_by_class(gt, pred, window=2)
    text = report_markdown(report)
    assert "Per joint class (window +-2 frames" in text
    assert "hidden_here_visible_in_window(2)" in text and "hidden_throughout" in text and "GT joints" in text
    assert "Per joint class" not in report_markdown({**report, "joint_classes": None})


def test_on_a_version_2_synthetic_set(tmp_path):
    """GT written back as predictions scores 100 in each class that has joints; version 1 has none."""
    cfg = SynthConfig(
        videos=2, frames=12, people=(2, 3), size=(160, 96), hard_ratio=0.5, val_ratio=0.5, version=2, seed=5
    )
    generate(tmp_path / "d", cfg, progress=False)
    gt = tmp_path / "d" / "annotations" / "val"
    results: dict = {}
    k = 0
    for path in sorted(gt.glob("*.json")):
        data = json.loads(path.read_text())
        frame = {im["id"]: f for f, im in enumerate(data["images"])}
        for a in data["annotations"]:
            kp = np.array(a["keypoints"]).reshape(17, 3)
            xy = np.where(kp[:, 2:] > 0, kp[:, :2], np.nan)
            scores = 0.5 - 1e-6 * (np.arange(17) + 17 * k)
            k += 1
            results.setdefault(path.stem, {}).setdefault(frame[a["image_id"]], []).append(
                PersonPrediction(xy, scores)
            )
    write_prediction_dir(gt, results, tmp_path / "pred")
    classes = evaluate_by_class(gt, tmp_path / "pred", window=1)["classes"]
    assert classes["visible"]["n_gt"] > 0 and classes["hidden_here_visible_in_window"]["n_gt"] > 0
    assert sum(r["n_gt"] for r in classes.values()) == sum(
        int((np.array(a["keypoints"]).reshape(17, 3)[:, 2] > 0).sum())
        for p in gt.glob("*.json")
        for a in json.loads(p.read_text())["annotations"]
    )
    for r in classes.values():
        assert r["n_gt"] == 0 or r["Total"] == 100.0


@pytest.mark.usefixtures("one_torch_thread")
def test_run_test_reports_classes_with_the_clips_window(tmp_path):
    """cmpose test on version 2 data: a perfect model scores 100 per class, the window is the
    clip's reach (T // 2 x test_step), report.json and report.md carry the class table."""
    import torch
    from test_engine_testing import CROP, OracleModel, _data_config, _val_dataset

    from cmpose.data.config import ClipConfig
    from cmpose.engine.config import TestConfig
    from cmpose.engine.testing import run_test

    cfg = SynthConfig(
        videos=2, frames=8, people=(1, 2), size=(160, 96), hard_ratio=0.5, val_ratio=0.5, version=2, seed=2
    )
    generate(tmp_path / "d", cfg, progress=False)
    clip = ClipConfig(num_frames=3, test_step=2)
    test = TestConfig(flip_test=False, boxes="gt", workers=0, batch_size=8)
    model = OracleModel(_val_dataset(tmp_path / "d", clip, CROP))
    report = run_test(
        model, _data_config(tmp_path / "d"), clip, test, tmp_path / "t", torch.device("cpu"), None
    )
    assert report["joint_classes"]["window"] == 2
    for r in report["joint_classes"]["classes"].values():
        assert r["n_gt"] == 0 or r["Total"] == 100.0
    on_disk = json.loads((tmp_path / "t" / "report.json").read_text())
    assert on_disk["joint_classes"]["classes"]["visible"]["n_gt"] > 0
    assert "hidden_here_visible_in_window(2)" in (tmp_path / "t" / "report.md").read_text()
