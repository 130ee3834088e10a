"""``cmpose infer``: the streaming runner (token reuse, borders, bounded memory), the output
files, the box sources and the command, on a tiny random CM-Pose (CPU, deterministic)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from cmpose.data.augment import AugmentParams, color_normalize
from cmpose.data.config import ClipConfig, CropConfig
from cmpose.engine.predict import decode_to_image, predict_clips
from cmpose.errors import CmposeError, DataError
from cmpose.infer.detect import FileBoxes, GTBoxes, HogDetector, nms
from cmpose.infer.tracker import TrackedBox
from cmpose.infer.video import VideoPoseRunner, crop_person
from cmpose.infer.video_io import FrameSource, run_video
from cmpose.models.cmpose import CMPose
from cmpose.models.config import AuxConfig, BackboneConfig, EncoderConfig, FTEConfig, HeadConfig, ModelConfig
from cmpose.ops.heatmap import HeatmapCodec
from cmpose.viz.video import VideoWriter, video_info

CROP = CropConfig(image_size=(48, 64), heatmap_size=(12, 16))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_model(stage: int = 2, num_frames: int = 3) -> CMPose:
    torch.manual_seed(0)
    cfg = ModelConfig(
        stage=stage,
        backbone=BackboneConfig(size="tiny", embed_dim=32, depth=1, num_heads=2, stem_channels=8),
        head=HeadConfig(deconv_channels=(16, 16)),
        encoder=EncoderConfig(depth=1, num_heads=2, keypoint_head_hidden=32),
        aux=AuxConfig(decoder_hidden=32),
        fte=FTEConfig(num_heads=2),
    )
    return CMPose(cfg, image_size=(48, 64), heatmap_size=(12, 16), num_frames=num_frames).eval()


class CountingModel(torch.nn.Module):
    """Wraps a CMPose and counts the images its backbone sees."""

    def __init__(self, model: CMPose) -> None:
        super().__init__()
        self.inner = model
        self.num_frames = model.num_frames
        self.images = 0
        self.calls = 0

    def encode_frames(self, frames: torch.Tensor) -> torch.Tensor:
        self.images += frames.shape[0]
        self.calls += 1
        return self.inner.encode_frames(frames)

    def forward_tokens(self, tokens: torch.Tensor, *args, **kwargs) -> dict:
        return self.inner.forward_tokens(tokens, *args, **kwargs)


def frames_with_people(n: int, absent: dict[int, set[int]] | None = None, seed: int = 0):
    """n random 96x64 frames; track 0 moves right, track 1 sits still; absent[t] = tracks missing."""
    rng = np.random.default_rng(seed)
    absent = absent or {}
    out = []
    for t in range(n):
        frame = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        people = [
            TrackedBox(0, np.array([5.0 + 2 * t, 8.0, 22.0, 44.0]), np.zeros(4), 0.9),
            TrackedBox(1, np.array([55.0, 4.0, 28.0, 50.0]), np.zeros(4), 0.8),
        ]
        out.append((t, frame, [p for p in people if p.track_id not in absent.get(t, set())]))
    return out


def reference(model: CMPose, frames, track_id: int, clip_frames: list[int], key: int, flip: bool):
    """The model on the explicitly assembled clip: each frame cropped with the track's own box."""
    boxes = {t: {p.track_id: p.box for p in people} for t, _, people in frames}
    images = {t: img for t, img, _ in frames}
    crops = np.stack([crop_person(images[f], boxes[f][track_id], CROP)[0] for f in clip_frames])
    clip = color_normalize(
        crops, AugmentParams(), np.asarray(CROP.mean, np.float32), np.asarray(CROP.std, np.float32)
    )
    heatmaps, out = predict_clips(model, torch.from_numpy(clip)[None], flip)
    c2i = crop_person(images[key], boxes[key][track_id], CROP)[1]
    kps, scores = decode_to_image(CROP_CODEC, heatmaps.numpy(), c2i[None])
    return heatmaps[0].numpy(), kps[0], scores[0], out


CROP_CODEC = HeatmapCodec(CROP.image_size, CROP.heatmap_size, CROP.sigma)


@pytest.mark.parametrize("flip", [True, False])
def test_backbone_once_per_crop_and_equal_to_explicit_clips(flip: bool) -> None:
    model = tiny_model()
    counting = CountingModel(model)
    # Track 1 is missing in frames 2 and 3: its clips there fall back towards the keyframe.
    frames = frames_with_people(7, absent={2: {1}, 3: {1}})
    runner = VideoPoseRunner(counting, CROP, 3, 1, "cpu", batch_size=4, flip_test=flip, keep_maps=True)
    results = list(runner.run(frames))
    n_crops = sum(len(p) for _, _, p in frames)
    assert counting.images == n_crops * (2 if flip else 1)  # once per (frame, person) (+ its mirror)
    assert runner.stats["crops"] == n_crops and runner.stats["clips"] == n_crops
    assert counting.calls == runner.stats["backbone_calls"] >= 3  # batches of 4 crops
    assert [r.frame_index for r in results] == list(range(7))

    clips = {(r.frame_index, p.track_id): p.clip_frames for r in results for p in r.people}
    assert clips[(0, 0)] == [0, 0, 1]  # video start: clamped to the keyframe
    assert clips[(6, 0)] == [5, 6, 6]  # video end
    assert clips[(1, 1)] == [0, 1, 1]  # track 1 absent at frame 2
    assert clips[(4, 1)] == [4, 4, 5]  # ... and at frame 3
    assert (2, 1) not in clips and (3, 1) not in clips

    worst = 0.0
    for r in results:
        for p in r.people:
            hm, kps, scores, out = reference(model, frames, p.track_id, p.clip_frames, r.frame_index, flip)
            worst = max(worst, float(np.abs(hm - p.heatmaps).max()))
            np.testing.assert_allclose(p.keypoints, kps, atol=1e-3)
            np.testing.assert_allclose(p.scores, scores, atol=1e-5)
            np.testing.assert_allclose(p.importance, out["importance"][0].numpy(), atol=1e-5)
            assert p.cluster_ids.shape == (3, 4, 3) and (p.cluster_ids == -1).any()
    assert worst < 1e-5


def test_window_memory_is_bounded() -> None:
    model = tiny_model()
    # lookahead 1: the backbone runs after every frame and the cache never holds more than the
    # clip's span (T frames for step 1).
    for n in (6, 24):
        runner = VideoPoseRunner(model, CROP, 3, 1, "cpu", flip_test=False, lookahead=1)
        assert len(list(runner.run(frames_with_people(n, seed=n)))) == n
        assert runner.stats["max_cached_frames"] == 3
    # step 2: span 5; with read-ahead the bound is span - 1 + lookahead, whatever the length.
    peaks = []
    for n in (20, 60):
        runner = VideoPoseRunner(model, CROP, 3, 2, "cpu", flip_test=False, lookahead=4)
        assert len(list(runner.run(frames_with_people(n, absent={t: {1} for t in range(n)})))) == n
        peaks.append(runner.stats["max_cached_frames"])
    assert peaks[0] == peaks[1] <= 5 - 1 + 4


def test_step_and_batching_do_not_change_results() -> None:
    model = tiny_model()
    frames = frames_with_people(9)
    runs = []
    for batch, look in ((1, 1), (3, 2), (64, 16)):
        runner = VideoPoseRunner(model, CROP, 3, 2, "cpu", batch_size=batch, lookahead=look)
        runs.append(
            [
                (r.frame_index, p.track_id, p.clip_frames, p.keypoints)
                for r in runner.run(frames)
                for p in r.people
            ]
        )
    for other in runs[1:]:
        assert [x[:3] for x in other] == [x[:3] for x in runs[0]]
        for a, b in zip(runs[0], other, strict=True):
            np.testing.assert_allclose(a[3], b[3], atol=1e-3)
    assert runs[0][0][2] == [0, 0, 2] and runs[0][2][2] == [0, 1, 3]  # step 2 at the start


def write_video(path: Path, n: int, size=(96, 64)) -> None:
    rng = np.random.default_rng(1)
    with VideoWriter(path, 10, size) as w:
        for _ in range(n):
            w.write(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


def moving_boxes(frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.array([[5.0 + frame_index, 8, 22, 44], [55, 4, 28, 50]]), np.array([0.9, 0.8])


@pytest.mark.parametrize("kind", ["mp4", "folder"])
def test_run_video_writes_one_frame_and_one_line_per_input_frame(tmp_path: Path, kind: str) -> None:
    if kind == "mp4":
        src = tmp_path / "clip.mp4"
        write_video(src, 6)
    else:
        src = tmp_path / "000042_mpii_test"
        src.mkdir()
        rng = np.random.default_rng(2)
        for i in range(6):
            cv2.imwrite(str(src / f"{i:06d}.jpg"), rng.integers(0, 256, (64, 96, 3), dtype=np.uint8))
    out = tmp_path / "out"
    runner = VideoPoseRunner(tiny_model(), CROP, 3, 1, "cpu", keep_maps=True, keep_crops=True)
    stats = run_video(
        src,
        out / "v.mp4",
        out / "v.jsonl",
        runner,
        moving_boxes,
        token_maps_dir=out / "tok",
        token_maps_every=4,
    )
    assert stats["frames"] == 6 and stats["people"] == 12
    assert video_info(out / "v.mp4").num_frames == 6
    lines = [json.loads(line) for line in (out / "v.jsonl").read_text().splitlines()]
    assert [d["frame_index"] for d in lines] == list(range(6))
    p = lines[3]["people"][0]
    assert p["track_id"] == 0 and len(p["keypoints"]) == 17 and len(p["scores"]) == 17 and len(p["box"]) == 4
    assert sorted(f.name for f in (out / "tok").iterdir()) == [
        "frame000000_track1.png",
        "frame000004_track1.png",
    ]
    assert not [f for f in out.iterdir() if f.name.startswith(".")]  # no temporary files left

    # --max-frames
    stats = run_video(src, out / "w.mp4", out / "w.jsonl", runner, moving_boxes, max_frames=4, progress=False)
    assert video_info(out / "w.mp4").num_frames == 4 and len((out / "w.jsonl").read_text().splitlines()) == 4


def test_bad_video_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    with pytest.raises(DataError, match="nope.mp4"):
        FrameSource(missing)
    runner = VideoPoseRunner(tiny_model(), CROP, 3, 1, "cpu")
    with pytest.raises(DataError, match="nope.mp4"):
        run_video(missing, tmp_path / "o.mp4", tmp_path / "o.jsonl", runner, moving_boxes)
    garbage = tmp_path / "junk.mp4"
    garbage.write_bytes(b"not a video")
    with pytest.raises(DataError, match="junk.mp4"):
        FrameSource(garbage)
    empty = tmp_path / "frames"
    empty.mkdir()
    with pytest.raises(DataError, match="frames"):
        FrameSource(empty)
    assert not list(tmp_path.glob("o.*"))


def test_hog_runs_on_a_synthetic_frame() -> None:
    frame = np.full((360, 640, 3), 200, np.uint8)
    cv2.ellipse(frame, (320, 120), (18, 22), 0, 0, 360, (40, 40, 40), -1)  # a crude figure
    cv2.rectangle(frame, (300, 142), (340, 250), (60, 60, 60), -1)
    cv2.rectangle(frame, (302, 250), (318, 330), (60, 60, 60), -1)
    cv2.rectangle(frame, (322, 250), (338, 330), (60, 60, 60), -1)
    boxes, scores = HogDetector(max_width=320)(0, frame)
    assert boxes.shape == (len(scores), 4) and scores.ndim == 1
    assert HogDetector()(0, np.zeros((50, 40, 3), np.uint8))[0].shape == (0, 4)  # smaller than the window


def test_nms() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 10, 10]], float)
    assert nms(boxes, np.array([0.5, 0.9, 0.1]), 0.5).tolist() == [1, 2]


def test_file_boxes(tmp_path: Path) -> None:
    dets = [
        {"frame_index": 3, "bbox": [1, 2, 30, 40], "score": 0.9},
        {"image_name": "images/val/000001_mpii_test/000005.jpg", "bbox": [1, 2, 30, 40], "score": 0.8},
        {"image_name": "images/val/000002_mpii_test/000005.jpg", "bbox": [1, 2, 30, 40], "score": 0.8},
        {"image_id": 10000010007, "bbox": [5, 5, 10, 20], "score": 0.7, "category_id": 1},
        {"image_id": 10000020007, "bbox": [5, 5, 10, 20], "score": 0.7},
        {"frame_index": 3, "bbox": [9, 9, 9, 9], "score": 0.1},
        {"frame_index": 3, "bbox": [9, 9, 9, 9], "score": 0.9, "category_id": 2},
    ]
    path = tmp_path / "dets.json"
    path.write_text(json.dumps(dets))
    src = FileBoxes(path, video_name="000001_mpii_test")
    assert src.frames == [3, 5, 7]
    boxes, scores = src(3, None)
    np.testing.assert_allclose(boxes, [[1, 2, 30, 40]])
    np.testing.assert_allclose(scores, [0.9])
    assert src(4, None)[0].shape == (0, 4)
    # a frame folder: image names are looked up by file name
    named = FileBoxes(path, "000001_mpii_test", frame_names=["000004.jpg", "000005.jpg"])
    assert named.frames == [1, 3, 7]
    path.write_text(json.dumps([{"bbox": [1, 2, 3, 4]}]))
    with pytest.raises(DataError, match="dets.json"):
        FileBoxes(path)
    with pytest.raises(DataError, match="missing.json"):
        FileBoxes(tmp_path / "missing.json")


def test_gt_boxes_interpolate_between_labelled_frames(tmp_path: Path) -> None:
    ann = {
        "images": [
            {"id": 10000010000 + f, "file_name": f"images/val/000001_mpii_test/{f:06d}.jpg", "nframes": 10,
             "frame_id": 10000010000 + f, "vid_id": "000001", "is_labeled": True, "width": 96, "height": 64}
            for f in (0, 4)
        ],
        "annotations": [
            {"image_id": 10000010000 + f, "id": f, "track_id": 0, "category_id": 1, "bbox": [x, 10, 20, 40],
             "keypoints": [0] * 51, "num_keypoints": 0}
            for f, x in ((0, 10.0), (4, 30.0))
        ],
    }  # fmt: skip
    path = tmp_path / "000001_mpii_test.json"
    path.write_text(json.dumps(ann))
    gt = GTBoxes(path, "000001_mpii_test")
    assert gt.frames == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(gt(2)[0], [[20, 10, 20, 40]])
    assert gt(5)[0].shape == (0, 4)


def test_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from cmpose.cli import infer
    from cmpose.engine import checkpointing
    from cmpose.engine.config import DataConfig, ExperimentConfig

    cfg = ExperimentConfig(data=DataConfig(crop=CROP, clip=ClipConfig(num_frames=3, test_step=1)))
    loaded = []

    def fake_load_model(path: Path, device: str):
        loaded.append((path, device))
        return tiny_model(), cfg

    monkeypatch.setattr(checkpointing, "load_model", fake_load_model)
    # cmpose infer reads the file to tell a training checkpoint from outside weights
    monkeypatch.chdir(tmp_path)
    torch.save({"model": {}, "config": {}}, "ck.pt")
    parser = argparse.ArgumentParser()
    infer.register(parser.add_subparsers())
    src = tmp_path / "my clip.mp4"
    write_video(src, 5)
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps([{"frame_index": f, "bbox": [10 + f, 8, 22, 44], "score": 0.9} for f in range(5)])
    )
    out = tmp_path / "out"
    args = parser.parse_args(
        ["infer", str(src), "--checkpoint", "ck.pt", "--boxes", str(boxes), "--out", str(out)]
        + ["--device", "cpu", "--no-flip", "--max-frames", "4", "--token-maps", "2"]
    )
    assert args.func(args) == 0
    assert loaded == [(Path("ck.pt"), "cpu")]
    assert video_info(out / "my_clip.mp4").num_frames == 4
    assert len((out / "my_clip.jsonl").read_text().splitlines()) == 4
    assert len(list((out / "my_clip_tokens").glob("*.png"))) == 2
    assert "4 frames" in capsys.readouterr().out

    args = parser.parse_args(
        ["infer", str(tmp_path / "absent.mp4"), "--checkpoint", "ck.pt", "--out", str(out)]
    )
    with pytest.raises(CmposeError, match="absent.mp4"):
        args.func(args)
    assert len(loaded) == 1  # the input is checked before the model loads
