"""PoseTrack mAP on the real sample, against values worked out by hand from the AP definition."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_eval_support import (
    Scores,
    annotated,
    column_means,
    count_gt,
    gt_as_predictions,
    head_size,
    keypoints,
    load_gt,
    person_from_ann,
    setup,
)

from cmpose.eval import evaluate
from cmpose.keypoints import JOINT_INDEX, SCORED_NAMES

TOL = 1e-9  # the sums of recall steps are float; the hand values are exact fractions


@pytest.fixture()
def gts(pt18_sample):
    return load_gt(pt18_sample)


def _expect(report: dict, ap: dict[str, float]) -> None:
    for name in SCORED_NAMES:
        assert report["joints"][name]["ap"] == pytest.approx(ap[name], abs=TOL), name
    for col, value in column_means(ap).items():
        assert report[col] == pytest.approx(value, abs=TOL), col


def test_gt_as_predictions_is_100(tmp_path, gts):
    report = evaluate(*setup(tmp_path, gts, gt_as_predictions(gts)))
    for key in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"):
        assert report[key] == 100.0
    for name in SCORED_NAMES:
        assert report["joints"][name] == {"ap": 100.0, "precision": 100.0, "recall": 100.0}


@pytest.mark.parametrize("beyond", [True, False])
def test_joint_moved_around_half_a_head(tmp_path, gts, beyond):
    preds = gt_as_predictions(gts)
    ann = gts["009473_mpii_test"]["annotations"][0]
    j = JOINT_INDEX["left_wrist"]
    assert annotated(ann)[j]
    offset = 0.5 * head_size(ann) + (0.01 if beyond else -0.01)
    moved = preds["009473_mpii_test"][0][0]
    moved.keypoints[j, 0] += offset
    moved.scores[j] = 0.9  # the highest left-wrist score: ranked first
    report = evaluate(*setup(tmp_path, gts, preds))
    ap = dict.fromkeys(SCORED_NAMES, 100.0)
    if beyond:
        # N left wrists, N predictions; the first-ranked is wrong. After it, k correct ones reach
        # precision k / (k + 1); the envelope is (N - 1) / N at every recall step 1/N .. (N - 1)/N.
        n = count_gt(gts, "left_wrist")
        ap["left_wrist"] = 100 * ((n - 1) / n) * ((n - 1) / n)
        assert report["joints"]["left_wrist"]["recall"] == pytest.approx(100 * (n - 1) / n, abs=TOL)
        assert report["joints"]["left_wrist"]["precision"] == pytest.approx(100 * (n - 1) / n, abs=TOL)
    _expect(report, ap)


@pytest.mark.parametrize("highest", [True, False])
def test_false_positive_person(tmp_path, gts, highest):
    preds = gt_as_predictions(gts)
    ann = gts["012834_mpii_test"]["annotations"][3]
    # A copy far outside the image: matches nobody, lies in no ignore region.
    fp = person_from_ann(ann, np.full(17, 0.9) if highest else np.full(17, 0.01), shift=(5000.0, 0.0))
    preds["012834_mpii_test"][0].append(fp)
    report = evaluate(*setup(tmp_path, gts, preds))
    _expect(report, _one_false_positive_first(gts, ann) if highest else dict.fromkeys(SCORED_NAMES, 100.0))


def _one_false_positive_first(gts, ann) -> dict[str, float]:
    """Expected APs when every joint that ``ann`` annotates gets one wrong detection ranked
    first, then all N right ones: the precision envelope is N / (N + 1) throughout."""
    ap = dict.fromkeys(SCORED_NAMES, 100.0)
    for name in SCORED_NAMES:
        if annotated(ann)[JOINT_INDEX[name]]:
            n = count_gt(gts, name)
            ap[name] = 100 * n / (n + 1)
    return ap


def test_prediction_inside_ignore_region_is_dropped(tmp_path, gts):
    preds = gt_as_predictions(gts)
    person = gts["003418_mpii_test"]["annotations"][0]
    knee = keypoints(person)[JOINT_INDEX["right_knee"], :2]  # known to lie inside an ignore polygon
    inside = person_from_ann(person, np.full(17, 0.9))
    inside.keypoints[:] = knee
    preds["003418_mpii_test"][0].append(inside)
    report = evaluate(*setup(tmp_path, gts, preds))
    _expect(report, dict.fromkeys(SCORED_NAMES, 100.0))


@pytest.mark.parametrize("duplicate_first", [False, True])
def test_person_predicted_twice(tmp_path, gts, duplicate_first):
    preds = gt_as_predictions(gts)
    ann = gts["012834_mpii_test"]["annotations"][5]
    people = preds["012834_mpii_test"][0]
    # Both copies have PCKh 1 with the same person; the one listed first wins, even with lower scores,
    # and the other is not re-matched: all its joints are false positives.
    if duplicate_first:
        people.insert(0, person_from_ann(ann, np.full(17, 0.01)))  # wins, ranked last, correct
        people[6].scores[:] = 0.9  # the original copy: loses, ranked first
    else:
        people.append(person_from_ann(ann, np.full(17, 0.9)))  # loses, ranked first
    report = evaluate(*setup(tmp_path, gts, preds))
    _expect(report, _one_false_positive_first(gts, ann))


def test_tied_scores_follow_file_and_person_order(tmp_path, gts):
    # Every score 1: ranking is stable, by video file name, frame, then person order.
    preds = gt_as_predictions(gts, Scores(start=1.0, step=0.0))
    ann = gts["012834_mpii_test"]["annotations"][0]
    fp = person_from_ann(ann, np.ones(17), shift=(5000.0, 0.0))
    preds["003418_mpii_test"][0].append(fp)  # first video, after its one correct person
    report = evaluate(*setup(tmp_path, gts, preds))
    first_person = gts["003418_mpii_test"]["annotations"][0]
    ap = dict.fromkeys(SCORED_NAMES, 100.0)
    for name in SCORED_NAMES:
        j = JOINT_INDEX[name]
        if not annotated(ann)[j]:
            continue
        n = count_gt(gts, name)
        a = int(annotated(first_person)[j] and name != "right_knee")  # correct before the FP
        # a correct ones at precision 1, then the FP, then n - a correct ones ending at n / (n + 1).
        ap[name] = 100 * (a / n * 1.0 + (n - a) / n * (n / (n + 1)))
    _expect(report, ap)


def test_per_video_no_gt_joints(tmp_path, gts):
    preds = gt_as_predictions(gts)
    report = evaluate(*setup(tmp_path, gts, preds), per_video=True)
    assert list(report["per_video"]) == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    video = report["per_video"]["003418_mpii_test"]
    # 003418 has no left wrist, knee (the right one is ignored) or ankle in GT and, here, in predictions:
    # poseval gives those joints AP 0 (not NaN), and they count in the Total.
    empty = {"left_wrist", "left_knee", "right_knee", "left_ankle", "right_ankle"}
    ap = {n: 0.0 if n in empty else 100.0 for n in SCORED_NAMES}
    _expect(video, ap)
    assert video["Total"] == pytest.approx(100 * 10 / 15, abs=TOL)
    assert report["Total"] == 100.0


def test_per_video_prediction_without_gt_is_nan(tmp_path, gts):
    preds = gt_as_predictions(gts)
    person = preds["003418_mpii_test"][0][0]
    person.keypoints[JOINT_INDEX["left_ankle"]] = (800.0, 900.0)  # no GT left ankle in this video
    report = evaluate(*setup(tmp_path, gts, preds), per_video=True)
    video = report["per_video"]["003418_mpii_test"]
    assert math.isnan(video["joints"]["left_ankle"]["ap"])
    assert math.isnan(video["joints"]["left_ankle"]["recall"])
    assert math.isnan(video["Ankle"])
    # NaN is left out of the Total: 10 joints at 100 and 4 at 0.
    assert video["Total"] == pytest.approx(100 * 10 / 14, abs=TOL)
