"""Clip frame selection: pure offsets, border clipping, and the real 5-frame video."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from cmpose.data.clip import clip_frame_indices, clip_offsets
from cmpose.data.config import ClipConfig, LoaderConfig
from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.readers import read_annotations
from cmpose.keypoints import PT18_NAMES

VIDEO = "000001_mpiinew_test"


def test_offsets() -> None:
    assert clip_offsets(3, 2) == [-2, 0, 2]
    assert clip_offsets(5, 1) == [-2, -1, 0, 1, 2]
    assert clip_offsets(1, 3) == [0]
    for bad in [(2, 1), (0, 1), (3, -1)]:
        with pytest.raises(ValueError):
            clip_offsets(*bad)


def test_border_clipping() -> None:
    assert clip_frame_indices(0, [-1, 0, 1], 5) == [0, 0, 1]  # the keyframe repeats
    assert clip_frame_indices(4, [-1, 0, 1], 5) == [3, 4, 4]
    assert clip_frame_indices(1, [-2, 0, 2], 5) == [0, 1, 3]
    assert clip_frame_indices(0, [-2, 0, 2], 1) == [0, 0, 0]
    with pytest.raises(ValueError):
        clip_frame_indices(5, [0], 5)


def _video_annotation(root: Path, listed: list[int]) -> Path:
    """PoseTrack18 JSON for the real 5-frame video, listing the given frames, one person each."""
    kps = np.zeros((len(PT18_NAMES), 3))
    kps[0] = (640, 200, 1)
    kps[15] = (620, 600, 1)
    images = [
        {
            "id": f,
            "file_name": f"videos/{VIDEO}/{f:06d}.jpg",
            "nframes": 5,
            "is_labeled": True,
            "width": 1280,
            "height": 720,
        }
        for f in listed
    ]
    anns = [
        {
            "image_id": f,
            "track_id": 0,
            "keypoints": kps.reshape(-1).tolist(),
            "bbox": [500, 150, 300, 500],
            "bbox_head": [600, 160, 80, 80],
        }
        for f in listed
    ]
    path = root / f"{VIDEO}.json"
    path.write_text(
        json.dumps({"images": images, "annotations": anns, "categories": [{"keypoints": list(PT18_NAMES)}]})
    )
    return path


@pytest.mark.parametrize("listed", [[0, 1, 2, 3, 4], [0, 2, 4]], ids=["all-frames-listed", "names-derived"])
@pytest.mark.parametrize("num_frames,step", [(3, 1), (3, 2), (5, 1)])
def test_real_video_neighbour_files(
    pt18_sample: Path, tmp_path: Path, listed: list[int], num_frames: int, step: int
) -> None:
    data = read_annotations(_video_annotation(tmp_path, listed), image_root=pt18_sample)
    ds = PoseTrackClipDataset(
        data.people, data.videos, train=False, clip=ClipConfig(num_frames=num_frames, test_step=step)
    )
    video = data.videos[VIDEO]
    for i, person in enumerate(ds.samples):
        key = person.frame_index
        half = num_frames // 2
        expected = [min(max(key + k * step, 0), 4) for k in range(-half, half + 1)]
        assert ds.frame_indices(i) == expected
        names = [video.frame_path(f).name for f in ds.frame_indices(i)]
        assert names == [f"{f:06d}.jpg" for f in expected]
        assert all(video.frame_path(f).is_file() for f in expected)


def test_real_video_clip_pixels_come_from_the_right_files(pt18_sample: Path, tmp_path: Path) -> None:
    """Each clip frame is the crop of the expected file: compared with an independent crop."""
    data = read_annotations(_video_annotation(tmp_path, [0, 1, 2, 3, 4]), image_root=pt18_sample)
    ds = PoseTrackClipDataset(
        data.people, data.videos, train=False, loader=LoaderConfig(max_decode_reduction=1)
    )
    folder = pt18_sample / "videos" / VIDEO
    frames = [cv2.imread(str(folder / f"{f:06d}.jpg")) for f in range(5)]
    assert not np.array_equal(frames[0], frames[1])  # a real video: neighbours differ
    # Independent crop: box (500, 150, 300, 500) -> centre (650, 400), size 375 x 625 (aspect
    # 3:4 then x1.25); UDP scale (W - 1) / size.
    c, size = np.array([650.0, 400.0]), np.array([375.0, 500.0]) * 1.25
    k = (np.array([191.0, 255.0])) / size
    m = np.array([[k[0], 0, 95.5 - k[0] * c[0]], [0, k[1], 127.5 - k[1] * c[1]]])
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    for i in (0, 2, 4):
        clip = ds[i]["clip"].numpy()
        for t, f in enumerate(ds.frame_indices(i)):
            crop = cv2.warpAffine(frames[f], m, (192, 256), flags=cv2.INTER_LINEAR)
            expected = (crop[..., ::-1] / 255.0 - mean) / std
            np.testing.assert_allclose(clip[t].transpose(1, 2, 0), expected, atol=0.05)
