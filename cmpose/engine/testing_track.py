"""``cmpose test --track``: pose tracking over each video, as a top-down PoseTrack tracking entry
does it, then both tables (mAP and MOTA).

1. The detector's boxes on every frame the detection file covers (per video: every frame when the
   file has boxes on some unlabelled frame of it, else its labelled frames only; GT boxes exist on
   labelled frames only), each box through the pose model with the clip around its frame, exactly
   as ``cmpose test`` does with keyframe boxes; person rescoring and OKS-NMS per frame.
2. ``cmpose.track.tracker.PoseTracker`` links the people frame by frame over the covered frames
   (box IoU + OKS of consecutive poses: the poses of frame t are known before it is tracked).
3. Optionally the frames a track bridged are filled (``cmpose.track.bridge``): the interpolated
   boxes on *labelled* frames (the only ones evaluated) go through the pose model too.
4. ``predictions/``: every covered frame, all joints, with track ids -> PoseTrack mAP;
   ``predictions_mota/``: the same people without joints scoring below ``joint_threshold`` ->
   poseval's MOTA (``cmpose.eval.track``). MOTA counts every submitted joint as a hypothesis,
   so tracking entries drop the unsure ones; the mAP ranks joints by score and wants them all.

``test.gap_fill`` is not used here: the tracker's bridging is the gap filling of this mode.
Runs in one process (no DDP): the tracker needs each video's people in one place.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmpose.data.config import ClipConfig
from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.detections import detection_fields, image_name_key, read_detection_list
from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.data.records import Dataset, PersonRecord
from cmpose.engine import dist
from cmpose.engine.config import DataConfig, TestConfig
from cmpose.engine.testing import (
    people_to_results,
    predict_people,
    report_markdown,
    resolve_path,
    split_paths,
)
from cmpose.errors import ConfigError, DataError
from cmpose.eval.formats import read_json
from cmpose.eval.posetrack import evaluate
from cmpose.eval.subsets import write_frame_subset
from cmpose.eval.track import evaluate_tracking, format_track_table
from cmpose.eval.writer import PersonPrediction, write_prediction_dir
from cmpose.ops.boxes import box_iou
from cmpose.track.bridge import interpolate_gaps
from cmpose.track.tracker import PoseTracker
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

Results = dict[str, dict[int, list[PersonPrediction]]]


@dataclass
class TrackTestConfig:
    """Settings of ``cmpose test --track`` (the ``--track-*`` options).

    Args:
        iou_weight, oks_weight, match_threshold, max_gap, birth_score, motion: the
            ``PoseTracker``'s (``oks_weight = 0``: IoU only).
        fill: fill the frames a track bridged with interpolated boxes (posed by the model).
        fill_iou: a filled box overlapping a frame's tracked person by this IoU is a duplicate
            of that person and is dropped.
        joint_threshold: joints scoring below this are left out of the MOTA files. It depends on
            the model's score scale; 0.25 was the best of 0.05 to 0.6 for the demo model (joint
            scores x person scores, median 0.11) on the synthetic benchmark (docs/results.md).
    """

    iou_weight: float = 1.0
    oks_weight: float = 1.0
    match_threshold: float = 0.3
    max_gap: int = 4
    birth_score: float = 0.0
    motion: bool = False
    fill: bool = False
    fill_iou: float = 0.5
    joint_threshold: float = 0.25

    def __post_init__(self) -> None:
        try:
            self.tracker()
        except ValueError as err:
            raise ConfigError(f"--track settings: {err}") from None
        if not 0.0 < self.fill_iou <= 1.0:
            raise ConfigError(f"--track settings: fill_iou must be in (0, 1], got {self.fill_iou}")

    def tracker(self) -> PoseTracker:
        return PoseTracker(
            iou_weight=self.iou_weight,
            oks_weight=self.oks_weight,
            match_threshold=self.match_threshold,
            max_gap=self.max_gap,
            birth_score=self.birth_score,
            motion=self.motion,
        )


def track_settings(args: Any) -> TrackTestConfig:
    """The ``--track-*`` options of ``cmpose test`` (cmpose.cli.test) as settings."""
    return TrackTestConfig(
        iou_weight=args.track_iou_weight,
        oks_weight=args.track_oks_weight,
        match_threshold=args.track_threshold,
        max_gap=args.track_max_gap,
        motion=args.track_motion,
        fill=args.track_fill,
        joint_threshold=args.track_joint_threshold,
    )


# --- frames and boxes ------------------------------------------------------------------------------
def frame_keys(
    data: Dataset, gt_files: list[Path]
) -> tuple[dict[object, tuple[str, int]], dict[str, tuple[str, int]]]:
    """(image id -> (video, frame), ``<video>/<file>`` -> (video, frame)) for every frame of every
    video, labelled or not: names from the videos' frame layout, ids from the GT files' ``images``
    lists (PoseTrack2017 files have none; their detections are found by name)."""
    by_name: dict[str, tuple[str, int]] = {}
    for video_id, video in data.videos.items():
        for i in range(video.num_frames):
            by_name[image_name_key(video.frame_path(i))] = (video_id, i)
    by_id: dict[object, tuple[str, int]] = {}
    for gt in gt_files:
        images = read_json(gt).get("images")
        for img in images if isinstance(images, list) else []:
            if isinstance(img, dict) and isinstance(img.get("file_name"), str) and "id" in img:
                key = by_name.get(image_name_key(img["file_name"]))
                if key is not None and isinstance(img["id"], (int, str)):
                    by_id[img["id"]] = key
    for key, (image_id, _, _) in data.frame_info.items():
        if image_id is not None:
            by_id[image_id] = key
    return by_id, by_name


def read_all_detections(
    path: Path, data: Dataset, gt_files: list[Path], score_threshold: float, problems: Problems
) -> tuple[list[PersonRecord], dict[str, list[int]]]:
    """Test samples for every detection scoring at least ``score_threshold`` on any frame, and
    the frames of each video the file covers (every frame when it has a box on some unlabelled
    frame of the video, else the video's labelled frames)."""
    by_id, by_name = frame_keys(data, gt_files)
    dets = read_detection_list(path)
    records: list[PersonRecord] = []
    seen: dict[str, set[int]] = defaultdict(set)
    unmatched = 0
    for i, det in enumerate(dets):
        try:
            fields = detection_fields(det, i, path)
        except DataError as err:
            problems.error("malformed detection", str(err))
            continue
        if fields is None:
            continue
        score, box = fields
        image_id = det.get("image_id")
        key = (
            by_id.get(image_id)
            if isinstance(image_id, (int, str)) and not isinstance(image_id, bool)
            else None
        )
        if key is None and isinstance(det.get("image_name"), str):
            key = by_name.get(image_name_key(det["image_name"]))
        if key is None:
            unmatched += 1
            continue
        seen[key[0]].add(key[1])
        if score < score_threshold or box[2] <= 0 or box[3] <= 0:
            continue
        records.append(_record(data, key, box, score))
    if unmatched:
        log.warning("%s: %d detections on images the annotations do not list", path, unmatched)
    return records, _covered(data, seen)


def _record(data: Dataset, key: tuple[str, int], box: np.ndarray, score: float) -> PersonRecord:
    image_id, size, regions = data.frame_info.get(key, (None, None, []))
    return PersonRecord(
        video_id=key[0],
        frame_index=key[1],
        image_path=data.videos[key[0]].frame_path(key[1]),
        image_size=size,
        box=np.asarray(box, np.float64),
        ignore_regions=regions,
        image_id=image_id,
        box_score=float(score),
    )


def _covered(data: Dataset, seen: dict[str, set[int]]) -> dict[str, list[int]]:
    labelled: dict[str, list[int]] = defaultdict(list)
    for video, frame in data.labelled_frames:
        labelled[video].append(frame)
    out = {}
    for video in data.videos:
        lab = sorted(labelled.get(video, []))
        every = bool(seen.get(video, set()) - set(lab))
        out[video] = list(range(data.videos[video].num_frames)) if every else lab
    return out


def gt_records(data: Dataset) -> tuple[list[PersonRecord], dict[str, list[int]]]:
    """``--boxes gt``: the GT people's boxes (labelled frames only, so the tracker steps from one
    labelled frame to the next)."""
    records = [dataclasses.replace(p) for p in data.people]
    return records, _covered(data, {})


# --- tracking --------------------------------------------------------------------------------------
def _pose(p: PersonPrediction) -> np.ndarray:
    return np.concatenate([p.keypoints, p.scores[:, None]], axis=1)


def track_results(
    results: Results, covered: dict[str, list[int]], settings: TrackTestConfig
) -> tuple[Results, dict[str, dict[int, list[tuple[int, np.ndarray, float]]]]]:
    """Link each video's people over its covered frames; returns the tracked people (track ids
    set, people no track took left out) and, per video and labelled-or-not frame, the boxes to
    fill ``(track_id, box, score)`` when ``settings.fill``."""
    tracked: Results = {}
    fills: dict[str, dict[int, list[tuple[int, np.ndarray, float]]]] = {}
    for video, frames in covered.items():
        tracker = settings.tracker()
        per_frame = results.get(video, {})
        out: dict[int, list[PersonPrediction]] = {}
        history: dict[int, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
        for pos, frame in enumerate(frames):
            people = per_frame.get(frame, [])
            boxes = np.array([p.box for p in people]).reshape(-1, 4)
            scores = np.array([p.score for p in people])
            poses = np.stack([_pose(p) for p in people]) if people else None
            kept = []
            for tb in tracker.update(boxes, scores, poses):
                p = dataclasses.replace(people[tb.detection], track_id=tb.track_id)
                kept.append(p)
                history[tb.track_id].append((pos, np.asarray(p.box, np.float64), float(p.score)))
            if kept:
                out[frame] = kept
        tracked[video] = out
        if settings.fill:
            fills[video] = _fills(history, frames, out, settings)
    return tracked, fills


def _fills(
    history: dict[int, list[tuple[int, np.ndarray, float]]],
    frames: list[int],
    tracked: dict[int, list[PersonPrediction]],
    settings: TrackTestConfig,
) -> dict[int, list[tuple[int, np.ndarray, float]]]:
    out: dict[int, list[tuple[int, np.ndarray, float]]] = defaultdict(list)
    for tid, obs in history.items():
        pos = [o[0] for o in obs]
        for p, box, score in interpolate_gaps(
            pos, [o[1] for o in obs], [o[2] for o in obs], settings.max_gap
        ):
            frame = frames[p]
            others = np.array([q.box for q in tracked.get(frame, [])]).reshape(-1, 4)
            if len(others) and box_iou(box[None], others).max() >= settings.fill_iou:
                continue  # the person is there under another id (a duplicate would be a false positive)
            out[frame].append((tid, box, score))
    return dict(out)


# --- the whole test --------------------------------------------------------------------------------
@dataclass
class PosedFrames:
    """What the pose pass found (``pose_every_frame``): every box's person (``predict_people``'s
    dicts), the covered frames per video, the annotations, the GT folder and the box source."""

    people: list[dict[str, Any]]
    covered: dict[str, list[int]]
    dataset: Dataset
    gt_dir: Path
    boxes: str


def pose_every_frame(
    model: Any,
    data: DataConfig,
    clip: ClipConfig,
    test: TestConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    split: str = "val",
) -> PosedFrames:
    """Step 1: the pose model on every box of every covered frame (module docstring)."""
    if dist.world_size() > 1:
        raise ConfigError("cmpose test --track runs in one process; start it without torchrun")
    ann, dets = split_paths(data, split)
    gt_dir = ann if ann.is_dir() else ann.parent
    gt_files = sorted(gt_dir.glob("*.json")) if ann.is_dir() else [ann]
    problems = Problems()
    dataset = read_annotations(
        ann, resolve_path(data.root, data.image_root), problems, pt17_layout=data.pt17_layout
    )
    use_dets = test.boxes == "detections" and dets is not None
    if test.boxes == "detections" and dets is None:
        log.warning("test.boxes is 'detections' but data.val_detections is not set: using GT boxes")
    if use_dets:
        records, covered = read_all_detections(
            dets, dataset, gt_files, data.loader.det_score_threshold, problems
        )
    else:
        records, covered = gt_records(dataset)
    problems.log_summary(str(ann))
    if test.gap_fill.max_gap > 0:
        log.info("test.gap_fill is not used with --track: the tracker bridges gaps (--track-fill)")
    n_every = sum(len(f) > 0 and len(f) == dataset.videos[v].num_frames for v, f in covered.items())
    log.info(
        "%d boxes on %d frames of %d videos (%d covered on every frame)",
        len(records), sum(map(len, covered.values())), len(covered), n_every,
    )  # fmt: skip
    people = _pose_records(model, records, dataset, clip, data, test, device, amp_dtype)
    return PosedFrames(people, covered, dataset, gt_dir, "detections" if use_dets else "gt")


def track_and_evaluate(
    model: Any,
    posed: PosedFrames,
    data: DataConfig,
    clip: ClipConfig,
    test: TestConfig,
    out_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    settings: TrackTestConfig | None = None,
) -> dict[str, Any]:
    """Steps 2-4 on the pose pass's people: tracking, filling, the files and both tables. The
    model is needed only to pose filled boxes (``settings.fill``)."""
    settings = settings or TrackTestConfig()
    tracked, fills = track_results(people_to_results(posed.people, test), posed.covered, settings)
    n_filled = _add_fills(model, tracked, fills, posed.dataset, clip, data, test, device, amp_dtype)
    gt_dir = posed.gt_dir
    pred_dir, mota_dir = Path(out_dir) / "predictions", Path(out_dir) / "predictions_mota"
    write_prediction_dir(gt_dir, tracked, pred_dir)
    write_prediction_dir(gt_dir, confident_joints(tracked, settings.joint_threshold), mota_dir)
    report: dict[str, Any] = {"all": evaluate(gt_dir, pred_dir), "hard": None, "boxes": posed.boxes}
    hard_gt = Path(out_dir) / "gt_hard"
    if write_frame_subset(gt_dir, hard_gt, lambda a: bool(a.get("hard"))):
        report["hard"] = evaluate(hard_gt, pred_dir)
    report["mota"] = evaluate_tracking(gt_dir, mota_dir)
    ids = {(v, p.track_id) for v, frames in tracked.items() for ps in frames.values() for p in ps}
    report["track"] = {
        **dataclasses.asdict(settings),
        "covered_frames": sum(map(len, posed.covered.values())),
        "tracks": len(ids),
        "filled_boxes": n_filled,
    }
    atomic_write_json(Path(out_dir) / "report.json", report)
    atomic_write_bytes(Path(out_dir) / "report.md", track_report_markdown(report).encode())
    return report


def run_track_test(
    model: Any,
    data: DataConfig,
    clip: ClipConfig,
    test: TestConfig,
    out_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    split: str = "val",
    settings: TrackTestConfig | None = None,
) -> dict[str, Any]:
    """Pose tracking on ``split``; writes predictions/, predictions_mota/, report.json and
    report.md under ``out_dir`` and returns the report: ``all`` / ``hard`` (mAP, as ``cmpose
    test``), ``boxes``, ``mota`` (``cmpose.eval.track`` report) and ``track`` (settings, counts)."""
    posed = pose_every_frame(model, data, clip, test, device, amp_dtype, split)
    return track_and_evaluate(model, posed, data, clip, test, out_dir, device, amp_dtype, settings)


def _pose_records(
    model: Any,
    records: list[PersonRecord],
    dataset: Dataset,
    clip: ClipConfig,
    data: DataConfig,
    test: TestConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> list[dict[str, Any]]:
    if not records:
        return []
    loader = dataclasses.replace(data.loader, min_keypoints=0)
    ds = PoseTrackClipDataset(
        records, dataset.videos, train=False, clip=clip, crop=data.crop, augment=data.augment, loader=loader
    )
    return predict_people(model, ds, test, device, amp_dtype)


def _add_fills(
    model: Any,
    tracked: Results,
    fills: dict[str, dict[int, list[tuple[int, np.ndarray, float]]]],
    dataset: Dataset,
    clip: ClipConfig,
    data: DataConfig,
    test: TestConfig,
    device: torch.device,
    amp_dtype: torch.dtype | None,
) -> int:
    """Pose the filled boxes on labelled frames (the evaluated ones) and add them to ``tracked``
    with their track's id; returns how many were added."""
    records, ids = [], []
    for video, frames in sorted(fills.items()):
        for frame, boxes in sorted(frames.items()):
            if (video, frame) not in dataset.labelled_frames:
                continue
            for tid, box, score in boxes:
                records.append(_record(dataset, (video, frame), box, score))
                ids.append(tid)
    people = _pose_records(model, records, dataset, clip, data, test, device, amp_dtype)
    # Each filled box is its own person: rescored alone, no NMS against the tracked people (the
    # IoU check in _fills already dropped duplicates).
    for p, tid in zip(people, ids, strict=True):
        (person,) = people_to_results([p], dataclasses.replace(test, oks_nms=0.0))[p["video"]][p["frame"]]
        person.track_id = tid
        tracked.setdefault(p["video"], {}).setdefault(p["frame"], []).append(person)
    return len(people)


def confident_joints(results: Results, threshold: float) -> Results:
    """The people with their joints scoring below ``threshold`` removed (NaN), people left without
    a joint dropped: what the MOTA files hold."""
    out: Results = {}
    for video, frames in results.items():
        out[video] = {}
        for frame, people in frames.items():
            kept = []
            for p in people:
                low = np.asarray(p.scores) < threshold
                if low.all():
                    continue
                kp = np.where(low[:, None], np.nan, np.asarray(p.keypoints, np.float64))
                kept.append(dataclasses.replace(p, keypoints=kp))
            out[video][frame] = kept
    return out


def track_report_markdown(report: dict[str, Any]) -> str:
    """``cmpose test``'s mAP tables, then the MOTA table and the tracker's settings."""
    t = report["track"]
    weights = "IoU only" if t["oks_weight"] == 0 else f"IoU x {t['iou_weight']:g} + OKS x {t['oks_weight']:g}"
    fill = f", bridged frames filled ({t['filled_boxes']} boxes)" if t["fill"] else ""
    lines = [
        report_markdown(report).rstrip("\n"),
        "",
        f"PoseTrack MOTA (tracker: {weights}, gaps up to {t['max_gap']} frames keep the id{fill}; "
        f"joints scoring below {t['joint_threshold']:g} left out; {t['tracks']} tracks over "
        f"{t['covered_frames']} frames):",
        "",
        "```",
        format_track_table(report["mota"]),
        "```",
    ]
    return "\n".join(lines) + "\n"
