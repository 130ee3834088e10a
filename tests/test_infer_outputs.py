"""The standard outputs of ``cmpose infer`` (cmpose.infer.outputs): ``--format``, PoseTrack-style
frame naming against the real sample GT, the PoseTrack18 file through ``cmpose evaluate`` (GT poses
as predictions give mAP 100), COCO results read back by cmpose's detections reader, track ids."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cmpose.cli import main as cli_main
from cmpose.errors import CmposeError
from cmpose.eval.formats import load_video
from cmpose.eval.posetrack import evaluate
from cmpose.infer.detect import FileBoxes
from cmpose.infer.outputs import (
    FORMATS,
    FramePoses,
    coco_results,
    compact_track_ids,
    gt_images,
    parse_formats,
    posetrack_images,
    posetrack_json,
)
from cmpose.infer.weights import COCO17_NAMES
from cmpose.keypoints import PT18_NAMES
from cmpose.ops.nms import rescore
from cmpose.utils.io import atomic_write_json

J = len(PT18_NAMES)


def frame(index: int, track_ids: list[int], seed: int = 0) -> FramePoses:
    rng = np.random.default_rng((seed, index))
    p = len(track_ids)
    return FramePoses(
        index,
        np.array(track_ids, np.int64),
        np.column_stack([rng.uniform(0, 100, (p, 2)), rng.uniform(20, 80, (p, 2))]).astype(np.float32),
        rng.uniform(0.5, 1.0, p).astype(np.float32),
        rng.uniform(0, 500, (p, J, 2)).astype(np.float32),
        rng.uniform(0.05, 1.0, (p, J)).astype(np.float32),
    )


# --- --format ------------------------------------------------------------------------------------
def test_parse_formats_subset_all_and_errors() -> None:
    assert parse_formats("coco, MP4") == ("mp4", "coco")  # FORMATS order, case-insensitive
    assert parse_formats("all") == FORMATS == ("mp4", "jsonl", "posetrack", "coco")
    for bad in ("gif", "mp4,,coco", ""):
        with pytest.raises(CmposeError, match="mp4, jsonl, posetrack, coco"):
            parse_formats(bad)


# --- track ids -----------------------------------------------------------------------------------
def test_track_ids_below_the_limit_reuse_ended_tracks_and_stay_unique_per_frame() -> None:
    # tracks 7 and 9 end before 12 and 40 start; 8 lives throughout
    frames = [frame(0, [7, 8]), frame(1, [8, 9]), frame(2, [8, 12]), frame(3, [40, 8, 12])]
    ids = compact_track_ids(frames, limit=3)
    assert ids == {7: 0, 8: 1, 9: 0, 12: 0, 40: 2}
    for f in frames:
        new = [ids[t] for t in f.track_ids.tolist()]
        assert len(set(new)) == len(new) and max(new) < 3
    with pytest.raises(CmposeError, match="more than 2 tracks at once"):
        compact_track_ids([frame(0, [1, 2, 3])], limit=2)


# --- frame naming --------------------------------------------------------------------------------
def test_posetrack_folder_gets_the_datasets_ids_and_file_names(pt18_sample: Path) -> None:
    for gt_file in sorted((pt18_sample / "annotations" / "val").glob("*.json")):
        folder = pt18_sample / "images" / "val" / gt_file.stem
        names = sorted(p.name for p in folder.glob("*.jpg"))
        ours = posetrack_images(folder, gt_file.stem, len(names), (1920, 1080), names)
        gt = json.loads(gt_file.read_text())["images"]
        assert [(i["id"], i["file_name"]) for i in ours] == [(i["id"], i["file_name"]) for i in gt]
        assert gt_images(gt_file, gt_file.stem) == gt


def test_other_videos_are_named_as_video_zero() -> None:
    images = posetrack_images(Path("/x/street.mp4"), "street", 3, (960, 540))
    assert [i["id"] for i in images] == [10**10, 10**10 + 1, 10**10 + 2]
    assert images[2]["file_name"] == "images/val/street/000002.jpg"
    assert images[0]["width"] == 960 and images[0]["nframes"] == 3


# --- PoseTrack18 file ----------------------------------------------------------------------------
def gt_as_predictions(gt_file: Path) -> list[FramePoses]:
    """The GT people of a PoseTrack18 file as FramePoses: unannotated joints NaN (not predicted),
    distinct scores (poseval's ties are not reproducible, docs/evaluation.md)."""
    data = json.loads(gt_file.read_text())
    position = {im["id"]: f for f, im in enumerate(data["images"])}
    by_frame: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        by_frame.setdefault(position[ann["image_id"]], []).append(ann)
    out, n = [], 0
    for f, anns in sorted(by_frame.items()):
        kp = np.array([a["keypoints"] for a in anns], np.float32).reshape(len(anns), J, 3)
        xy = np.where((kp == 0).all(-1, keepdims=True), np.nan, kp[..., :2])
        scores = (np.arange(n, n + len(anns) * J).reshape(len(anns), J) + 1) / (len(anns) * J + n + 1)
        n += len(anns) * J
        boxes = np.array([a["bbox"] for a in anns], np.float32)
        ids = np.array([a["track_id"] for a in anns])
        out.append(FramePoses(f, ids, boxes, np.ones(len(anns), np.float32), xy, scores.astype(np.float32)))
    return out


def test_gt_poses_through_the_writer_score_100_in_cmpose_evaluate(pt18_sample: Path, tmp_path: Path) -> None:
    gt_dir, pred_dir = tmp_path / "gt", tmp_path / "pred"
    gt_dir.mkdir()
    for gt_file in sorted((pt18_sample / "annotations" / "val").glob("*.json")):
        shutil.copy(gt_file, gt_dir / gt_file.name)
        folder = pt18_sample / "images" / "val" / gt_file.stem
        names = sorted(p.name for p in folder.glob("*.jpg"))
        images = posetrack_images(folder, gt_file.stem, len(names), (1920, 1080), names)
        data = posetrack_json(gt_as_predictions(gt_file), images)
        atomic_write_json(pred_dir / gt_file.name, data, indent=None)
        video = load_video(pred_dir / gt_file.name, "pred")  # cmpose's own reader accepts it
        assert video.n_frames == len(names) and video.n_unscored == 0
    report = evaluate(gt_dir, pred_dir)
    assert report["Total"] == pytest.approx(100.0)
    assert cli_main.main(["evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir)]) == 0
    # a wrong prediction is not 100: the same file with every joint moved by 200 px
    moved = [
        FramePoses(f.frame_index, f.track_ids, f.boxes, f.box_scores, f.keypoints + 200, f.scores)
        for f in gt_as_predictions(gt_dir / "009473_mpii_test.json")
    ]
    folder = pt18_sample / "images" / "val" / "009473_mpii_test"
    images = posetrack_images(folder, folder.name, 1, (1920, 1080), ["000000.jpg"])
    atomic_write_json(pred_dir / "009473_mpii_test.json", posetrack_json(moved, images), indent=None)
    assert evaluate(gt_dir, pred_dir)["Total"] < 90


def test_a_coco_model_predicts_no_head_bottom_or_head_top(tmp_path: Path) -> None:
    f = frame(0, [3, 5])
    images = posetrack_images(Path("v"), "v", 1, (640, 360))
    data = posetrack_json([f], images, COCO17_NAMES)
    for p, ann in enumerate(data["annotations"]):
        kp = np.array(ann["keypoints"]).reshape(J, 3)
        assert (kp[1:3] == 0).all() and ann["scores"][1:3] == [0.0, 0.0]  # COCO's eyes are not these
        keep = [j for j in range(J) if j not in (1, 2)]  # every other joint has the same name
        np.testing.assert_allclose(kp[keep, :2], f.keypoints[p, keep], atol=0.01)
        assert (kp[keep, 2] == 1).all()
        assert ann["score"] == pytest.approx(rescore(f.box_scores, f.scores)[p], abs=1e-4)
    assert data["categories"][0]["keypoints"] == list(PT18_NAMES)
    atomic_write_json(tmp_path / "v.json", data, indent=None)
    assert load_video(tmp_path / "v.json", "pred").people.present.sum() == 2 * 13  # 15 scored minus 2


# --- COCO results --------------------------------------------------------------------------------
def test_coco_results_keep_the_models_joint_order_and_read_back_as_boxes(tmp_path: Path) -> None:
    frames = [frame(0, [1, 2]), frame(2, [2])]
    images = posetrack_images(Path("v"), "v", 3, (640, 360))
    results = coco_results(frames, [i["id"] for i in images])
    assert [r["image_id"] for r in results] == [10**10, 10**10, 10**10 + 2]
    first = results[0]
    assert set(first) >= {"image_id", "category_id", "keypoints", "score"} and first["category_id"] == 1
    kp = np.array(first["keypoints"]).reshape(J, 3)
    np.testing.assert_allclose(kp[:, :2], frames[0].keypoints[0], atol=0.01)
    np.testing.assert_allclose(kp[:, 2], frames[0].scores[0], atol=1e-4)
    atomic_write_json(tmp_path / "coco.json", results)
    boxes = FileBoxes(tmp_path / "coco.json", "v", score_threshold=0.0)  # its image_id frames
    assert boxes.frames == [0, 2]
    np.testing.assert_allclose(boxes(2)[0], frames[1].boxes, atol=0.01)
