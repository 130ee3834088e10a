"""Write a synthetic dataset in the PoseTrack2018 layout.

``OUT/images/<split>/<video>/NNNNNN.jpg``, ``OUT/annotations/<split>/<video>.json`` (PoseTrack18
fields plus ``hard`` and ``visible`` per person, and ``visible_dt`` in version 2),
``OUT/detections/val_boxes.json`` (simulated detector boxes on the labelled val frames),
``OUT/detections/val_boxes_all_frames.json`` (the same boxes plus the detector on every unlabelled
val frame, for tracking) and ``OUT/synth.json`` (the config and the counts).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from cmpose.eval.writer import PT18_CATEGORY
from cmpose.synth.config import SynthConfig, SynthSummary
from cmpose.synth.detections import ALL_FRAMES_FILE, detect_frame
from cmpose.synth.frame import SCORED, FrameRender, PersonFrame, extent, render_frame
from cmpose.synth.plan import VideoPlan, plan_video
from cmpose.synth.transient import visible_dt
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


def _annotations(
    plan: VideoPlan, t: int, people: list[PersonFrame], dts: list[np.ndarray] | None
) -> list[dict]:
    """The people of labelled frame t; ``dts`` (version 2) holds each one's ``visible_dt``."""
    iid = image_id(plan.number, t)
    out = []
    for k, p in enumerate(people):
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
            | ({} if dts is None else {"visible_dt": [int(d) for d in dts[k]]})
        )
    return out


def write_video(
    out: Path, plan: VideoPlan, config: SynthConfig, summary: SynthSummary, bar: tqdm
) -> tuple[list[dict], list[dict]]:
    """Render and write one video; returns its detections on the labelled frames and on every
    frame (val), or two empty lists (train)."""
    folder = out / "images" / plan.split / plan.name
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations, detections, every_frame = [], [], [], []
    seen: list[dict[int, np.ndarray]] = []  # per frame: track id -> (17,) visible flags
    labelled_people: list[tuple[int, list[PersonFrame]]] = []
    det_rng = np.random.default_rng((config.seed, plan.index, 1))  # independent of the drawing
    # Unlabelled frames draw from a stream of their own, so the labelled frames' boxes (and
    # val_boxes.json) are the same as before every-frame detections existed.
    unlabelled_rng = np.random.default_rng((config.seed, plan.index, 2))
    for t in range(plan.n_frames):
        frame = render_frame(plan, t)
        ok, jpg = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, config.quality])
        if not ok:
            raise RuntimeError(f"JPEG encoding failed for {folder / f'{t:06d}.jpg'}")
        (folder / f"{t:06d}.jpg").write_bytes(jpg.tobytes())
        images.append(_image_entry(plan, t, frame))
        seen.append({p.track_id: p.visible.astype(bool) for p in frame.people})
        if plan.labelled[t]:
            labelled_people.append((t, frame.people))
            summary.labelled_frames += 1
            summary.people += len(frame.people)
            for p in frame.people:
                summary.hard_people += bool(p.hard)
                for label in p.hard:
                    summary.hard_counts[label] += 1
        if plan.split == "val":
            dets = _detect(det_rng if plan.labelled[t] else unlabelled_rng, plan, t, frame)
            detections += dets if plan.labelled[t] else []
            every_frame += dets
        summary.frames += 1
        bar.update(1)
    # After the loop: visible_dt looks at the frames after a labelled one too.
    for t, people in labelled_people:
        dts = _visible_dts(plan, config, summary, seen, t, people)
        annotations += _annotations(plan, t, people, dts)
    # info.generator: the marker that tells a trainer (and cmpose infer) the data is synthetic.
    data = {
        "info": {"generator": "cmpose synth"},
        "categories": [PT18_CATEGORY],
        "images": images,
        "annotations": annotations,
    }
    atomic_write_json(out / "annotations" / plan.split / f"{plan.name}.json", data, indent=None)
    return detections, every_frame


def _visible_dts(
    plan: VideoPlan,
    config: SynthConfig,
    summary: SynthSummary,
    seen: list[dict[int, np.ndarray]],
    t: int,
    people: list[PersonFrame],
) -> list[np.ndarray] | None:
    """Version 2: each person's ``visible_dt`` at labelled frame t, counted into the summary."""
    if config.version < 2:
        return None
    dts = [visible_dt(seen, t, p.track_id, p.keypoints[:, 2] > 0, config.class_window) for p in people]
    counts = summary.visible_dt if summary.visible_dt is not None else {}
    for d, p in zip(dts, people, strict=True):
        for value in d[p.keypoints[:, 2] > 0].tolist():
            counts[str(value)] = counts.get(str(value), 0) + 1
    summary.visible_dt = counts
    return dts


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
    for name in ("val_boxes.json", ALL_FRAMES_FILE):
        if not summary.val_videos and (out / "detections" / name).exists():
            stale.append(out / "detections" / name)
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
    summary = SynthSummary(out=out, hard_counts=dict.fromkeys(config.hard_labels(), 0))
    detections: list[dict] = []
    every_frame: list[dict] = []
    with tqdm(total=config.total_frames, desc="synth", unit="frame", disable=not progress) as bar:
        for index in range(config.total_videos):
            plan = plan_video(index, config, "val" if index in val else "train")
            (summary.val_videos if plan.split == "val" else summary.train_videos).append(plan.name)
            labelled, every = write_video(out, plan, config, summary, bar)
            detections += labelled
            every_frame += every
    if val:
        atomic_write_json(out / "detections" / "val_boxes.json", detections, indent=None)
        atomic_write_json(out / "detections" / ALL_FRAMES_FILE, every_frame, indent=None)
    summary.detections = len(detections)
    _warn_stale(out, summary)
    atomic_write_json(out / "synth.json", {"config": config.as_json(), "counts": summary.counts()})
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
