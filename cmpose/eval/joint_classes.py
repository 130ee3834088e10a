"""PoseTrack mAP per joint class: visible, hidden here but visible within the clip window, hidden
throughout.

``cmpose synth --version 2`` writes, per GT person of a labelled frame, ``visible_dt``: one int per
keypoint, 0 where the joint is visible in the frame, k where the nearest frame in which it is
visible is k frames away, -1 where it is visible in none of the frames searched (docs/synthetic.md).
A model whose clip reaches ``w`` frames either side of the keyframe (``clip_window``) splits the
annotated GT joints into three classes:

- ``visible``: visible in the keyframe (dt 0);
- ``hidden_here_visible_in_window``: covered or outside the image here, visible in a frame at most
  w away (1 <= dt <= w): a temporal model has evidence a single-frame one lacks;
- ``hidden_throughout``: visible in no frame within w (dt -1 or dt > w).

The rule for one class (the COCO treatment of area ranges, applied to joints). Predictions are
matched to GT people exactly as for the ordinary mAP, with every GT joint (so the matching, and
hence each prediction's fate, is the same in every table). Then the GT joints of the other classes
are ignored: they are not positives, and a predicted joint of a person matched to a GT person
whose same joint belongs to another class is dropped (poseval would count it as a false positive
if the GT joint were simply removed: the class's AP would then depend on how well the model does
on the other classes). Predicted joints that belong to no GT joint (an unmatched person, or a
joint its matched GT person does not have) are false positives of the ordinary table only: they
cannot be assigned to a class. So the three tables split the matched predictions and the GT joints
of the ordinary table between them; a joint type without GT joints of the class is left out of
the class's means (its AP is NaN).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cmpose.errors import DataError, EvaluationError
from cmpose.eval.formats import parse_video, read_json
from cmpose.eval.posetrack import COLUMNS, VideoScores, metrics, pair_files, score_video
from cmpose.eval.pt18 import category_columns
from cmpose.keypoints import PT17_NAMES

log = logging.getLogger(__name__)

JOINT_CLASSES: tuple[str, ...] = ("visible", "hidden_here_visible_in_window", "hidden_throughout")
NO_CLASS = -1  # a joint that is not annotated (or was removed by an ignore region)


def clip_window(num_frames: int, step: int) -> int:
    """How far (frames) the clip of a model reaches either side of its keyframe: (T // 2) * step."""
    return (num_frames // 2) * step


def classify(visible_dt: np.ndarray, annotated: np.ndarray, window: int) -> np.ndarray:
    """Class index (into JOINT_CLASSES) of each joint, NO_CLASS where not ``annotated``.

    Args:
        visible_dt: (..., J) ints as ``cmpose synth`` writes them.
        annotated: (..., J) bool, the GT joint is annotated.
        window: w, the clip's reach either side of the keyframe.
    """
    dt = np.asarray(visible_dt)
    out = np.full(dt.shape, 2, dtype=np.int64)
    out[dt == 0] = 0
    out[(dt >= 1) & (dt <= window)] = 1
    return np.where(annotated, out, NO_CLASS)


def gt_classes(path: Path, window: int) -> np.ndarray | None:
    """(N, J) class of each joint (PT17_NAMES order) of the N GT people of a PoseTrack18 file, in
    the order the evaluator holds them (by frame, file order within a frame); None when the file's
    people carry no ``visible_dt`` (real PoseTrack, version 1 synthetic data, PoseTrack17 files)."""
    data = read_json(path)
    if "annolist" in data or "images" not in data:
        return None
    anns = [a for a in data.get("annotations") or [] if isinstance(a, dict)]
    if not anns or not all("visible_dt" in a for a in anns):
        if any("visible_dt" in a for a in anns):
            log.warning("%s: only some annotations have visible_dt; no per-class mAP", path)
        return None
    cols, n_kp = category_columns(data, path)
    people = parse_video(data, path, "gt").people  # checks the keypoints (and the rest) first
    position = {im.get("id"): f for f, im in enumerate(data["images"]) if isinstance(im, dict)}
    rows = sorted(
        ((position[a.get("image_id")], i) for i, a in enumerate(anns) if a.get("image_id") in position),
        key=lambda fi: fi[0],
    )
    dts, annotated = [], []
    for _, i in rows:
        dt, kp = anns[i]["visible_dt"], anns[i].get("keypoints")
        ok = isinstance(dt, list) and len(dt) == n_kp
        if not ok or not all(isinstance(v, int) and not isinstance(v, bool) and v >= -1 for v in dt):
            raise DataError(
                f"expected {n_kp} integers >= -1 (0 visible here, k nearest visible frame, -1 none)",
                path=path,
                record=f"annotations[{i}]",
                field="visible_dt",
            )
        xyv = np.asarray(kp, dtype=np.float64).reshape(n_kp, 3)[cols]
        annotated.append(~(xyv == 0).all(axis=1))
        dts.append(np.asarray(dt)[cols])
    frames = np.array([f for f, _ in rows], dtype=np.int64)
    annotated_rows = np.stack(annotated) if rows else np.zeros((0, len(PT17_NAMES)), bool)
    if not np.array_equal(frames, people.frame) or not np.array_equal(
        annotated_rows, people.present.any(axis=2)
    ):
        # Only a file unlike cmpose synth's (frames of several video folders) gets here.
        raise EvaluationError(f"{path}: cannot line up the visible_dt lists with the evaluated people")
    if not rows:
        return np.zeros((0, len(PT17_NAMES)), dtype=np.int64)
    return classify(np.stack(dts), annotated_rows, window)


def class_scores(video: VideoScores, classes: np.ndarray, c: int) -> VideoScores:
    """``video``'s scored joints restricted to class ``c`` (the rule in the module docstring).

    ``classes`` (N, J) holds the class of every joint of the GT file's N people (``gt_classes``);
    ``video`` must come from ``score_video`` (it carries the matching)."""
    if video.gt_rows is None or video.gt_present is None or video.matched is None:
        raise ValueError("class_scores needs a VideoScores from score_video (with the matching)")
    g_cls = np.where(video.gt_present, classes[video.gt_rows], NO_CLASS)  # (G, J)
    if len(g_cls):
        m = video.matched
        p_cls = np.where((m >= 0)[:, None], g_cls[np.maximum(m, 0)], NO_CLASS)  # (M, J)
    else:
        p_cls = np.full(video.present.shape, NO_CLASS)
    keep = video.present & (p_cls == c)
    return VideoScores(video.score, keep, video.correct & keep, (g_cls == c).sum(axis=0), video.n_frames)


def class_report(videos: list[VideoScores]) -> dict:
    """``metrics`` of one class, with joint types that have no GT joint of the class left out
    (AP NaN; columns and Total average the joints that are left), and ``n_gt`` its GT joints."""
    report = metrics(videos)
    n_gt = np.sum([v.n_gt for v in videos], axis=0) if videos else np.zeros(len(PT17_NAMES), int)
    ap = {}
    for j, name in enumerate(PT17_NAMES):
        if n_gt[j] == 0:
            report["joints"][name]["ap"] = float("nan")
        ap[name] = report["joints"][name]["ap"]
    for col, names in COLUMNS.items():
        report[col] = _nanmean([ap[n] for n in names])
    report["Total"] = _nanmean([ap[n] for n in PT17_NAMES])
    report["n_gt"] = int(n_gt.sum())
    return report


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not np.isnan(v)]
    return float(np.mean(kept)) if kept else float("nan")


def evaluate_by_class(gt_dir: str | Path, pred_dir: str | Path, window: int) -> dict | None:
    """Per-class PoseTrack mAP: ``{"window": w, "classes": {class name: report}}`` with reports
    as ``class_report``; None when the GT has no ``visible_dt`` (nothing to split by)."""
    pairs = pair_files(Path(gt_dir), Path(pred_dir))
    classes = []
    for g, _ in pairs:
        cls = gt_classes(g, window)
        if cls is None:
            return None
        classes.append(cls)
    videos = [score_video(g, p) for g, p in pairs]
    return {
        "window": window,
        "classes": {
            name: class_report([class_scores(v, cls, c) for v, cls in zip(videos, classes, strict=True)])
            for c, name in enumerate(JOINT_CLASSES)
        },
    }


def class_label(name: str, window: int) -> str:
    """A class's row name: ``hidden_here_visible_in_window(2)`` says the window."""
    return f"{name}({window})" if name == "hidden_here_visible_in_window" else name


def format_class_table(report: dict) -> str:
    """One row per class: the PoseTrack columns, Total and the number of GT joints."""
    w = report["window"]
    rows = [(class_label(name, w), r) for name, r in report["classes"].items()]
    width = max(len(name) for name, _ in rows)
    cols = [*COLUMNS, "Total"]
    lines = [" ".join([" " * width] + [f"{c:>8}" for c in cols] + [f"{'GT joints':>10}"])]
    for name, r in rows:
        lines.append(" ".join([f"{name:<{width}}"] + [f"{r[c]:>8.1f}" for c in cols] + [f"{r['n_gt']:>10d}"]))
    return "\n".join(lines)


def class_markdown(report: dict | None) -> list[str]:
    """Lines of the test report's per-class section ([] when there is none)."""
    if not report:
        return []
    return [
        "",
        f"Per joint class (window +-{report['window']} frames = clip radius x test step; "
        "docs/evaluation.md, per-class mAP):",
        "",
        "```",
        format_class_table(report),
        "```",
    ]
