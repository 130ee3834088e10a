"""Reading videos and frame folders, and writing what a video run produces: the overlay MP4,
the JSON-lines poses and token-map pictures (``run_video``). The pose estimation itself is
``cmpose.infer.video.VideoPoseRunner``."""

from __future__ import annotations

import json
import logging
import math
import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from cmpose.data.frames import decode_image
from cmpose.errors import DataError
from cmpose.infer.tracker import PoseTracker, TrackedBox
from cmpose.infer.video import PersonPose, VideoPoseRunner
from cmpose.ops.geometry import invert_affine
from cmpose.viz.draw import draw_box, draw_pose, track_color

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


# --- frame sources -------------------------------------------------------------------------------
class FrameSource:
    """A video file or a folder of frame images (sorted by name), read once, in order.

    Attributes:
        path, name (file stem or folder name), num_frames (after ``max_frames``), fps, size (W, H),
        frame_names (the folder's file names; None for a video file).

    Raises:
        DataError: the path does not exist, is not a readable video, or is a folder without images.
    """

    def __init__(self, path: Path, max_frames: int | None = None, fps: float | None = None) -> None:
        from cmpose.viz.video import video_info

        self.path = Path(path)
        self.max_frames = max_frames
        if fps is not None and not (math.isfinite(fps) and fps > 0):
            # 0 used to become 25 without a word (issue 18)
            raise DataError(f"frame rate must be a number > 0, got {fps}", path=self.path)
        if self.path.is_dir():
            files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not files:
                raise DataError(
                    f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in this folder", path=self.path
                )
            self._files: list[Path] | None = files[:max_frames] if max_frames is not None else files
            self.frame_names: list[str] | None = [p.name for p in self._files]
            h, w = decode_image(self._files[0]).shape[:2]
            self.size = (w, h)
            self.num_frames = len(self._files)
            self.fps = fps or 25.0
            self.name = self.path.name
        elif self.path.exists():
            info = video_info(self.path)
            self._files = None
            self.frame_names = None
            self.size = (info.width, info.height)
            self.num_frames = min(info.num_frames, max_frames) if max_frames is not None else info.num_frames
            self.fps = fps or info.fps or 25.0
            self.name = self.path.stem
        else:
            raise DataError("no such video file or frame folder", path=self.path)

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        if self._files is not None:
            for i, f in enumerate(self._files):
                yield i, decode_image(f)
        else:
            from cmpose.viz.video import read_video_frames

            yield from read_video_frames(self.path, stop=self.max_frames)


# --- drawing and the whole job -------------------------------------------------------------------
def draw_overlay(
    frame: np.ndarray, people: Sequence[PersonPose], label: str = "", min_score: float = 0.3
) -> np.ndarray:
    """A copy of ``frame`` with each person's box, track id and skeleton (joints with score >
    ``min_score``) in the track's colour, and ``label`` (e.g. a frame counter) at the top left."""
    img = frame.copy()
    thick = max(2, img.shape[1] // 640)
    for p in people:
        color = track_color(p.track_id)
        draw_box(img, p.box, color, f"id {p.track_id}")
        draw_pose(img, np.concatenate([p.keypoints, p.scores[:, None]], axis=1), color, thick, min_score)
    if label:
        scale = max(0.5, img.shape[1] / 1280)
        org = (8, int(24 * scale))
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(img, label, org, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale, (255, 255, 255), 1, cv2.LINE_AA)
    return img


class _AtomicText:
    """A text file written to a hidden temporary beside ``path`` and renamed over it on success."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self.tmp = Path(tmp)
        self.file = os.fdopen(fd, "w", encoding="utf-8")

    def __enter__(self) -> _AtomicText:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.file.close()
        if exc_type is None:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(self.tmp, 0o666 & ~mask)
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _token_map_png(path: Path, person: PersonPose) -> None:
    from cmpose.ops.geometry import apply_affine
    from cmpose.utils.io import atomic_write_bytes
    from cmpose.viz.tokens import token_map_sheet

    kp = apply_affine(person.keypoints, invert_affine(person.crop_to_image))
    crops = person.crops
    k = max(1, 256 // crops.shape[1])  # small crops (the demo's 96 x 128) are enlarged to be readable
    if k > 1:
        crops = crops.repeat(k, axis=1).repeat(k, axis=2)
        kp = (kp + 0.5) * k - 0.5  # pixel-centre convention
    sheet = token_map_sheet(crops, person.importance, person.cluster_ids, keypoints=kp)
    ok, buf = cv2.imencode(".png", sheet)
    if ok:
        atomic_write_bytes(path, buf.tobytes())


def run_video(
    video_path: Path | FrameSource,
    out_mp4: Path | None,
    out_json: Path | None,
    runner: VideoPoseRunner,
    boxes_source: Any,
    *,
    tracker: PoseTracker | None = None,
    max_frames: int | None = None,
    token_maps_dir: Path | None = None,
    token_maps_every: int = 50,
    min_score: float = 0.3,
    progress: bool | None = None,
    on_result: Callable[[Any], None] | None = None,
    smoother: Callable[[Any], None] | None = None,
) -> dict[str, float]:
    """Pose estimation on a whole video: detection -> tracking -> ``runner`` -> an overlay MP4
    and a JSON-lines file (one line per frame: ``{"frame_index", "people": [{track_id, box,
    box_score, keypoints [[x, y] x J], scores [J]}]}``), both written to temporary files and
    renamed when the run completes.

    Args:
        video_path: a video file, a folder of frames, or a :class:`FrameSource`.
        boxes_source: ``(frame_index, bgr) -> (boxes (D, 4), scores (D,))`` (cmpose.infer.detect).
        tracker: default ``PoseTracker()`` (fed boxes only, so it matches on IoU).
        token_maps_dir: when given (the runner needs ``keep_maps`` and ``keep_crops``), a PNG of
            the token maps of the frame's largest person every ``token_maps_every`` frames.
        min_score: joints drawn in the overlay need a higher score.
        progress: tqdm bar (None: only on a terminal).
        out_mp4 / out_json: None skips that file. on_result: called with every ``FrameResult``
            (``cmpose.infer.outputs.PoseRecorder`` keeps the poses for the PoseTrack / COCO files).
        smoother: called with every ``FrameResult`` before anything is written, to change its
            keypoints in place (``cmpose.infer.smooth.KeypointSmoother``, ``--smooth``).

    Returns:
        the measured numbers: frames, people, seconds, fps, and the runner's stats.
    """
    from tqdm import tqdm

    from cmpose.viz.video import VideoWriter

    source = video_path if isinstance(video_path, FrameSource) else FrameSource(video_path, max_frames)
    tracker = tracker or PoseTracker()
    timing = {"read_s": 0.0, "detect_s": 0.0, "write_s": 0.0}
    want_maps = token_maps_dir is not None and token_maps_every > 0
    maps_written = 0

    def tracked() -> Iterator[tuple[int, np.ndarray, list[TrackedBox]]]:
        it = iter(source)
        while True:
            t0 = time.perf_counter()
            try:
                index, frame = next(it)
            except StopIteration:
                return
            t1 = time.perf_counter()
            boxes, scores = boxes_source(index, frame)
            people = tracker.update(boxes, scores)
            t2 = time.perf_counter()
            timing["read_s"] += t1 - t0
            timing["detect_s"] += t2 - t1
            yield index, frame, people

    n_frames = n_people = 0
    start = time.perf_counter()
    bar = tqdm(
        total=source.num_frames,
        unit="frame",
        desc=source.name,
        disable=None if progress is None else not progress,
    )
    mp4_writer = VideoWriter(out_mp4, source.fps, source.size) if out_mp4 is not None else nullcontext()
    with mp4_writer as video, _AtomicText(out_json) if out_json is not None else nullcontext() as jsonl:
        for res in runner.run(tracked()):
            t0 = time.perf_counter()
            if smoother is not None:
                smoother(res)
            label = f"frame {res.frame_index}" + (f" / {source.num_frames - 1}" if source.num_frames else "")
            if video is not None:
                video.write(draw_overlay(res.frame, res.people, label, min_score))
            if jsonl is not None:
                line = {"frame_index": int(res.frame_index), "people": [p.to_json() for p in res.people]}
                jsonl.file.write(json.dumps(line, separators=(",", ":")) + "\n")
            if on_result is not None:
                on_result(res)
            if want_maps and res.frame_index % token_maps_every == 0 and res.people:
                p = max(res.people, key=lambda q: q.box[2] * q.box[3])
                if p.importance is not None and p.crops is not None:
                    _token_map_png(token_maps_dir / f"frame{res.frame_index:06d}_track{p.track_id}.png", p)
                    maps_written += 1
            n_frames += 1
            n_people += len(res.people)
            timing["write_s"] += time.perf_counter() - t0
            bar.update(1)
        bar.close()
        if n_frames == 0:
            raise DataError("no frames could be read", path=source.path)
    if source.num_frames and n_frames < source.num_frames:
        # A truncated file declares more frames than it holds: say so, the outputs stop early.
        log.warning(
            "%s: the video declares %d frames but only %d could be decoded; the outputs cover those %d",
            source.path, source.num_frames, n_frames, n_frames,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    stats = {
        "frames": n_frames,
        "people": n_people,
        "seconds": seconds,
        "fps": n_frames / seconds if seconds > 0 else float("inf"),
        "token_maps": maps_written,
        **timing,
        **{f"runner_{k}": v for k, v in runner.stats.items()},
    }
    log.info(
        "%s: %d frames, %.1f people/frame in %.1f s: %.2f frames/s "
        "(read %.1f s, boxes+tracking %.1f s, crop %.1f s, backbone %.1f s, encoder %.1f s, writing %.1f s)",
        source.name,
        n_frames,
        n_people / max(n_frames, 1),
        seconds,
        stats["fps"],
        timing["read_s"],
        timing["detect_s"],
        runner.stats.get("crop_s", 0.0),
        runner.stats.get("backbone_s", 0.0),
        runner.stats.get("encoder_s", 0.0),
        timing["write_s"],
    )
    log.info("wrote %s", ", ".join(str(p) for p in (out_mp4, out_json) if p is not None) or "no file")
    return stats


def video_stem(path: Path) -> str:
    """Output name of a video file or frame folder (its stem / folder name, safe characters)."""
    path = Path(path)
    name = path.name if path.is_dir() else path.stem
    return re.sub(r"[^A-Za-z0-9._@-]+", "_", name) or "video"
