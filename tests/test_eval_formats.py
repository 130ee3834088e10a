"""PoseTrack2017 and PoseTrack2018 forms of the same data give the same numbers; the writer round-trips."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_eval_support import STEMS, Scores, gt_as_predictions, load_gt, to_pt17, write_gt

from cmpose.eval import evaluate, write_prediction_dir
from cmpose.keypoints import PT17_NAMES


@pytest.fixture()
def folders(tmp_path, pt18_sample):
    """GT in both forms, and the same noisy predictions written against each (so in each form)."""
    gts = load_gt(pt18_sample)
    preds = gt_as_predictions(gts, Scores())
    rng = np.random.default_rng(0)
    for frames in preds.values():
        for people in frames.values():
            for p in people:
                p.keypoints += rng.normal(0, 6, p.keypoints.shape)
    gt18 = write_gt(tmp_path / "gt18", gts)
    gt17 = write_gt(tmp_path / "gt17", {s: to_pt17(g) for s, g in gts.items()})
    write_prediction_dir(gt18, preds, tmp_path / "pred18")
    write_prediction_dir(gt17, preds, tmp_path / "pred17")
    return tmp_path


def test_written_files_take_the_gt_format(folders, pt18_sample):
    gts = load_gt(pt18_sample)
    for stem in STEMS:
        p18 = json.loads((folders / "pred18" / f"{stem}.json").read_text())
        assert p18["images"] == gts[stem]["images"]
        assert p18["categories"][0]["name"] == "person"
        assert all(len(a["scores"]) == 17 and len(a["keypoints"]) == 51 for a in p18["annotations"])
        p17 = json.loads((folders / "pred17" / f"{stem}.json").read_text())
        assert len(p17["annolist"]) == len(gts[stem]["images"])
        for rect in p17["annolist"][0]["annorect"]:
            ids = [pt["id"][0] for pt in rect["annopoints"][0]["point"]]
            assert ids == sorted(ids) and set(ids) <= set(range(len(PT17_NAMES)))
            assert all("score" in pt for pt in rect["annopoints"][0]["point"])


def test_both_formats_give_identical_numbers(folders):
    reports = {
        (g, p): evaluate(folders / f"gt{g}", folders / f"pred{p}", per_video=True)
        for g in ("17", "18")
        for p in ("17", "18")
    }
    reference = reports[("18", "18")]
    assert 50 < reference["Total"] < 100  # the noise makes some joints wrong
    for key, report in reports.items():
        assert report == reference, key


def test_round_trip_of_gt_is_100_in_both_formats(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    preds = gt_as_predictions(gts)
    gt17 = write_gt(tmp_path / "gt17", {s: to_pt17(g) for s, g in gts.items()})
    write_prediction_dir(gt17, preds, tmp_path / "pred17")
    report = evaluate(gt17, tmp_path / "pred17")
    assert report["Total"] == 100.0
    assert report["Head"] == 100.0 and report["Ankle"] == 100.0
