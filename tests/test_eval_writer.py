"""The prediction writer: track ids, frame keys, missing joints, atomic files (no sample data needed)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from cmpose.errors import EvaluationError
from cmpose.eval import PersonPrediction, write_prediction_dir, write_predictions
from cmpose.keypoints import JOINT_INDEX, PT18_NAMES


def _gt18(tmp_path, n_frames=3):
    images = [
        {"id": 500 + f, "file_name": f"images/val/000001_mpii_test/{f:06d}.jpg"} for f in range(n_frames)
    ]
    cat = {"name": "person", "id": 1, "keypoints": list(PT18_NAMES)}
    path = tmp_path / "gt" / "000001_mpii_test.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [cat]}))
    return path


def _gt17(tmp_path, n_frames=2):
    annolist = [
        {"image": [{"name": f"images/000002/{f:05d}.jpg"}], "imgnum": [f + 1], "annorect": []}
        for f in range(n_frames)
    ]
    path = tmp_path / "gt17" / "000002.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"annolist": annolist}))
    return path


def _person(track_id=None, seed=0):
    rng = np.random.default_rng(seed)
    return PersonPrediction(rng.uniform(0, 100, (17, 2)), rng.uniform(0, 1, 17), track_id=track_id)


def test_pt18_file(tmp_path):
    gt = _gt18(tmp_path)
    person = _person(7)
    person.keypoints[JOINT_INDEX["nose"]] = np.nan
    out = tmp_path / "pred" / "000001_mpii_test.json"
    write_predictions(gt, {2: [person, _person(None, 1)], 0: [_person(None, 2)]}, out)
    data = json.loads(out.read_text())
    assert data["images"] == json.loads(gt.read_text())["images"]
    assert data["categories"][0]["keypoints"] == list(PT18_NAMES)
    anns = data["annotations"]
    assert [a["image_id"] for a in anns] == [500, 502, 502]
    assert [a["track_id"] for a in anns] == [0, 7, 0]
    kp = np.array(anns[1]["keypoints"]).reshape(17, 3)
    assert kp[JOINT_INDEX["nose"]].tolist() == [0.0, 0.0, 0.0]  # not predicted
    assert (kp[1:, 2] == 1).all()
    assert anns[1]["scores"][JOINT_INDEX["nose"]] == 0.0
    assert anns[1]["scores"][1] == float(person.scores[1])
    assert sorted(p.name for p in out.parent.iterdir()) == [out.name]  # no temporary file left


def test_pt17_file(tmp_path):
    gt = _gt17(tmp_path)
    out = tmp_path / "pred17" / "000002.json"
    write_predictions(gt, {1: [_person(None), _person(None, 1)]}, out)
    data = json.loads(out.read_text())
    assert [len(f["annorect"]) for f in data["annolist"]] == [0, 2]
    assert data["annolist"][1]["image"] == [{"name": "images/000002/00001.jpg"}]
    rect = data["annolist"][1]["annorect"][1]
    assert rect["track_id"] == [1]
    points = rect["annopoints"][0]["point"]
    assert [p["id"][0] for p in points] == list(range(15))  # poseval joint ids, no ears
    nose = points[13]  # poseval id 13 is the nose
    assert nose["x"][0] == float(_person(None, 1).keypoints[JOINT_INDEX["nose"], 0])


def test_track_ids_filled_around_given_ones(tmp_path):
    gt = _gt18(tmp_path, 1)
    out = tmp_path / "p.json"
    write_predictions(gt, {0: [_person(None), _person(0), _person(None), _person(2), _person(None)]}, out)
    assert [a["track_id"] for a in json.loads(out.read_text())["annotations"]] == [1, 0, 3, 2, 4]


@pytest.mark.parametrize(
    "results, message",
    [
        ({0: [_person(3), _person(3)]}, "track_id repeated"),
        ({0: [_person(10000)]}, "track_id"),
        ({3: [_person()]}, "frame_index 3"),
        ({-1: [_person()]}, "frame_index -1"),
        ({0: [PersonPrediction(np.zeros((15, 2)), np.zeros(17))]}, r"keypoints \(17, 2\)"),
    ],
)
def test_rejected(tmp_path, results, message):
    out = tmp_path / "p.json"
    with pytest.raises(EvaluationError, match=message):
        write_predictions(_gt18(tmp_path), results, out)
    assert not out.exists()


def test_failed_write_leaves_old_file(tmp_path):
    out = tmp_path / "p.json"
    out.write_text("old")
    with pytest.raises(EvaluationError):
        write_predictions(_gt18(tmp_path), {0: [_person(1), _person(1)]}, out)
    assert out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.is_file()] == ["p.json"]


def test_prediction_dir(tmp_path):
    gt = _gt18(tmp_path)
    _gt18(tmp_path).with_name("000009_mpii_test.json").write_text(gt.read_text())
    written = write_prediction_dir(gt.parent, {"000001_mpii_test": {1: [_person()]}}, tmp_path / "out")
    assert [p.name for p in written] == ["000001_mpii_test.json", "000009_mpii_test.json"]
    assert json.loads(written[1].read_text())["annotations"] == []  # every GT video gets a file
    with pytest.raises(EvaluationError, match="no GT file"):
        write_prediction_dir(gt.parent, {"nope": {}}, tmp_path / "out2")
