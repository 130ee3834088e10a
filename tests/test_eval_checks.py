"""Input checks (clear errors and loud warnings) and the ``cmpose evaluate`` command."""

from __future__ import annotations

import argparse
import json
import logging

import pytest
from test_eval_support import Scores, gt_as_predictions, load_gt, setup

from cmpose.cli import evaluate as cli_evaluate
from cmpose.errors import DataError, EvaluationError
from cmpose.eval import evaluate

STEM = "009473_mpii_test"


@pytest.fixture()
def dirs(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    return setup(tmp_path, gts, gt_as_predictions(gts))


def _edit(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_missing_prediction_file(dirs):
    gt_dir, pred_dir = dirs
    (pred_dir / f"{STEM}.json").unlink()
    with pytest.raises(EvaluationError, match=f"no prediction file.*{STEM}"):
        evaluate(gt_dir, pred_dir)


def test_prediction_without_gt_is_ignored_with_a_warning(dirs, caplog):
    gt_dir, pred_dir = dirs
    (pred_dir / "999999_mpii_test.json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        assert evaluate(gt_dir, pred_dir)["Total"] == 100.0
    assert "999999_mpii_test.json" in caplog.text


def test_frame_count_differs(dirs):
    gt_dir, pred_dir = dirs
    _edit(pred_dir / f"{STEM}.json", lambda d: d["images"].append({**d["images"][0], "id": 1}))
    with pytest.raises(EvaluationError, match="has 2 frames but its GT .* has 1"):
        evaluate(gt_dir, pred_dir)


def test_track_id_repeated_in_a_frame(dirs):
    gt_dir, pred_dir = dirs

    def dup(d):
        d["annotations"][1]["track_id"] = d["annotations"][0]["track_id"]

    _edit(pred_dir / f"{STEM}.json", dup)
    with pytest.raises(DataError, match=rf"{STEM}.json.*frame 0.*track_id"):
        evaluate(gt_dir, pred_dir)


@pytest.mark.parametrize("missing", ["absent", "empty"])
def test_missing_scores_warn_loudly(dirs, caplog, missing):
    gt_dir, pred_dir = dirs

    def drop(d):
        for a in d["annotations"]:
            if missing == "absent":
                del a["scores"]
            else:
                a["scores"] = []

    _edit(pred_dir / f"{STEM}.json", drop)
    with caplog.at_level(logging.WARNING):
        report = evaluate(gt_dir, pred_dir)
    assert f"{STEM}.json: 29 predicted joints have no per-joint score" in caplog.text
    assert "-9999" in caplog.text
    # Those joints rank last (score -9999) and are all correct here, so nothing changes.
    assert report["Total"] == 100.0


def test_short_score_list(dirs):
    gt_dir, pred_dir = dirs
    _edit(pred_dir / f"{STEM}.json", lambda d: d["annotations"][1].update(scores=[0.5] * 5))
    with pytest.raises(DataError, match=r"annotations\[1\].*field 'scores'.*17 per-joint scores, got 5"):
        evaluate(gt_dir, pred_dir)


def test_bad_keypoints(dirs):
    gt_dir, pred_dir = dirs
    _edit(pred_dir / f"{STEM}.json", lambda d: d["annotations"][0].update(keypoints=[1, 2, 3]))
    with pytest.raises(DataError, match=rf"{STEM}.json, annotations\[0\].*field 'keypoints'"):
        evaluate(gt_dir, pred_dir)


def test_missing_categories(dirs):
    gt_dir, pred_dir = dirs
    _edit(pred_dir / f"{STEM}.json", lambda d: d.pop("categories"))
    with pytest.raises(DataError, match="categories"):
        evaluate(gt_dir, pred_dir)


def test_gt_without_head_box(dirs):
    gt_dir, pred_dir = dirs
    _edit(gt_dir / f"{STEM}.json", lambda d: d["annotations"][1].pop("bbox_head"))
    with pytest.raises(DataError, match=r"annotations\[1\].*bbox_head"):
        evaluate(gt_dir, pred_dir)


def test_unknown_format(dirs):
    gt_dir, pred_dir = dirs
    (pred_dir / f"{STEM}.json").write_text(json.dumps({"people": []}))
    with pytest.raises(DataError, match="neither 'annolist'"):
        evaluate(gt_dir, pred_dir)


def _cli(argv):
    parser = argparse.ArgumentParser()
    cli_evaluate.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_table_and_json(tmp_path, pt18_sample, capsys):
    gts = load_gt(pt18_sample)
    preds = gt_as_predictions(gts, Scores())
    preds["003418_mpii_test"][0][0].keypoints[15] = (900.0, 900.0)  # left ankle: no GT there
    gt_dir, pred_dir = setup(tmp_path, gts, preds)
    out = tmp_path / "out" / "ap.json"
    code = _cli(["evaluate", "--gt", str(gt_dir), "--pred", str(pred_dir), "--json", str(out), "--per-video"])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"]
    assert [line.split()[0] for line in lines[1:]] == [
        "003418_mpii_test",
        "009473_mpii_test",
        "012834_mpii_test",
        "total",
    ]
    data = json.loads(out.read_text())
    assert list(data)[:9] == ["Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total", "joints"]
    assert data["joints"]["nose"] == {"ap": 100.0, "precision": 100.0, "recall": 100.0}
    # No GT left ankle in 003418 but one predicted: NaN AP, written as null.
    assert data["per_video"]["003418_mpii_test"]["joints"]["left_ankle"]["ap"] is None
    assert lines[-1].split()[1:] == [f"{data[c]:.1f}" for c in list(data)[:8]]
