"""``cmpose evaluate --track``: poseval's pose-tracking metrics on small generated videos.

Expected values are worked out by hand from poseval's rules (docs/evaluation.md, "Tracking mode");
the last tests hold numbers poseval itself printed for generated inputs (4258a15, motmetrics 1.4.0).
"""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
from test_eval_track_support import P, rich_video, write_pair

from cmpose.cli.main import main
from cmpose.errors import DataError
from cmpose.eval.track import METRICS, evaluate_tracking
from cmpose.keypoints import PT17_NAMES, SCORED_NAMES

VIDEO = "000001_mpii_test"


def _two_tracks(n: int = 4) -> list[list[P]]:
    return [[P(1, 100), P(2, 600)] for _ in range(n)]


def _all(report: dict, metric: str, value: float) -> None:
    for name in SCORED_NAMES:
        assert report["joints"][name][metric] == pytest.approx(value, abs=1e-9), (metric, name)
    assert report[metric]["Total"] == pytest.approx(value, abs=1e-9)


@pytest.mark.parametrize("fmt", [("pt18", "pt18"), ("pt17", "pt17"), ("pt18", "pt17"), ("pt17", "pt18")])
def test_gt_as_prediction_is_perfect(tmp_path, fmt):
    gt = _two_tracks()
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, gt, fmt))
    for metric in METRICS:
        _all(report, metric, 100.0)
    # Three of the four frames are fed (the last is left out), two people each.
    assert report["counts"]["nose"]["objects"] == 6


def test_id_switch_costs_one_per_object_that_changes_hypothesis(tmp_path):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)], [P(7, 100), P(8, 600)], [P(8, 100), P(7, 600)], [P(8, 100), P(7, 600)]]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    # Frame 2 swaps both ids: 2 switches over 6 objects; switches still count as detections.
    _all(report, "MOTA", 100 * (1 - 2 / 6))
    _all(report, "Precision", 100.0)
    _all(report, "Recall", 100.0)
    assert report["counts"]["nose"]["switches"] == 2


def test_new_id_for_a_track_is_a_switch(tmp_path):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)], [P(9, 100), P(8, 600)], [P(9, 100), P(8, 600)], [P(9, 100), P(8, 600)]]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    _all(report, "MOTA", 100 * (1 - 1 / 6))


def test_miss_and_false_positive(tmp_path):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)], [P(7, 100)], [P(7, 100), P(8, 600), P(9, 1200)], [P(7, 100), P(8, 600)]]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    _all(report, "MOTA", 100 * (1 - 2 / 6))
    _all(report, "Recall", 100 * 5 / 6)
    _all(report, "Precision", 100 * 5 / 6)


def test_joint_beyond_half_a_head_is_a_miss_and_a_false_positive(tmp_path):
    gt = _two_tracks(3)
    pred = [
        [P(7, 100), P(8, 600)],
        [P(7, 100, shift=(0.55, 0)), P(8, 600, shift=(0.45, 0))],
        [P(7, 100), P(8, 600)],
    ]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    _all(report, "MOTA", 100 * (1 - 2 / 4))
    # MOTP: a candidate distance counts twice (raw event + match event): 1 - 2 * 0.45 / 3 detections.
    _all(report, "MOTP", 100 * (1 - 2 * 0.45 / 3))


def test_last_frame_of_each_video_is_left_out(tmp_path):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)]] * 3 + [[P(99, 1200)]]  # the last frame is all wrong
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    _all(report, "MOTA", 100.0)


def test_frame_without_predictions_is_one_dummy_miss_and_false_positive(tmp_path):
    gt = [[P(1, 100), P(2, 600), P(3, 1100)] for _ in range(3)]
    pred = [[P(7, 100), P(8, 600), P(9, 1100)], [], [P(7, 100), P(8, 600), P(9, 1100)]]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    # Frame 1 counts 1 object, 1 miss and 1 false positive per joint, not 3 misses.
    c = report["counts"]["nose"]
    assert (c["objects"], c["misses"], c["false_positives"]) == (4, 1, 1)
    _all(report, "MOTA", 100 * (1 - 2 / 4))


def test_unlabelled_frames_are_dropped_with_their_predictions(tmp_path):
    gt = [[P(1, 100)], [], [P(1, 100)], [P(1, 100)]]
    pred = [[P(7, 100)], [P(8, 900)], [P(7, 100)], [P(7, 100)]]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred))
    _all(report, "MOTA", 100.0)
    assert report["counts"]["nose"]["objects"] == 2


def test_prediction_inside_ignore_region_is_not_a_false_positive(tmp_path):
    gt = [[P(1, 100)] for _ in range(3)]
    pred = [[P(7, 100), P(8, 700)] for _ in range(3)]
    box = [[500, 0], [900, 0], [900, 900], [500, 900]]
    regions = {f: [box] for f in range(3)}
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred, regions=regions))
    _all(report, "Precision", 100.0)


def test_no_gt_joint_is_nan_and_null_in_json(tmp_path):
    knees = ["left_knee", "right_knee"]
    gt = [[P(1, 100, missing=knees)] for _ in range(3)]
    report = evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, [[P(7, 100)] for _ in range(3)]))
    assert math.isnan(report["MOTA"]["Knee"]) and math.isnan(report["Recall"]["Knee"])
    assert report["Precision"]["Knee"] == 0.0  # predicted knees without GT: false positives
    assert report["MOTA"]["Total"] == pytest.approx(100.0)  # the mean of the joints that are not NaN
    out = tmp_path / "track.json"
    assert (
        main(
            [
                "evaluate",
                "--gt",
                str(tmp_path / "gt"),
                "--pred",
                str(tmp_path / "pred"),
                "--track",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    data = json.loads(out.read_text())
    assert data["MOTA"]["Knee"] is None and data["MOTA"]["Head"] == pytest.approx(100.0)
    assert set(METRICS) <= set(data)


def test_one_frame_video_counts_nothing(tmp_path, caplog):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)], [P(7, 100)], [P(7, 100), P(8, 600)], [P(7, 100), P(8, 600)]]
    alone = evaluate_tracking(*write_pair(tmp_path / "a", VIDEO, gt, pred))
    write_pair(tmp_path / "a", "000002_mpii_test", [[], [P(1, 100)], []], [[], [P(9, 900)], []])
    with caplog.at_level(logging.WARNING):
        both = evaluate_tracking(tmp_path / "a" / "gt", tmp_path / "a" / "pred")
    assert "one evaluated frame" in caplog.text
    for metric in METRICS:
        assert both[metric] == alone[metric]


def test_track_ids_of_10000_and_more_are_accepted(tmp_path):
    gt = _two_tracks()
    pred = [[P(7, 100), P(8, 600)], [P(7, 100), P(8, 600)], [P(8, 100), P(7, 600)], [P(8, 100), P(7, 600)]]
    small = evaluate_tracking(*write_pair(tmp_path / "s", VIDEO, gt, pred))
    big_gt = [[P(p.tid + 20000, p.x) for p in frame] for frame in gt]
    big_pred = [[P(p.tid * 12345, p.x) for p in frame] for frame in pred]
    big = evaluate_tracking(*write_pair(tmp_path / "b", VIDEO, big_gt, big_pred))
    for metric in METRICS:
        assert big[metric] == small[metric]


def test_missing_track_id_is_a_clear_error(tmp_path):
    gt_dir, pred_dir = write_pair(tmp_path, VIDEO, _two_tracks(), _two_tracks())
    data = json.loads((pred_dir / f"{VIDEO}.json").read_text())
    del data["annotations"][3]["track_id"]
    (pred_dir / f"{VIDEO}.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"annotations\[3\].*track_id"):
        evaluate_tracking(gt_dir, pred_dir)


def test_repeated_track_id_in_a_frame_is_a_clear_error(tmp_path):
    gt_dir, pred_dir = write_pair(tmp_path, VIDEO, _two_tracks(), [[P(7, 100), P(7, 600)]] * 4)
    with pytest.raises(DataError, match="unique within a frame"):
        evaluate_tracking(gt_dir, pred_dir)


# Numbers poseval printed (total_MOT_metrics.json, poseval joint order then Total) for these inputs.
POSEVAL_R1 = {
    "MOTA": [30.769231] * 11 + [11.538462] + [30.769231] * 3 + [29.487179],
    "MOTP": [25.005752] * 11 + [12.940707] + [25.005752] * 3 + [24.201416],
    "Precision": [76.190476] * 11 + [69.230769] + [76.190476] * 3 + [75.726496],
    "Recall": [61.538462] * 11 + [34.615385] + [61.538462] * 3 + [59.74359],
}
POSEVAL_R2 = {
    "MOTA": [32.5] * 11 + [20.0] + [30.769231] * 3 + [31.320513],
    "MOTP": [36.87097] * 8 + [37.132856, 36.87097, 36.87097, 37.085874] + [36.586158] * 3 + [36.845794],
    "Precision": [74.418605] * 8
    + [73.809524, 74.418605, 74.418605, 74.193548]
    + [73.809524] * 3
    + [74.241179],
    "Recall": [80.0] * 8 + [77.5, 80.0, 80.0, 57.5] + [79.487179] * 3 + [78.230769],
}


def _expect_poseval(report: dict, expected: dict[str, list[float]]) -> None:
    for metric, values in expected.items():
        ours = [report["joints"][n][metric] for n in PT17_NAMES] + [report[metric]["Total"]]
        assert ours == pytest.approx(values, abs=1e-5), metric


def test_crowded_video_equals_poseval(tmp_path):
    gt, pred = rich_video(np.random.default_rng(0), 8)
    _expect_poseval(evaluate_tracking(*write_pair(tmp_path, VIDEO, gt, pred)), POSEVAL_R1)


def test_two_videos_mixed_formats_with_ignore_region_equal_poseval(tmp_path):
    gt, pred = rich_video(np.random.default_rng(1), 6)
    write_pair(tmp_path, "000002_mpii_test", gt, pred, fmt=("pt17", "pt18"))
    gt, pred = rich_video(np.random.default_rng(2), 7)
    region = {3: [[[90, 150], [140, 150], [140, 260], [90, 260]]]}
    write_pair(tmp_path, "000003_bonn_test", gt, pred, fmt=("pt18", "pt17"), regions=region)
    _expect_poseval(evaluate_tracking(tmp_path / "gt", tmp_path / "pred"), POSEVAL_R2)


@pytest.mark.parametrize(("fmt", "no_points_list"), [("pt18", False), ("pt17", False), ("pt17", True)])
def test_predicted_person_without_joints_prevents_the_dummy_unless_it_has_no_point_list(
    tmp_path, fmt, no_points_list
):
    gt = [[P(1, 100), P(2, 600)] for _ in range(3)]
    nobody = P(9, 900, missing=list(SCORED_NAMES))
    gt_dir, pred_dir = write_pair(tmp_path, VIDEO, gt, [[P(7, 100), P(8, 600)], [nobody], []], ("pt18", fmt))
    if no_points_list:  # PoseTrack2017 "annopoints": [] is no person at all for poseval
        data = json.loads((pred_dir / f"{VIDEO}.json").read_text())
        data["annolist"][1]["annorect"][0]["annopoints"] = []
        (pred_dir / f"{VIDEO}.json").write_text(json.dumps(data))
    c = evaluate_tracking(gt_dir, pred_dir)["counts"]["nose"]
    # Frame 1: a dummy (1 object, 1 miss, 1 false positive), or the two GT people missed.
    expected = (3, 1, 1) if no_points_list else (4, 2, 0)
    assert (c["objects"], c["misses"], c["false_positives"]) == expected


def test_speed_benchmark_load_is_scored_with_its_track_ids(tmp_path):
    from cmpose.bench.eval_speed import run_eval_benchmark

    r = run_eval_benchmark(tmp_path, n_videos=2, n_frames=4, n_people=3, repeats=1, track=True)
    # Misses, false positives and joints off by more than half a head cost MOTA; jitter costs MOTP.
    assert math.isfinite(r["total_mota"]) and r["total_mota"] < 100 and 0 < r["total_motp"] < 100
    assert "total_ap" not in r and len(r["times_s"]) == 1
