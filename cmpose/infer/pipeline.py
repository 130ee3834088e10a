"""One call from a loaded model to a video's outputs: boxes -> tracks -> poses -> overlay MP4,
JSON lines, a PoseTrack18 JSON and COCO keypoint results (``cmpose.infer.outputs``).
Used by ``cmpose infer`` (through ``cmpose.api.infer_video``) and ``cmpose demo``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from cmpose.engine.config import ExperimentConfig
from cmpose.errors import DataError
from cmpose.infer.detect import HogDetector, box_source_from_spec
from cmpose.infer.outputs import (
    FORMATS,
    PoseRecorder,
    coco_results,
    gt_images,
    posetrack_images,
    posetrack_json,
)
from cmpose.infer.smooth import KeypointSmoother
from cmpose.infer.tracker import PoseTracker
from cmpose.infer.video import VideoPoseRunner
from cmpose.infer.video_io import FrameSource, run_video, video_stem
from cmpose.keypoints import PT18_NAMES
from cmpose.utils.io import atomic_write_json, remove_stale_temporaries

log = logging.getLogger(__name__)


def infer_video(
    model: Any,
    cfg: ExperimentConfig,
    video: Path,
    out_dir: Path,
    *,
    boxes: str = "hog",
    device: str = "cpu",
    flip_test: bool | None = None,
    amp: str | None = None,
    max_frames: int | None = None,
    fps: float | None = None,
    token_maps_every: int | None = None,
    batch_size: int = 32,
    score_threshold: float = 0.2,
    min_score: float = 0.3,
    formats: tuple[str, ...] | list[str] = FORMATS,
    smooth: tuple[float, float] | None = None,
) -> tuple[Path, dict[str, Any]]:
    """Run ``model`` (built by ``load_model``, with its experiment ``cfg``) on ``video`` (a file or
    a folder of frames); writes the ``formats`` (``cmpose.infer.outputs.FORMATS``):
    ``out_dir/<stem>.mp4``, ``out_dir/<stem>.jsonl``, ``out_dir/posetrack/<stem>.json`` and
    ``out_dir/coco/<stem>.json`` (and token maps every ``token_maps_every`` frames). The model's
    joint order is ``model.joint_names`` (PoseTrack18's when absent). Returns the MP4 path and the
    measured numbers, with ``outputs``: format -> path of what was written. ``smooth``:
    (min_cutoff, beta) of the One-Euro keypoint filter (``cmpose.infer.smooth``); None = off."""
    from cmpose.engine.trainer import amp_dtype

    source = FrameSource(Path(video), max_frames, fps)
    box_source = box_source_from_spec(boxes, source.name, source.frame_names, score_threshold, source.size)
    check_box_frames(box_source, source.num_frames, boxes, cut=max_frames is not None)
    if isinstance(box_source, HogDetector):
        log.warning(
            "person boxes from OpenCV's HOG people detector, which misses many people (small, sitting, "
            "occluded) and gives loose boxes; pass boxes from a real detector for real results"
        )
    want_maps = token_maps_every is not None
    if want_maps and getattr(model, "encoder", None) is None:
        log.warning("token maps: this is the single-frame model (no encoder, no token importance)")
        want_maps = False
    runner = VideoPoseRunner(
        model,
        cfg.data.crop,
        int(getattr(model, "num_frames", cfg.data.clip.num_frames)),
        cfg.data.clip.test_step,
        device,
        batch_size=batch_size,
        flip_test=cfg.test.flip_test if flip_test is None else flip_test,
        keep_maps=want_maps,
        keep_crops=want_maps,
        amp_dtype=amp_dtype(amp or cfg.run.amp, torch.device(device)),
    )
    stem = video_stem(Path(video))
    out_mp4, out_json = Path(out_dir) / f"{stem}.mp4", Path(out_dir) / f"{stem}.jsonl"
    paths = {
        "mp4": out_mp4,
        "jsonl": out_json,
        "posetrack": Path(out_dir) / "posetrack" / f"{stem}.json",
        "coco": Path(out_dir) / "coco" / f"{stem}.json",
    }
    paths = {f: p for f, p in paths.items() if f in formats}
    # A killed earlier run of this video left its temporaries (only this video's: the folder may
    # be shared with other jobs).
    remove_stale_temporaries(Path(out_dir), [p.name for p in paths.values()], depth=1)
    names = tuple(getattr(model, "joint_names", PT18_NAMES))
    recorder = PoseRecorder(len(names)) if {"posetrack", "coco"} & set(paths) else None
    stats = run_video(
        source,
        paths.get("mp4"),
        paths.get("jsonl"),
        runner,
        box_source,
        tracker=PoseTracker(),  # IoU only here: poses come after the tracks (docs/inference.md, "Tracking")
        token_maps_dir=Path(out_dir) / f"{stem}_tokens" if want_maps else None,
        token_maps_every=token_maps_every or 0,
        min_score=min_score,
        on_result=recorder,
        # --smooth: One-Euro filter (min_cutoff, beta) of the keypoints per track, before writing
        smoother=KeypointSmoother(source.fps, *smooth) if smooth is not None else None,
    )
    stats["token_maps_dir"] = str(Path(out_dir) / f"{stem}_tokens") if want_maps else None
    if recorder is not None:
        images = _frame_images(source, Path(video), boxes, int(stats["frames"]))
        if "posetrack" in paths:
            atomic_write_json(paths["posetrack"], posetrack_json(recorder.frames, images, names), indent=None)
        if "coco" in paths:
            atomic_write_json(
                paths["coco"], coco_results(recorder.frames, [im["id"] for im in images]), indent=None
            )
    stats["outputs"] = paths
    return out_mp4, stats


def _frame_images(source: FrameSource, video: Path, boxes: str, count: int) -> list[dict[str, Any]]:
    """PoseTrack ``images`` of the frames read: the GT file's own when the boxes came from a
    PoseTrack18 GT file of this video (``gt:FILE``, the frames in the same order), so the
    prediction file pairs with it frame by frame in ``cmpose evaluate``; else named the
    PoseTrack way (``cmpose.infer.outputs.posetrack_images``)."""
    if boxes.startswith("gt:"):
        images = gt_images(Path(boxes[3:]), source.name)
        if images is not None and len(images) >= count:
            return images
        log.warning(
            "%s: no PoseTrack18 images list covering the %d frames; frames named from the video", boxes, count
        )
    return posetrack_images(video, source.name, count, source.size, source.frame_names)


def check_box_frames(box_source: Any, num_frames: int, spec: str, cut: bool = False) -> None:
    """Boxes read from a file must fall on frames of the video: all outside (another video's
    file, 1-based frame numbers past the end) is an error, not a video with no people; some
    outside is a warning with the count. ``cut``: the video was cut short on purpose
    (``--max-frames``), so boxes past the cut are expected and only counted."""
    frames = getattr(box_source, "frames", None)
    if not frames or num_frames <= 0:
        return
    outside = [f for f in frames if f >= num_frames]
    if cut and outside:
        log.info("%s: boxes on %d frames past the first %d are not used", spec, len(outside), num_frames)
        return
    if len(outside) == len(frames):
        raise DataError(
            f"every box is on a frame past the video's {num_frames} frames (frames {frames[0]}.."
            f"{frames[-1]}): is it this video's file, with 0-based frame indices?",
            path=spec,
        )
    if outside:
        log.warning(
            "%s: boxes on %d of %d frames fall past the video's %d frames and are not used",
            spec, len(outside), len(frames), num_frames,
        )  # fmt: skip
