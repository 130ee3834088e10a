"""cmpose synth: the written dataset is PoseTrack2018 as the rest of cmpose reads it, and what the
annotations say is what the frames show."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from cmpose.cli.main import main
from cmpose.data.check import check_source, discover_sources
from cmpose.data.detections import load_detections
from cmpose.data.readers import read_annotations
from cmpose.eval import PersonPrediction, evaluate, write_prediction_dir
from cmpose.keypoints import JOINT_INDEX, PT18_NAMES
from cmpose.synth import HARD_LABELS, SynthConfig, generate
from cmpose.synth.detections import iou

CONFIG = SynthConfig(
    videos=3, frames=12, people=(2, 3), size=(160, 96), hard_ratio=0.5, val_ratio=0.34, seed=7
)
EARS = [JOINT_INDEX["left_ear"], JOINT_INDEX["right_ear"]]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth")
    generate(root, CONFIG, progress=False)
    return root


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_layout_names_and_ids(dataset):
    train = sorted(p.name for p in (dataset / "annotations" / "train").iterdir())
    val = sorted(p.name for p in (dataset / "annotations" / "val").iterdir())
    assert train == ["000001_mpii_train.json", "000002_mpii_train.json"]
    assert val == ["000003_mpii_test.json"]
    frames = sorted(p.name for p in (dataset / "images" / "val" / "000003_mpii_test").iterdir())
    assert frames == [f"{f:06d}.jpg" for f in range(12)]
    d = json.loads((dataset / "annotations" / "val" / "000003_mpii_test.json").read_text())
    assert d["categories"][0]["keypoints"] == list(PT18_NAMES)
    assert d["categories"][0]["name"] == "person" and d["categories"][0]["skeleton"]
    img = d["images"][4]
    assert img["file_name"] == "images/val/000003_mpii_test/000004.jpg"
    assert img["id"] == img["frame_id"] == 10000030004
    assert img["vid_id"] == "000003" and img["nframes"] == 12 and img["has_no_densepose"] is True
    assert (img["width"], img["height"]) == (160, 96)
    # val: every 4th frame labelled, and only those carry people
    assert [im["is_labeled"] for im in d["images"]] == [f % 4 == 0 for f in range(12)]
    labelled_ids = {im["id"] for im in d["images"] if im["is_labeled"]}
    assert d["annotations"] and {a["image_id"] for a in d["annotations"]} <= labelled_ids
    t = json.loads((dataset / "annotations" / "train" / "000001_mpii_train.json").read_text())
    assert all(im["is_labeled"] for im in t["images"])


def test_annotation_fields(dataset):
    for path in (dataset / "annotations").rglob("*.json"):
        d = json.loads(path.read_text())
        for a in d["annotations"]:
            kp = np.array(a["keypoints"]).reshape(17, 3)
            assert set(kp[:, 2]) <= {0.0, 1.0}  # PoseTrack18: v = 1 for every annotated joint
            assert (kp[EARS] == 0).all()  # ears are never annotated in PoseTrack18
            assert (kp[kp[:, 2] == 0] == 0).all()
            assert a["num_keypoints"] == int(kp[:, 2].sum()) > 0
            vis = np.array(a["visible"])
            assert vis.shape == (17,) and not (vis > kp[:, 2]).any()  # only annotated joints are visible
            assert set(a["hard"]) <= set(HARD_LABELS)
            assert ("occlusion" in a["hard"]) == bool((kp[:, 2] > vis).any())
            assert a["category_id"] == 1 and a["id"] // 100 == a["image_id"]
            x, y, w, h = a["bbox"]
            assert w > 0 and h > 0 and x >= 0 and y >= 0 and x + w <= 160.01 and y + h <= 96.01
            assert a["bbox_head"][2] > 0 and a["bbox_head"][3] > 0
            on = kp[:, 2] > 0
            assert (kp[on, 0] >= x - 0.01).all() and (kp[on, 0] <= x + w + 0.01).all()


def test_reads_back_checks_clean_and_hard_labels_reach_records(dataset):
    data = read_annotations(dataset / "annotations" / "train")
    assert len(data.labelled_frames) == 2 * 12 and len(data.people) > 2 * 12
    assert all(p.image_size == (160, 96) and p.head_box is not None for p in data.people)
    assert any(p.hard for p in data.people)  # per-frame hard labels reach PersonRecord
    assert all(p.visible is not None and p.visible.shape == (17,) for p in data.people)
    for name, paths in discover_sources(dataset).items():
        report = check_source(name, paths, all_frames=True)
        assert report is not None and report.problems.items == [], report.problems.items


def test_data_check_cli_reports_nothing(dataset, capsys):
    assert main(["data", "check", str(dataset), "--all-frames"]) == 0
    assert capsys.readouterr().out.count("problems           0 (no problems found)") == 2


def test_gt_as_predictions_scores_100(dataset, tmp_path):
    gt_dir = dataset / "annotations" / "val"
    data = read_annotations(gt_dir)
    results: dict = {}
    for i, p in enumerate(data.people):
        xy = p.keypoints[:, :2].copy()
        xy[p.keypoints[:, 2] == 0] = np.nan
        scores = 0.5 - 1e-6 * (np.arange(17) + 17 * i)  # distinct: no ties
        results.setdefault(p.video_id, {}).setdefault(p.frame_index, []).append(PersonPrediction(xy, scores))
    write_prediction_dir(gt_dir, results, tmp_path)
    report = evaluate(gt_dir, tmp_path)
    assert report["Total"] == 100.0
    assert all(j["ap"] == 100.0 for j in report["joints"].values())


def test_detections_load_and_look_like_a_detector(dataset):
    data = read_annotations(dataset / "annotations" / "val")
    dets = load_detections(dataset / "detections" / "val_boxes.json", data, score_threshold=0.0)
    assert dets and all(d.video_id == "000003_mpii_test" and d.frame_index % 4 == 0 for d in dets)
    best = [
        max((iou(d.box, p.box) for d in dets if d.frame_index == p.frame_index), default=0)
        for p in data.people
    ]
    assert np.mean(np.array(best) > 0.5) > 0.7  # most people are found ...
    assert np.median(best) > 0.7  # ... with good boxes


def test_same_seed_same_bytes_other_seed_different(tmp_path):
    cfg = SynthConfig(videos=2, frames=5, size=(96, 64), hard_ratio=0.6, val_ratio=0.5, seed=3)
    generate(tmp_path / "a", cfg, progress=False)
    generate(tmp_path / "b", cfg, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert len(a) == 2 * 5 + 2 + 3 and a == b  # frames, annotations, 2 detection files, synth.json
    other = SynthConfig(**{**cfg.__dict__, "seed": 4})
    generate(tmp_path / "c", other, progress=False)
    c = _files(tmp_path / "c")
    assert c.keys() == a.keys()
    for name in ("annotations/train/000001_mpii_train.json", "images/train/000001_mpii_train/000000.jpg"):
        assert c[name] != a[name]


def test_extra_train_videos_leave_the_val_split_as_it_was(tmp_path):
    base = SynthConfig(videos=3, frames=4, size=(96, 64), hard_ratio=0.5, val_ratio=0.34, seed=5)
    more = SynthConfig(**{**base.__dict__, "extra_train_videos": 2})
    assert more.val_videos() == base.val_videos() == [2]
    assert (more.total_videos, more.total_frames) == (5, 20)
    generate(tmp_path / "a", base, progress=False)
    generate(tmp_path / "b", more, progress=False)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    # every file of the smaller dataset is in the larger one byte for byte (val detections
    # too), except synth.json, which records the config
    assert {k: v for k, v in a.items() if k != "synth.json"} == {k: b[k] for k in a if k != "synth.json"}
    train = sorted(p.name for p in (tmp_path / "b" / "annotations" / "train").iterdir())
    assert train == [f"{n:06d}_mpii_train.json" for n in (1, 2, 4, 5)]  # video 3 is val


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"videos": 0}, "videos"),
        ({"extra_train_videos": -1}, "extra_train_videos"),
        ({"frames": 10001}, "frames"),
        ({"people": "3-1"}, "people (maximum)"),
        ({"people": "a-b"}, "people"),
        ({"size": "640"}, "size"),
        ({"size": (32, 32)}, "size (width)"),
        ({"hard_ratio": 1.5}, "hard_ratio"),
        ({"val_ratio": -0.1}, "val_ratio"),
        ({"seed": -1}, "seed"),
    ],
)
def test_config_errors_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match="^" + re.escape(field) + ": expected"):
        SynthConfig(**kwargs)


def test_config_parses_cli_forms_and_splits():
    cfg = SynthConfig(people="1-3", size="320x180")
    assert cfg.people == (1, 3) and cfg.size == (320, 180)
    assert SynthConfig(people="3").people == (3, 3)
    assert SynthConfig(videos=10, val_ratio=0.2).val_videos() == [8, 9]
    assert SynthConfig(videos=2, val_ratio=0.01).val_videos() == [1]  # at least one of each
    assert SynthConfig(videos=2, val_ratio=0.99).val_videos() == [1]
    assert SynthConfig(videos=3, val_ratio=0.0).val_videos() == []


def test_cli_writes_a_dataset(tmp_path, capsys):
    out = tmp_path / "d"
    args = ["synth", str(out), "--videos", "2", "--frames", "4", "--size", "96x64", "--people", "2"]
    assert main([*args, "--seed", "1", "--no-progress"]) == 0
    assert "1 train + 1 val videos, 8 frames" in capsys.readouterr().out
    assert main([*args, "--seed", "1", "--no-progress", "--extra-train-videos", "1"]) == 0
    assert "2 train + 1 val videos, 12 frames" in capsys.readouterr().out
    assert (out / "detections" / "val_boxes.json").is_file()
    assert main(["synth", str(out), "--hard-ratio", "2"]) == 2  # a clear error, no traceback
