"""Tests for cmpose.data.toy: the toy PoseTrack18 dataset must read back as real PoseTrack18."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from cmpose.data.readers import read_annotations
from cmpose.data.toy import write_toy_posetrack
from cmpose.keypoints import JOINT_INDEX, NUM_JOINTS, PT18_NAMES

SIZE = (96, 64)  # (w, h), small and fast


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    root = tmp_path_factory.mktemp("toy")
    ann_dir = write_toy_posetrack(root, num_videos=3, num_frames=4, people=2, image_size=SIZE, seed=1)
    return root, ann_dir


def test_layout_on_disk(toy):
    root, ann_dir = toy
    assert ann_dir == root / "annotations" / "val"
    assert sorted(p.name for p in ann_dir.iterdir()) == [
        "000001_mpii_val.json",
        "000002_mpii_val.json",
        "000003_mpii_val.json",
    ]  # no temporary files left behind
    for v in range(1, 4):
        folder = root / "images" / "val" / f"{v:06d}_mpii_val"
        assert sorted(p.name for p in folder.iterdir()) == [f"{f:06d}.jpg" for f in range(4)]


def test_reads_back_with_the_right_counts(toy):
    _, ann_dir = toy
    data = read_annotations(ann_dir)
    assert sorted(data.videos) == ["000001_mpii_val", "000002_mpii_val", "000003_mpii_val"]
    assert all(v.num_frames == 4 for v in data.videos.values())
    assert len(data.labelled_frames) == 3 * 4
    assert data.num_listed_frames == 3 * 4
    assert len(data.people) == 3 * 4 * 2
    assert all(p.num_annotated == 15 for p in data.people)
    for p in data.people:
        assert p.keypoints.shape == (NUM_JOINTS, 3)
        # the ears are the two joints PoseTrack18 never annotates
        assert p.keypoints[JOINT_INDEX["left_ear"]].tolist() == [0, 0, 0]
        assert p.keypoints[JOINT_INDEX["right_ear"]].tolist() == [0, 0, 0]
        assert p.image_size == SIZE
        assert p.head_box is not None and p.head_box[2] > 0 and p.head_box[3] > 0


def test_frames_exist_and_decode(toy):
    _, ann_dir = toy
    data = read_annotations(ann_dir)
    for (video_id, frame), path in data.labelled_frames.items():
        assert path.is_file()
        assert path == data.videos[video_id].frame_path(frame)
        img = cv2.imread(str(path))
        assert img is not None and img.shape == (SIZE[1], SIZE[0], 3)


def test_tracks_and_frame_indices(toy):
    _, ann_dir = toy
    data = read_annotations(ann_dir)
    by_frame: dict = {}
    for p in data.people:
        by_frame.setdefault((p.video_id, p.frame_index), []).append(p.track_id)
        assert p.image_path.name == f"{p.frame_index:06d}.jpg"
    assert len(by_frame) == 12
    assert all(sorted(t) == [0, 1] for t in by_frame.values())
    ids = [p.image_id for p in data.people]
    assert len(set(ids)) == 12  # one image id per frame, shared by its two people


def test_box_covers_the_joints_inside_the_image(toy):
    _, ann_dir = toy
    data = read_annotations(ann_dir)
    w, h = SIZE
    for p in data.people:
        x, y, bw, bh = p.box
        vis = p.keypoints[:, 2] > 0
        pts = np.clip(p.keypoints[vis, :2], [0, 0], [w, h])  # the reader clips boxes to the image
        assert (pts[:, 0] >= x - 0.01).all() and (pts[:, 0] <= x + bw + 0.01).all()
        assert (pts[:, 1] >= y - 0.01).all() and (pts[:, 1] <= y + bh + 0.01).all()


def test_json_is_posetrack18(toy):
    _, ann_dir = toy
    d = json.loads((ann_dir / "000002_mpii_val.json").read_text())
    assert set(d) == {"images", "annotations", "categories"}
    assert d["categories"][0]["keypoints"] == list(PT18_NAMES)
    img = d["images"][0]
    assert img["file_name"] == "images/val/000002_mpii_val/000000.jpg"
    assert img["nframes"] == 4 and img["is_labeled"] is True
    assert img["vid_id"] == "000002"
    # PoseTrack image id: 1 (mpii) * 10^10 + video * 10^4 + frame
    assert [i["id"] for i in d["images"]] == [10000020000 + f for f in range(4)]
    ann = d["annotations"][0]
    assert len(ann["keypoints"]) == 51 and ann["num_keypoints"] == 15
    assert set(ann["keypoints"][2::3]) == {0.0, 1.0}
    assert len(ann["bbox"]) == 4 and len(ann["bbox_head"]) == 4


def test_ignore_regions_read_back(toy):
    _, ann_dir = toy
    data = read_annotations(ann_dir)
    _, size, regions = data.frame_info[("000001_mpii_val", 0)]
    assert size == SIZE
    assert len(regions) == 1
    np.testing.assert_array_equal(regions[0], [[0, 0], [40, 0], [40, 30], [0, 30]])


def test_frames_move_over_time(toy):
    root, _ = toy
    folder = root / "images" / "val" / "000001_mpii_val"
    f0 = cv2.imread(str(folder / "000000.jpg")).astype(float)
    f1 = cv2.imread(str(folder / "000001.jpg")).astype(float)
    assert np.abs(f0 - f1).mean() > 5.0  # a panning camera, not a still image


def test_same_seed_same_files_other_seed_different(tmp_path):
    a = write_toy_posetrack(tmp_path / "a", num_videos=1, num_frames=2, image_size=(48, 32), seed=3)
    b = write_toy_posetrack(tmp_path / "b", num_videos=1, num_frames=2, image_size=(48, 32), seed=3)
    c = write_toy_posetrack(tmp_path / "c", num_videos=1, num_frames=2, image_size=(48, 32), seed=4)
    name = "000001_mpii_val.json"
    assert (a / name).read_bytes() == (b / name).read_bytes()
    assert (a / name).read_bytes() != (c / name).read_bytes()
    jpg = "images/val/000001_mpii_val/000001.jpg"
    assert (tmp_path / "a" / jpg).read_bytes() == (tmp_path / "b" / jpg).read_bytes()


def test_other_split_and_people_count(tmp_path):
    ann_dir = write_toy_posetrack(
        tmp_path, num_videos=2, num_frames=3, people=4, image_size=(64, 48), split="train"
    )
    assert ann_dir == tmp_path / "annotations" / "train"
    data = read_annotations(ann_dir)
    assert sorted(data.videos) == ["000001_mpii_train", "000002_mpii_train"]
    assert len(data.people) == 2 * 3 * 4
    assert sum(p.num_annotated for p in data.people) == 2 * 3 * 4 * 15
    assert (tmp_path / "images" / "train" / "000002_mpii_train" / "000002.jpg").is_file()
