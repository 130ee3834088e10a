"""PoseTrack readers: counts on the real sample, PT17 == PT18, and clear errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.data.readers.posetrack17 import read_posetrack17
from cmpose.errors import DataError
from cmpose.keypoints import PT17_NAMES, PT18_NAMES


def _counts(data) -> tuple[int, int, int]:  # noqa: ANN001
    return len(data.videos), len(data.people), sum(p.num_annotated for p in data.people)


def test_sample_counts_per_video_files(pt18_sample: Path) -> None:
    probs = Problems()
    data = read_annotations(pt18_sample / "annotations" / "val", problems=probs)
    assert _counts(data) == (3, 14, 182)
    assert probs.items == []
    assert sorted(data.videos) == ["003418_mpii_test", "009473_mpii_test", "012834_mpii_test"]
    assert {v.num_frames for v in data.videos.values()} == {149, 101, 140}
    assert len(data.labelled_frames) == 3
    # Every person has a head box and a positive-size box; ignore regions were read (9 + 2 + 4).
    assert all(p.head_box is not None and p.box[2] > 0 and p.box[3] > 0 for p in data.people)
    assert sum(len(regions) for _, _, regions in data.frame_info.values()) == 15


def test_sample_merged_file_equals_per_video(pt18_sample: Path) -> None:
    per_video = read_annotations(pt18_sample / "annotations" / "val")
    merged = read_annotations(pt18_sample / "annotations" / "test_posetrack18_val.json")
    assert _counts(merged) == (3, 14, 182)
    key = lambda p: (p.video_id, p.track_id)  # noqa: E731
    for a, b in zip(sorted(per_video.people, key=key), sorted(merged.people, key=key), strict=True):
        assert a.image_path == b.image_path
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
        np.testing.assert_array_equal(a.box, b.box)


def test_sample_frame_paths_follow_posetrack_naming(pt18_sample: Path) -> None:
    data = read_annotations(pt18_sample / "annotations" / "val")
    video = data.videos["012834_mpii_test"]
    # Only frame 0 is listed: the other 139 frames' names are derived (6 digits, 0-based).
    assert video.frame_path(0) == pt18_sample / "images/val/012834_mpii_test/000000.jpg"
    assert video.frame_path(139).name == "000139.jpg"
    with pytest.raises(IndexError):
        video.frame_path(140)


def test_sample_known_facts(pt18_sample: Path) -> None:
    data = read_annotations(pt18_sample / "annotations" / "val")
    # The person in 012834 whose head box starts above the image has no nose (README).
    above = [p for p in data.people if p.head_box[1] < 0]
    assert len(above) == 1 and above[0].video_id == "012834_mpii_test"
    assert above[0].keypoints[PT18_NAMES.index("nose"), 2] == 0
    # Ears are never annotated in PoseTrack18.
    ears = [PT18_NAMES.index("left_ear"), PT18_NAMES.index("right_ear")]
    assert all(p.keypoints[ears, 2].sum() == 0 for p in data.people)


def _to_posetrack17(pt18_file: Path, out: Path) -> None:
    """The same annotations in PoseTrack17 annolist form (values wrapped in lists, as converted
    from MATLAB), written independently of cmpose's readers."""
    d = json.loads(pt18_file.read_text())
    names = d["categories"][0]["keypoints"]
    annolist = []
    for img in d["images"]:
        rects = []
        for a in (a for a in d["annotations"] if a["image_id"] == img["id"]):
            kp = np.asarray(a["keypoints"]).reshape(-1, 3)
            points = []
            for pid, name in enumerate(PT17_NAMES):
                x, y, v = kp[names.index(name)]
                if v > 0:
                    points.append({"id": [pid], "x": [float(x)], "y": [float(y)], "is_visible": [1]})
            hx, hy, hw, hh = a["bbox_head"]
            rects.append(
                {"x1": [hx], "y1": [hy], "x2": [hx + hw], "y2": [hy + hh], "track_id": [a["track_id"]],
                 "annopoints": [{"point": points}]}
            )  # fmt: skip
        regions = [
            {"point": [{"x": [x], "y": [y]} for x, y in zip(xs, ys, strict=True)]}
            for xs, ys in zip(img["ignore_regions_x"], img["ignore_regions_y"], strict=True)
        ]
        annolist.append(
            {"image": [{"name": img["file_name"]}], "imgnum": [1], "is_labeled": [1], "annorect": rects,
             "ignore_regions": regions}
        )  # fmt: skip
    out.write_text(json.dumps({"annolist": annolist}))


def test_posetrack17_annolist_matches_posetrack18(pt18_sample: Path, tmp_path: Path) -> None:
    pt17_dir = tmp_path / "pt17"
    pt17_dir.mkdir()
    for f in sorted((pt18_sample / "annotations" / "val").glob("*.json")):
        _to_posetrack17(f, pt17_dir / f.name)
    pt18 = read_annotations(pt18_sample / "annotations" / "val")
    pt17 = read_annotations(pt17_dir, image_root=pt18_sample)
    assert _counts(pt17) == (3, 14, 182)
    key = lambda p: (p.video_id, p.track_id)  # noqa: E731
    for a, b in zip(sorted(pt18.people, key=key), sorted(pt17.people, key=key), strict=True):
        np.testing.assert_allclose(
            a.keypoints, b.keypoints
        )  # 15 joints map back by name (neck = head_bottom)
        np.testing.assert_allclose(a.head_box, b.head_box)
        assert a.image_path == b.image_path and a.image_path.is_file()
        assert len(a.ignore_regions) == len(b.ignore_regions)
        # PT17 has no person box: the joints' extent is used, which must contain every joint.
        vis = b.keypoints[:, 2] > 0
        x, y, w, h = b.box
        assert np.all((b.keypoints[vis, 0] >= x) & (b.keypoints[vis, 0] <= x + w))
        assert np.all((b.keypoints[vis, 1] >= y) & (b.keypoints[vis, 1] <= y + h))


def test_posetrack17_renamed_layout(pt18_sample: Path, tmp_path: Path) -> None:
    ann = tmp_path / "annotations" / "val"
    ann.mkdir(parents=True)
    _to_posetrack17(pt18_sample / "annotations/val/009473_mpii_test.json", ann / "009473.json")
    data = read_posetrack17(ann / "009473.json", image_root=tmp_path, layout="renamed")
    # DCPose/PoseWarper's images_renamed: frame i of the annolist is %08d of i + 1.
    assert (
        data.videos["009473_mpii_test"].frame_path(0)
        == tmp_path / "images_renamed/009473_mpii_test/00000001.jpg"
    )
    assert data.people[0].image_path.name == "00000001.jpg"


# --- bad input -----------------------------------------------------------------------------------
def _write(path: Path, obj: object) -> Path:
    path.write_text(json.dumps(obj) if not isinstance(obj, str) else obj)
    return path


def _one_video(pt18_sample: Path) -> dict:
    return json.loads((pt18_sample / "annotations/val/009473_mpii_test.json").read_text())


def test_invalid_json_names_file_and_line(tmp_path: Path) -> None:
    f = _write(tmp_path / "bad.json", '{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(DataError, match=r"bad\.json.*line 2"):
        read_annotations(f)


def test_unknown_format_and_detection_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="unknown annotation format"):
        read_annotations(_write(tmp_path / "x.json", {"foo": 1}))
    with pytest.raises(DataError, match="detections file"):
        read_annotations(_write(tmp_path / "d.json", [{"image_id": 1, "bbox": [0, 0, 1, 1], "score": 1}]))


def test_malformed_keypoints_named_and_skipped(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    d["annotations"][0]["keypoints"] = d["annotations"][0]["keypoints"][:-3]
    f = _write(tmp_path / "v.json", d)
    probs = Problems()
    data = read_annotations(f, image_root=pt18_sample, problems=probs)
    assert len(data.people) == 1  # the other person is kept
    (problem,) = probs.items
    assert "v.json" in problem.message and "annotations[0]" in problem.message
    assert "field 'keypoints'" in problem.message and "got 48" in problem.message
    with pytest.raises(DataError, match=r"annotations\[0\].*'keypoints'"):
        read_annotations(f, image_root=pt18_sample, problems=Problems(strict=True))


def test_missing_field_and_bad_values(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    del d["annotations"][0]["keypoints"]
    d["annotations"][1]["bbox_head"] = [1, 2, "x", 4]
    probs = Problems()
    data = read_annotations(_write(tmp_path / "v.json", d), image_root=pt18_sample, problems=probs)
    assert data.people == []
    messages = " | ".join(p.message for p in probs.items)
    assert "field 'keypoints': missing" in messages
    assert "field 'bbox_head': expected finite numbers, found 'x'" in messages


def test_unknown_image_id_and_empty_video(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    d["annotations"][0]["image_id"] = 123
    probs = Problems()
    read_annotations(_write(tmp_path / "v.json", d), image_root=pt18_sample, problems=probs)
    assert "image_id 123 is not in 'images'" in probs.items[0].message
    probs = Problems()
    data = read_annotations(_write(tmp_path / "e.json", {"images": [], "annotations": []}), problems=probs)
    assert data.videos == {} and probs.items[0].kind == "empty video"


def test_zero_size_box_falls_back_to_joints(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    d["annotations"][0]["bbox"] = [100, 100, 0, 50]
    probs = Problems()
    data = read_annotations(_write(tmp_path / "v.json", d), image_root=pt18_sample, problems=probs)
    assert len(data.people) == 2
    assert probs.items[0].kind == "zero-size box" and "field 'bbox'" in probs.items[0].message
    person = next(p for p in data.people if p.track_id == d["annotations"][0]["track_id"])
    vis = person.keypoints[:, 2] > 0
    assert person.box[0] <= person.keypoints[vis, 0].min() and person.box[2] > 0


def test_zero_size_box_without_joints_is_an_error(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    d["annotations"][0]["bbox"] = [100, 100, 0, 0]
    d["annotations"][0]["keypoints"] = [0] * 51
    with pytest.raises(DataError, match=r"annotations\[0\].*'bbox'.*no usable box"):
        read_annotations(
            _write(tmp_path / "v.json", d), image_root=pt18_sample, problems=Problems(strict=True)
        )


def test_missing_categories_keypoint_name(pt18_sample: Path, tmp_path: Path) -> None:
    d = _one_video(pt18_sample)
    d["categories"][0]["keypoints"][0] = "snout"
    with pytest.raises(DataError, match=r"categories\[0\].*'keypoints'.*\['nose'\] missing"):
        read_annotations(_write(tmp_path / "v.json", d), image_root=pt18_sample)


def test_keypoints_mapped_by_name(pt18_sample: Path, tmp_path: Path) -> None:
    """A file listing the joints in another order is read by name, not by position."""
    d = _one_video(pt18_sample)
    names = d["categories"][0]["keypoints"]
    perm = list(reversed(range(len(names))))
    d["categories"][0]["keypoints"] = [names[i] for i in perm]
    for a in d["annotations"]:
        kp = np.asarray(a["keypoints"]).reshape(-1, 3)
        a["keypoints"] = kp[perm].reshape(-1).tolist()
    reordered = read_annotations(_write(tmp_path / "v.json", d), image_root=pt18_sample)
    original = read_annotations(pt18_sample / "annotations/val/009473_mpii_test.json")
    for a, b in zip(original.people, reordered.people, strict=True):
        np.testing.assert_array_equal(a.keypoints, b.keypoints)
