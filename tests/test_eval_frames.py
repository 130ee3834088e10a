"""Multi-frame behaviour: which frames are scored, and ignore-region borders."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_eval_support import Scores, annotated, keypoints, load_gt, person_from_ann, setup, to_pt17, write_gt

from cmpose.eval import PersonPrediction, evaluate
from cmpose.eval.writer import write_prediction_dir
from cmpose.keypoints import JOINT_INDEX, SCORED_NAMES

STEM = "009473_mpii_test"
TOL = 1e-9


def _video(gts: dict, extra_frames: list[tuple[dict, list[dict]]]) -> tuple[dict, list[dict]]:
    """009473 (frame 0, two people) followed by extra frames given as (image fields, GT people)."""
    gt = copy.deepcopy(gts[STEM])
    for f, (fields, people) in enumerate(extra_frames, start=1):
        image = {"id": 10094730000 + f, "file_name": f"images/val/{STEM}/{f:06d}.jpg", "is_labeled": True}
        image.update(fields)
        gt["images"].append(image)
        for k, person in enumerate(people):
            gt["annotations"].append({**person, "image_id": image["id"], "id": image["id"] * 100 + k})
    return gt, gts[STEM]["annotations"]


def _frame0_predictions(people: list[dict], scores: Scores) -> list[PersonPrediction]:
    return [person_from_ann(a, scores.take()) for a in people]


def _run(tmp_path, gt: dict, preds: dict[int, list]) -> dict:
    return evaluate(*setup(tmp_path, {STEM: gt}, {STEM: preds}))


def _count(people: list[dict], name: str) -> int:
    return sum(int(annotated(a)[JOINT_INDEX[name]]) for a in people)


def test_predictions_on_dropped_frames_do_not_count(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    # Frame 1 is unlabelled; frame 2 is labelled but lists nobody. Both are dropped with their predictions.
    gt, people = _video(gts, [({"is_labeled": False}, []), ({"is_labeled": True}, [])])
    fp = person_from_ann(people[0], np.full(17, 0.99))
    preds = {0: _frame0_predictions(people, Scores()), 1: [fp], 2: [copy.deepcopy(fp)]}
    report = _run(tmp_path, gt, preds)
    assert report["Total"] == 100.0
    assert all(report["joints"][n]["ap"] == 100.0 for n in SCORED_NAMES)


@pytest.mark.parametrize("case", ["all_in_ignore_region", "no_keypoints"])
def test_kept_frames_without_scorable_gt_make_false_positives(tmp_path, pt18_sample, case):
    gts = load_gt(pt18_sample)
    person = gts[STEM]["annotations"][0]
    if case == "all_in_ignore_region":
        xy = keypoints(person)[annotated(person), :2]
        (x0, y0), (x1, y1) = xy.min(axis=0) - 10, xy.max(axis=0) + 10
        fields = {"ignore_regions_x": [[x0, x1, x1, x0]], "ignore_regions_y": [[y0, y0, y1, y1]]}
        extra = (fields, [person])
    else:
        extra = ({}, [{**person, "keypoints": [0] * 51}])
    gt, people = _video(gts, [extra])
    # The frame stays (its GT lists a person), so a prediction there, away from the polygon, is wrong.
    fp = person_from_ann(person, np.full(17, 0.99), shift=(3000.0, 0.0))
    report = _run(tmp_path, gt, {0: _frame0_predictions(people, Scores()), 1: [fp]})
    for name in SCORED_NAMES:
        n = _count(people, name)
        expected = 100 * n / (n + 1) if annotated(person)[JOINT_INDEX[name]] else 100.0
        assert report["joints"][name]["ap"] == pytest.approx(expected, abs=TOL), name


def _border_frame(gts: dict) -> tuple[dict, dict, np.ndarray]:
    """Frame 1: person 0 moved right by 1000 px, its left wrist exactly on the right edge of a
    2 x 2 px polygon; a second polygon [100, 200] x [100, 200] in an empty area."""
    person = copy.deepcopy(gts[STEM]["annotations"][0])
    kp = keypoints(person)
    kp[annotated(person), 0] += 1000
    person["keypoints"] = kp.ravel().tolist()
    wx, wy = kp[JOINT_INDEX["left_wrist"], :2]
    fields = {
        "ignore_regions_x": [[wx - 2, wx, wx, wx - 2], [100, 200, 200, 100]],
        "ignore_regions_y": [[wy - 1, wy - 1, wy + 1, wy + 1], [100, 100, 200, 200]],
    }
    return fields, person, kp


def test_gt_point_on_ignore_border_is_kept(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    fields, person, _ = _border_frame(gts)
    gt, people = _video(gts, [(fields, [person])])
    moved = person_from_ann(person, Scores(0.4).take())
    moved.keypoints[JOINT_INDEX["left_wrist"]] = np.nan  # the border wrist is not predicted
    fps = [PersonPrediction(np.full((17, 2), np.nan), np.full(17, s)) for s in (0.99, 0.98)]
    for p in fps:  # two wrong left wrists ranked first
        p.keypoints[JOINT_INDEX["left_wrist"]] = (1500.0, 50.0)
    report = _run(tmp_path, gt, {0: _frame0_predictions(people, Scores()), 1: [moved, *fps]})
    n0 = _count(people, "left_wrist")
    n = n0 + 1  # the wrist on the border is outside the polygon, so it is counted
    # Two FPs first, then n0 correct at precision k / (k + 2); recall stops at n0 / n.
    expected = 100 * (n0 / n) * (n0 / (n0 + 2))
    assert report["joints"]["left_wrist"]["ap"] == pytest.approx(expected, abs=TOL)


def test_predicted_points_on_ignore_border_are_kept(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    fields, person, _ = _border_frame(gts)
    gt, people = _video(gts, [(fields, [person])])
    preds1 = [person_from_ann(person, Scores(0.4).take())]
    # Left wrists on a vertex and on an edge of the second polygon (kept: wrong), one inside (deleted).
    for xy, s in (((100.0, 100.0), 0.99), ((100.0, 150.0), 0.98), ((150.0, 150.0), 0.97)):
        p = PersonPrediction(np.full((17, 2), np.nan), np.full(17, s))
        p.keypoints[JOINT_INDEX["left_wrist"]] = xy
        preds1.append(p)
    report = _run(tmp_path, gt, {0: _frame0_predictions(people, Scores()), 1: preds1})
    n = _count(people, "left_wrist") + 1
    assert report["joints"]["left_wrist"]["ap"] == pytest.approx(100 * n / (n + 2), abs=TOL)
    assert report["joints"]["left_wrist"]["precision"] == pytest.approx(100 * n / (n + 2), abs=TOL)


def test_multi_frame_same_numbers_in_pt17_form(tmp_path, pt18_sample):
    gts = load_gt(pt18_sample)
    fields, person, _ = _border_frame(gts)
    gt, people = _video(
        gts, [({"is_labeled": False}, []), (fields, [person]), ({}, [{**person, "keypoints": [0] * 51}])]
    )
    rng = np.random.default_rng(3)
    preds = {
        0: _frame0_predictions(people, Scores()),
        1: [person_from_ann(person, np.full(17, 0.9))],
        2: [person_from_ann(person, Scores(0.3).take())],
        3: [person_from_ann(person, Scores(0.2).take())],
    }
    for frame in preds.values():
        for p in frame:
            p.keypoints += rng.normal(0, 30, p.keypoints.shape)
    report18 = _run(tmp_path / "a", gt, preds)
    gt17_dir = write_gt(tmp_path / "b" / "gt", {STEM: to_pt17(gt)})
    write_prediction_dir(gt17_dir, {STEM: preds}, tmp_path / "b" / "pred")
    report17 = evaluate(gt17_dir, tmp_path / "b" / "pred")
    assert report17 == report18
    assert 0 < report18["Total"] < 100
