"""One validation for ``data check``, the training loaders and ``evaluate`` (issue 18, items 3, 4, 6):
each malformed annotation below is refused by all three, or by none; image names that leave the
dataset root are refused; hostile files (nesting, huge numbers, folders named *.json, symlink
loops) give one clear error, never a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from test_reliability_fuzz import pt18_doc

from cmpose.cli.main import main
from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.errors import DataError
from cmpose.eval.posetrack import evaluate
from cmpose.keypoints import PT18_NAMES


def _dataset(tmp_path: Path, doc: object, name: str = "000001_mpii_test.json") -> Path:
    """``doc`` as ``annotations/val/<name>`` of a dataset root with the images it names."""
    ann = tmp_path / "annotations" / "val"
    ann.mkdir(parents=True, exist_ok=True)
    (tmp_path / "images" / "val" / "000001_mpii_test").mkdir(parents=True, exist_ok=True)
    for f in range(2):
        (tmp_path / "images" / "val" / "000001_mpii_test" / f"{f:06d}.jpg").write_bytes(b"\xff\xd8")
    (ann / name).write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return ann


def _with(edit) -> dict:  # noqa: ANN001
    doc = pt18_doc()
    edit(doc)
    return doc


def _dup_names(d: dict) -> None:
    names = d["categories"][0]["keypoints"]
    names[3], names[4] = "nose", "nose"  # ears renamed: the lookup would silently take another joint


def _two_categories(d: dict) -> None:
    d["categories"].append(dict(d["categories"][0], id=2))


def _no_category(d: dict) -> None:
    d["categories"] = []


def _kps_54(d: dict) -> None:
    d["annotations"][0]["keypoints"] += [1.0, 2.0, 1]


def _kps_inf(d: dict) -> None:
    d["annotations"][0]["keypoints"][0] = float("inf")


def _repeated_person(d: dict) -> None:
    d["annotations"].append(dict(d["annotations"][0], id=999))


MALFORMED = {
    "duplicate keypoint names": _dup_names,
    "two categories": _two_categories,
    "no category": _no_category,
    "54 keypoint numbers": _kps_54,
    "Infinity keypoint": _kps_inf,
    "repeated GT person": _repeated_person,
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_check_loaders_and_evaluate_refuse_alike(tmp_path: Path, case: str, caplog) -> None:
    doc = _with(MALFORMED[case])
    ann = _dataset(tmp_path, doc)
    # data check: an error, non-zero exit
    with caplog.at_level(logging.INFO):
        assert main(["data", "check", str(tmp_path)]) == 1, case
    # the loaders: the strict reader raises; the lenient one (training) reports an error
    with pytest.raises(DataError):
        read_annotations(ann, tmp_path, Problems(strict=True))
    problems = Problems()
    try:
        read_annotations(ann, tmp_path, problems)
    except DataError:
        pass
    else:
        assert problems.num_errors > 0, case
    # evaluate: refused as GT (a perfect prediction: the unmodified file)
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "000001_mpii_test.json").write_text(json.dumps(pt18_doc()))
    with pytest.raises(DataError):
        evaluate(ann, pred)


def test_the_unmodified_file_passes_all_three(tmp_path: Path) -> None:
    ann = _dataset(tmp_path, pt18_doc())
    assert main(["data", "check", str(tmp_path)]) == 0
    assert len(read_annotations(ann, tmp_path, Problems(strict=True)).people) == 4
    assert evaluate(ann, ann)["Total"] == 100.0


def test_empty_list_gt_file_is_an_error_of_data_check(tmp_path: Path, capsys) -> None:
    _dataset(tmp_path, pt18_doc())
    _dataset(tmp_path, "[]", name="000002_mpii_test.json")
    assert main(["data", "check", str(tmp_path)]) == 1
    assert "000002_mpii_test.json" in capsys.readouterr().out


# --- item 3: names that leave the dataset root ---


@pytest.mark.parametrize("name", ["../../outside/000000.jpg", "/etc/000000.jpg", "images/../../x/000000.jpg"])
def test_file_name_leaving_the_root_is_refused(tmp_path: Path, name: str, capsys) -> None:
    root = tmp_path / "root"
    doc = pt18_doc()
    doc["images"][0]["file_name"] = name
    ann = _dataset(root, doc)
    assert main(["data", "check", str(root)]) == 1
    assert "leaves the dataset root" in capsys.readouterr().out
    for strict in (True, False):
        with pytest.raises(DataError, match="leaves the dataset root"):
            read_annotations(ann, root, Problems(strict=strict))
    assert main(["data", "show", str(ann), "--out", str(tmp_path / "show")]) == 2
    assert not (tmp_path / "show").exists() or not list((tmp_path / "show").iterdir())


def test_pt17_image_name_leaving_the_root_is_refused(tmp_path: Path) -> None:
    from test_reliability_fuzz import pt17_doc

    doc = pt17_doc()
    doc["annolist"][1]["image"][0]["name"] = ["../../../x/00000002.jpg"]
    (tmp_path / "a.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="leaves the dataset root"):
        read_annotations(tmp_path / "a.json", tmp_path)


# --- item 6: hostile files ---


def test_deeply_nested_json_is_a_clear_error(tmp_path: Path) -> None:
    ann = _dataset(tmp_path, "[" * 200_000 + "]" * 200_000)
    with pytest.raises(DataError, match="nested too deeply"):
        read_annotations(ann / "000001_mpii_test.json")
    assert main(["data", "check", str(tmp_path)]) == 1


def test_huge_numbers_are_a_clear_error(tmp_path: Path) -> None:
    doc = pt18_doc()
    doc["annotations"][0]["keypoints"][0] = 10**400
    ann = _dataset(tmp_path, doc)
    with pytest.raises(DataError, match="finite"):
        read_annotations(ann, tmp_path, Problems(strict=True))
    pred = tmp_path / "pred"
    pred.mkdir()
    (pred / "000001_mpii_test.json").write_text(json.dumps(doc))
    with pytest.raises(DataError):
        evaluate(ann, pred)


def test_folder_named_json_and_symlink_loop_under_data_check(tmp_path: Path, capsys) -> None:
    ann = _dataset(tmp_path, pt18_doc())
    (ann / "folder.json").mkdir()
    (ann / "loop.json").symlink_to(ann / "loop.json")
    assert main(["data", "check", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "folder.json" in out and "loop.json" in out


def test_evaluate_json_pointing_at_a_folder(tmp_path: Path, caplog) -> None:
    ann = _dataset(tmp_path, pt18_doc())
    with caplog.at_level(logging.ERROR):
        assert main(["evaluate", "--gt", str(ann), "--pred", str(ann), "--json", str(tmp_path)]) == 2
    assert "is a folder" in caplog.text


def test_keypoint_names_keep_their_joints(tmp_path: Path) -> None:
    """Reordered (not duplicated) names are mapped by name: the joints stay where they were."""
    doc = pt18_doc()
    names = doc["categories"][0]["keypoints"]
    order = list(reversed(range(len(names))))
    doc["categories"][0]["keypoints"] = [names[i] for i in order]
    for a in doc["annotations"]:
        trip = [a["keypoints"][3 * i : 3 * i + 3] for i in range(len(names))]
        a["keypoints"] = [x for i in order for x in trip[i]]
    ann = _dataset(tmp_path, doc)
    data = read_annotations(ann, tmp_path, Problems(strict=True))
    nose = PT18_NAMES.index("nose")
    assert data.people[0].keypoints[nose, 0] == pt18_doc()["annotations"][0]["keypoints"][3 * nose]
