"""Write a synthetic dataset in the PoseTrack2018 layout.

``OUT/images/<split>/<video>/NNNNNN.jpg``, ``OUT/annotations/<split>/<video>.json`` (PoseTrack18
fields plus ``hard`` and ``visible`` per person), ``OUT/detections/val_boxes.json`` (simulated
detector boxes on the labelled val frames) and ``OUT/synth.json`` (the config and the counts).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from cmpose.eval.writer import PT18_CATEGORY
from cmpose.synth.config import SynthConfig, SynthSummary
from cmpose.synth.detections import detect_frame
from cmpose.synth.frame import SCORED, FrameRender, extent, render_frame
from cmpose.synth.plan import VideoPlan, plan_video
from cmpose.utils.io import atomic_write_json

log = logging.getLogger(__name__)


def image_id(video_number: int, frame: int) -> int:
    """PoseTrack18's image id: 1 (mpii) * 10^10 + video * 10^4 + frame."""
    return 10000000000 + video_number * 10000 + frame


def _r(values: np.ndarray) -> list[float]:
    """Two decimals: plenty for pixels, and compact files."""
    return [round(float(v), 2) for v in np.asarray(values).ravel()]


def _image_entry(plan: VideoPlan, t: int, frame: FrameRender | None) -> dict:
    regions = frame.ignore_regions if frame is not None and plan.labelled[t] else []
    iid = image_id(plan.number, t)
    return {
        "has_no_densepose": True,
        "is_labeled": bool(plan.labelled[t]),
        "file_name": f"images/{plan.split}/{plan.name}/{t:06d}.jpg",
        "nframes": plan.n_frames,
        "frame_id": iid,
        "vid_id": f"{plan.number:06d}",
        "ignore_regions_y": [[int(v) for v in r[:, 1]] for r in regions],
        "ignore_regions_x": [[int(v) for v in r[:, 0]] for r in regions],
        "id": iid,
        "width": plan.size[0],
        "height": plan.size[1],
    }


def _annotations(plan: VideoPlan, t: int, frame: FrameRender) -> list[dict]:
    iid = image_id(plan.number, t)
    out = []
    for k, p in enumerate(frame.people):
        out.append(
            {
                "bbox_head": _r(p.head_box),
                "keypoints": _r(p.keypoints),
                "track_id": p.track_id,
                "image_id": iid,
                "bbox": _r(p.box),
                "scores": [],
                "category_id": 1,
                "id": iid * 100 + k,
                "person_id": plan.number * 100 + p.track_id,
                "iscrowd": False,
                "num_keypoints": int((p.keypoints[:, 2] > 0).sum()),
                "visible": [int(v) for v in p.visible],
                "hard": list(p.hard),
            }
        )
    return out


def write_video(
    out: Path, plan: VideoPlan, config: SynthConfig, summary: SynthSummary, bar: tqdm
) -> list[dict]:
    """Render and write one video; returns its detections (val) or [] (train)."""
    folder = out / "images" / plan.split / plan.name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, detections = [], [], []
    det_rng = np.random.default_rng((config.seed, plan.index, 1))  # independent of the drawing
    for t in range(plan.n_frames):
        frame = render_frame(plan, t)
        ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, config.quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {folder / f'{t:06d}.jpg'}")
        (folder / f"{t:06d}.jpg").write_bytes(jpg.tobytes())
        images.append(_image_entry(plan, t, frame))
        if plan.labelled[t]:
            annotations += _annotations(plan, t, frame)
            summary.labelled_frames += 1
            summary.people += len(frame.people)
            for p in frame.people:
                summary.hard_people += bool(p.hard)
                for label in p.hard:
                    summary.hard_counts[label] += 1
            if plan.split == "val":
                detections += _detect(det_rng, plan, t, frame)
        summary.frames += 1
        bar.update(1)
    data = {"categories": [PT18_CATEGORY], "images": images, "annotations": annotations}
    atomic_write_json(out / "annotations" / plan.split / f"{plan.name}.json", data, indent=None)
    return detections


def _detect(rng: np.random.Generator, plan: VideoPlan, t: int, frame: FrameRender) -> list[dict]:
    people = [(p.box, float(p.visible.sum()) / SCORED.sum()) for p in frame.people]
    crowd = []
    for c in plan.crowd:
        x0, y0, x1, y1 = extent(c, t)
        crowd.append(np.array([x0, y0, x1 - x0, y1 - y0]))
    return detect_frame(rng, image_id(plan.number, t), plan.size, people, crowd)


def _warn_stale(out: Path, summary: SynthSummary) -> None:
    """Files of an earlier, larger run are not deleted (never remove what we did not write): say so."""
    written = {f"{n}.json" for n in summary.train_videos + summary.val_videos}
    stale = sorted(p for p in (out / "annotations").glob("*/*.json") if p.name not in written)
    if not summary.val_videos and (out / "detections" / "val_boxes.json").exists():
        stale.append(out / "detections" / "val_boxes.json")
    if stale:
        log.warning(
            "%s holds %d annotation/detection files this run did not write (e.g. %s): an earlier run's? "
            "They will be read with the new ones; remove the folder to start clean.",
            out,
            len(stale),
            stale[0],
        )


def generate(out: Path, config: SynthConfig, progress: bool = True) -> SynthSummary:
    """Write the dataset described by ``config`` under ``out`` (created if needed; files of the
    same names are replaced). Returns counts and timing."""
    out = Path(out)
    start = time.perf_counter()
    val = set(config.val_videos())
    summary = SynthSummary(out=out)
    detections: list[dict] = []
    with tqdm(total=config.total_frames, desc="synth", unit="frame", disable=not progress) as bar:
        for index in range(config.total_videos):
            plan = plan_video(index, config, "val" if index in val else "train")
            (summary.val_videos if plan.split == "val" else summary.train_videos).append(plan.name)
            detections += write_video(out, plan, config, summary, bar)
    if val:
        atomic_write_json(out / "detections" / "val_boxes.json", detections, indent=None)
    summary.detections = len(detections)
    _warn_stale(out, summary)
    config_json = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
    atomic_write_json(out / "synth.json", {"config": config_json, "counts": summary.counts()})
    summary.seconds = time.perf_counter() - start
    log.info(
        "wrote %d videos (%d train, %d val), %d frames, %d labelled people (%.0f %% with a hard case) to %s "
        "in %.1f s (%.0f frames/s)",
        config.total_videos,
        len(summary.train_videos),
        len(summary.val_videos),
        summary.frames,
        summary.people,
        100 * summary.hard_fraction,
        out,
        summary.seconds,
        summary.frames_per_second,
    )
    return summary
