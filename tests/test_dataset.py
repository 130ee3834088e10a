"""The clip dataset on real frames: where keypoints land, augmentation, determinism, bad files."""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from cmpose.data.config import AugmentConfig, ClipConfig, LoaderConfig
from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.detections import load_detections
from cmpose.data.readers import read_annotations
from cmpose.errors import DataError
from cmpose.keypoints import FLIP_INDEX, PT18_NAMES
from cmpose.ops.heatmap import HeatmapCodec


def _to_image(points: np.ndarray, crop_to_image: torch.Tensor) -> np.ndarray:
    m = crop_to_image.numpy()
    return points @ m[:, :2].T + m[:, 2]


@pytest.fixture(scope="module")
def sample(pt18_sample: Path):  # noqa: ANN201
    return read_annotations(pt18_sample / "annotations" / "val")


@pytest.mark.parametrize("reduction", [1, 4])
def test_real_keypoints_land_at_the_expected_crop_position(sample, reduction: int) -> None:  # noqa: ANN001
    ds = PoseTrackClipDataset(
        sample.people, sample.videos, train=False, loader=LoaderConfig(max_decode_reduction=reduction)
    )
    codec = HeatmapCodec()
    for i, person in enumerate(ds.samples):
        item = ds[i]
        vis = person.keypoints[:, 2] > 0
        # Independent expectation: box -> centre/size (aspect 3:4, x1.25) -> UDP scale (W-1)/size.
        x, y, w, h = person.box
        size = np.array([max(w, h * 0.75), max(h, w / 0.75)]) * 1.25
        expected = (person.keypoints[:, :2] - [x + w / 2, y + h / 2]) * ([191, 255] / size) + [95.5, 127.5]
        decoded, scores = codec.decode(item["target"].numpy())
        w_ok = item["target_weight"].numpy() > 0
        assert np.all(w_ok <= vis)
        # DARK refines a peak only away from the heatmap border (2 heatmap px = 8 crop px);
        # at the border the plain argmax is within one heatmap pixel.
        inner = w_ok & np.all((expected >= 8) & (expected <= [183, 247]), axis=1)
        np.testing.assert_allclose(decoded[inner], expected[inner], atol=0.25)  # crop pixels
        np.testing.assert_allclose(decoded[w_ok], expected[w_ok], atol=4.0)
        # Every annotated joint of a GT box lies inside its x1.25 crop, so all are targets...
        inside = (
            (expected[:, 0] >= 0) & (expected[:, 0] <= 191) & (expected[:, 1] >= 0) & (expected[:, 1] <= 255)
        )
        assert np.array_equal(w_ok, vis & inside) and inside[vis].mean() > 0.9
        # ...and map back to the image within a pixel.
        back = _to_image(decoded[w_ok], item["meta"]["crop_to_image"])
        np.testing.assert_allclose(back[inner[w_ok]], person.keypoints[inner, :2], atol=1.0)


def test_crop_pixels_match_the_image_at_keypoints(sample, pt18_sample: Path) -> None:  # noqa: ANN001
    """The crop shows the image content around each keypoint (no shift, no mirrored axis)."""
    ds = PoseTrackClipDataset(
        sample.people, sample.videos, train=False, loader=LoaderConfig(max_decode_reduction=1)
    )
    person = max(ds.samples, key=lambda p: p.box[3])  # the largest person, in 009473
    i = ds.samples.index(person)
    img = cv2.imread(str(person.image_path)).astype(np.float32)
    item = ds[i]
    clip = item["clip"].numpy()[1].transpose(1, 2, 0) * [0.229, 0.224, 0.225] + [0.485, 0.456, 0.406]
    to_crop = np.linalg.inv(np.vstack([item["meta"]["crop_to_image"].numpy(), [0, 0, 1]]))[:2]
    small = cv2.resize(img, None, fx=0.25, fy=0.25, interpolation=cv2.INTER_AREA)  # ~ the crop's scale
    for j in np.flatnonzero(person.keypoints[:, 2] > 0):
        cx, cy = person.keypoints[j, :2] @ to_crop[:, :2].T + to_crop[:, 2]
        crop_rgb = clip[int(round(cy)), int(round(cx))] * 255
        ix, iy = (person.keypoints[j, :2] / 4).round().astype(int)
        img_rgb = small[iy, ix, ::-1]
        assert np.abs(crop_rgb - img_rgb).mean() < 25, PT18_NAMES[j]


def test_flip_maps_back_to_the_same_joints(sample) -> None:  # noqa: ANN001
    aug = dataclasses.replace(AugmentConfig.disabled(), flip_prob=1.0)
    plain = PoseTrackClipDataset(sample.people, sample.videos, train=True, augment=AugmentConfig.disabled())
    flipped = PoseTrackClipDataset(sample.people, sample.videos, train=True, augment=aug)
    codec = HeatmapCodec()
    for i in range(len(plain)):
        a, b = plain[i], flipped[i]
        assert bool(b["meta"]["flipped"]) and not bool(a["meta"]["flipped"])
        # The flipped crop is the mirror image of the plain one.
        # (Up to OpenCV's fixed-point bilinear rounding, a few grey levels at strong edges.)
        for t in range(3):
            diff = np.abs(b["clip"][t].numpy() - a["clip"][t].numpy()[:, :, ::-1])
            assert diff.max() < 0.1 and diff.mean() < 0.005
        # Flipped targets, mirrored back and relabelled, decode to the plain targets' joints.
        kp_b, _ = codec.decode(b["target"].numpy())
        kp_b[:, 0] = 191 - kp_b[:, 0]
        kp_b = kp_b[list(FLIP_INDEX)]
        kp_a, _ = codec.decode(a["target"].numpy())
        wa = a["target_weight"].numpy() > 0
        np.testing.assert_array_equal(wa, b["target_weight"].numpy()[list(FLIP_INDEX)] > 0)
        np.testing.assert_allclose(kp_b[wa], kp_a[wa], atol=0.05)


def test_training_samples_are_deterministic_per_epoch(sample) -> None:  # noqa: ANN001
    ds = PoseTrackClipDataset(
        sample.people, sample.videos, train=True, clip=ClipConfig(train_step=(1, 3)), seed=7
    )
    a, b = ds[3], ds[3]
    assert torch.equal(a["clip"], b["clip"]) and torch.equal(a["target"], b["target"])
    draws = set()
    for epoch in range(6):
        ds.set_epoch(epoch)
        m = ds[3]["meta"]
        draws.add((round(float(m["rotation"]), 6), tuple(m["scale"].tolist()), bool(m["flipped"])))
    assert len(draws) == 6  # a new draw every epoch


def _same_frame_video(pt18_sample: Path, tmp_path: Path, nframes: int, copies: int) -> Path:
    """A video whose frames are all the same real image (so any difference between clip frames
    would come from the transform)."""
    src = pt18_sample / "images/val/009473_mpii_test/000000.jpg"
    folder = tmp_path / "images" / "v" / "000009_mpii_test"
    folder.mkdir(parents=True)
    for f in range(copies):
        shutil.copy(src, folder / f"{f:06d}.jpg")
    d = json.loads((pt18_sample / "annotations/val/009473_mpii_test.json").read_text())
    d["images"][0]["file_name"] = (
        "images/v/000009_mpii_test/000001.jpg" if copies > 1 else d["images"][0]["file_name"]
    )
    d["images"][0]["nframes"] = nframes
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(d))
    return ann


def test_all_frames_get_the_same_augmentation(pt18_sample: Path, tmp_path: Path) -> None:
    data = read_annotations(_same_frame_video(pt18_sample, tmp_path, 3, 3), image_root=tmp_path)
    ds = PoseTrackClipDataset(data.people, data.videos, train=True, augment=AugmentConfig(rotation_prob=1.0))
    for epoch in range(4):
        ds.set_epoch(epoch)
        clip = ds[0]["clip"]
        assert torch.equal(clip[0], clip[1]) and torch.equal(clip[1], clip[2])


def test_missing_neighbour_uses_keyframe_and_warns(pt18_sample: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001
    ann = _same_frame_video(pt18_sample, tmp_path, nframes=5, copies=2)  # frames 2..4 missing
    data = read_annotations(ann, image_root=tmp_path)
    ds = PoseTrackClipDataset(data.people, data.videos, train=False)
    with caplog.at_level(logging.WARNING):
        clip = ds[0]["clip"]
    assert ds.frame_indices(0) == [0, 1, 2]
    assert torch.equal(clip[2], clip[1])
    assert ds.num_missing_frames == 1 and "000002.jpg" in caplog.text


def test_missing_keyframe_is_an_error_naming_the_file(pt18_sample: Path, tmp_path: Path) -> None:
    ann = _same_frame_video(pt18_sample, tmp_path, nframes=5, copies=2)
    data = read_annotations(ann, image_root=tmp_path)
    (folder,) = {p.image_path.parent for p in data.people}
    (folder / "000001.jpg").unlink()
    ds = PoseTrackClipDataset(data.people, data.videos, train=False)
    with pytest.raises(DataError, match=r"000001\.jpg.*not found"):
        ds[0]


def test_detector_boxes_become_test_samples(sample, pt18_sample: Path) -> None:  # noqa: ANN001
    dets = load_detections(pt18_sample / "annotations/test_posetrack18_human_detections.json", sample, 0.0)
    assert len(dets) == 278
    kept = load_detections(pt18_sample / "annotations/test_posetrack18_human_detections.json", sample, 0.5)
    assert 0 < len(kept) < 278 and all(d.box_score >= 0.5 for d in kept)
    ds = PoseTrackClipDataset(kept, sample.videos, train=False)
    item = ds[0]
    assert item["clip"].shape == (3, 3, 256, 192)
    assert float(item["target_weight"].sum()) == 0.0  # detections carry no GT joints
    assert int(item["meta"]["image_id"]) == kept[0].image_id


def test_dataloader_with_workers(sample) -> None:  # noqa: ANN001
    ds = PoseTrackClipDataset(sample.people, sample.videos, train=True, clip=ClipConfig(num_frames=5))
    batch = next(iter(DataLoader(ds, batch_size=4, num_workers=2)))
    assert batch["clip"].shape == (4, 5, 3, 256, 192) and batch["clip"].dtype == torch.float32
    assert batch["target"].shape == (4, 17, 64, 48)
    assert batch["meta"]["crop_to_image"].shape == (4, 2, 3)
    assert batch["meta"]["frame_indices"].shape == (4, 5)


def test_build_clip_dataset_picks_samples(pt18_sample: Path, tmp_path: Path) -> None:
    from cmpose.data.build import build_clip_dataset, make_loader
    from cmpose.data.config import CropConfig

    d = json.loads((pt18_sample / "annotations/val/012834_mpii_test.json").read_text())
    counts = sorted(a["num_keypoints"] for a in d["annotations"])
    sections = dict(
        clip=ClipConfig(), crop=CropConfig(), augment=AugmentConfig(), loader=LoaderConfig(min_keypoints=12)
    )
    ann = pt18_sample / "annotations/val/012834_mpii_test.json"
    train = build_clip_dataset(ann, train=True, **sections)
    assert len(train) == sum(c >= 12 for c in counts) and 0 < len(train) < len(counts)
    assert len(build_clip_dataset(ann, train=False, **sections)) == len(counts)
    dets = pt18_sample / "annotations/test_posetrack18_human_detections.json"
    test = build_clip_dataset(pt18_sample / "annotations/val", train=False, detections=dets, **sections)
    assert len(test) > 0 and all(s.box_score >= LoaderConfig().det_score_threshold for s in test.samples)
    loader = make_loader(test, batch_size=2, workers=2, sampler="sequential")
    # Workers must not be forked from a process whose OpenCV thread pool has run (deadlock).
    assert loader.multiprocessing_context.get_start_method() in ("forkserver", "spawn")
    batch = next(iter(loader))
    assert batch["clip"].shape == (2, 3, 3, 256, 192)
