"""PoseTrack pose-estimation mAP, equal to poseval's (``--evalPoseEstimation``).

See docs/evaluation.md for the conventions and for every place where cmpose differs from poseval.
Joint arrays here use poseval's joint-id order (``PT17_NAMES``); the report uses PoseTrack18 names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmpose.errors import DataError, EvaluationError
from cmpose.eval.ap import joint_ap
from cmpose.eval.formats import People, VideoFile, load_video
from cmpose.eval.matching import assign_people
from cmpose.eval.regions import points_in_polygons
from cmpose.keypoints import PT17_NAMES, SCORED_NAMES

log = logging.getLogger(__name__)

# Table columns and the joints averaged into each, in poseval's order (eval_helpers.getCum): the
# order matters for bit-equal means.
COLUMNS: dict[str, tuple[str, ...]] = {
    "Head": ("head_top", "head_bottom", "nose"),
    "Shoulder": ("right_shoulder", "left_shoulder"),
    "Elbow": ("right_elbow", "left_elbow"),
    "Wrist": ("right_wrist", "left_wrist"),
    "Hip": ("right_hip", "left_hip"),
    "Knee": ("right_knee", "left_knee"),
    "Ankle": ("right_ankle", "left_ankle"),
}
_JOINT = {name: j for j, name in enumerate(PT17_NAMES)}


@dataclass
class VideoScores:
    """Scored predicted joints of one video, M predicted people, J = 15 joints (PT17_NAMES order)."""

    score: np.ndarray  # (M, J)
    present: np.ndarray  # (M, J) bool, joint predicted (outside ignore regions)
    correct: np.ndarray  # (M, J) bool
    n_gt: np.ndarray  # (J,) annotated GT joints
    n_frames: int  # frames scored
    # For per-class mAP (cmpose.eval.joint_classes), G scored GT people:
    gt_rows: np.ndarray | None = None  # (G,) each one's row in the GT file's People
    gt_present: np.ndarray | None = None  # (G, J) its annotated joints left after ignore regions
    matched: np.ndarray | None = None  # (M,) the scored GT person each prediction matched, -1 none


def pair_files(gt_dir: Path, pred_dir: Path) -> list[tuple[Path, Path]]:
    """GT files sorted by name, each with its same-named prediction file."""
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for d, what in ((gt_dir, "GT"), (pred_dir, "prediction")):
        if not d.is_dir():
            raise EvaluationError(f"{what} folder not found: {d}")
    gt_files = sorted(p for p in gt_dir.glob("*.json") if p.is_file())
    if not gt_files:
        raise EvaluationError(f"no *.json GT files in {gt_dir}")
    missing = [p.name for p in gt_files if not (pred_dir / p.name).is_file()]
    if missing:
        raise EvaluationError(
            f"{len(missing)} GT video(s) have no prediction file in {pred_dir}: {', '.join(missing[:5])}"
            + (" ..." if len(missing) > 5 else "")
        )
    extra = sorted({p.name for p in pred_dir.glob("*.json")} - {p.name for p in gt_files})
    if extra:
        log.warning(
            "%d prediction file(s) without a GT video are ignored: %s", len(extra), ", ".join(extra[:5])
        )
    return [(p, pred_dir / p.name) for p in gt_files]


def _first_surviving(people: People) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, J, 2) xy, (N, J) present, (N, J) score from the first candidate point left per joint."""
    d = np.argmax(people.present, axis=2)[..., None]
    xy = np.take_along_axis(people.xy, d[..., None], axis=2)[:, :, 0]
    score = np.take_along_axis(people.score, d, axis=2)[:, :, 0]
    return xy, people.present.any(axis=2), score


def _apply_ignore_regions(gt: People, pr: People, regions: dict[int, list[np.ndarray]]) -> None:
    """Delete every GT and predicted point strictly inside one of its frame's GT ignore polygons."""
    for f, polygons in regions.items():
        gs, ge = np.searchsorted(gt.frame, [f, f + 1])
        ps, pe = np.searchsorted(pr.frame, [f, f + 1])
        g_mask, p_mask = gt.present[gs:ge], pr.present[ps:pe]
        pts = np.concatenate([gt.xy[gs:ge][g_mask], pr.xy[ps:pe][p_mask]])
        if len(pts) == 0:
            continue
        inside = points_in_polygons(pts, polygons)
        n_g = int(g_mask.sum())
        g_mask[g_mask] = ~inside[:n_g]
        p_mask[p_mask] = ~inside[n_g:]


def _check_pair(gt: VideoFile, pr: VideoFile) -> None:
    if gt.n_frames != pr.n_frames:
        raise EvaluationError(
            f"{pr.path} has {pr.n_frames} frames but its GT {gt.path} has {gt.n_frames}; predictions are "
            "paired with GT frames by position: copy the GT 'images' list (or 'annolist') in its order"
        )
    for f, (a, b) in enumerate(zip(gt.frame_names, pr.frame_names, strict=True)):
        if a and b and a != b:
            log.warning(
                "%s: frame %d is %r but GT frame %d is %r (frames are paired by position)",
                pr.path,
                f,
                b,
                f,
                a,
            )
            break


def score_video(gt_file: Path, pred_file: Path) -> VideoScores:
    """Match one video's predictions to its GT and label each predicted joint."""
    gt, pr = load_video(gt_file, "gt"), load_video(pred_file, "pred")
    _check_pair(gt, pr)
    # Frames whose GT lists nobody are dropped together with their predictions (eval_helpers.cleanupData),
    # before the ignore regions are applied.
    keep = gt.n_people > 0
    new_index = np.cumsum(keep) - 1
    g_rows = np.flatnonzero(keep[gt.people.frame])
    g = gt.people.take(g_rows)
    p = pr.people.take(np.flatnonzero(keep[pr.people.frame]))
    _apply_ignore_regions(g, p, {f: r for f, r in gt.regions.items() if keep[f]})
    g_xy, g_present, _ = _first_surviving(g)
    p_xy, p_present, p_score = _first_surviving(p)
    # People without a joint left can neither match nor count; poseval drops or never matches them.
    g_idx, p_idx = np.flatnonzero(g_present.any(axis=1)), np.flatnonzero(p_present.any(axis=1))
    no_head = g_idx[np.isnan(g.head[g_idx]) & np.isin(g.frame[g_idx], p.frame[p_idx])]
    if len(no_head):
        k = int(no_head[0])
        raise DataError(
            "GT person has annotated joints but no head box, which PCKh needs",
            path=gt.path,
            record=g.record[k],
            field="bbox_head (PoseTrack2018) / x1,y1,x2,y2 (PoseTrack2017)",
        )
    correct, matched = assign_people(
        new_index[g.frame[g_idx]],
        g_xy[g_idx],
        g_present[g_idx],
        g.head[g_idx],
        new_index[p.frame[p_idx]],
        p_xy[p_idx],
        p_present[p_idx],
    )
    return VideoScores(
        p_score[p_idx],
        p_present[p_idx],
        correct,
        g_present[g_idx].sum(axis=0),
        int(keep.sum()),
        g_rows[g_idx],
        g_present[g_idx],
        matched,
    )


def _mean(values: list[float]) -> float:
    arr = np.array(values, dtype=np.float64)
    return float(np.mean(arr)) if len(arr) else float("nan")


def metrics(videos: list[VideoScores]) -> dict:
    """The report for predictions pooled over ``videos`` (in this order: it decides tie order)."""
    score = np.concatenate([v.score for v in videos])
    present = np.concatenate([v.present for v in videos])
    correct = np.concatenate([v.correct for v in videos])
    n_gt = np.sum([v.n_gt for v in videos], axis=0)
    per_joint = [
        joint_ap(score[present[:, j], j], correct[present[:, j], j], int(n_gt[j]))
        for j in range(len(PT17_NAMES))
    ]
    ap = [a for a, _, _ in per_joint]
    # Total: mean of the joint APs that are not NaN, in poseval's joint order (evaluateAP.computeMetrics).
    report: dict = {col: _mean([ap[_JOINT[n]] for n in names]) for col, names in COLUMNS.items()}
    report["Total"] = _mean([a for a in ap if not np.isnan(a)])
    report["joints"] = {
        name: dict(zip(("ap", "precision", "recall"), per_joint[_JOINT[name]], strict=True))
        for name in SCORED_NAMES
    }
    return report


def evaluate(gt_dir: str | Path, pred_dir: str | Path, per_video: bool = False) -> dict:
    """PoseTrack pose-estimation mAP of the prediction files in ``pred_dir`` against ``gt_dir``.

    Returns ``{"Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total": AP in percent,
    "joints": {name: {"ap", "precision", "recall"}}}``; with ``per_video`` also
    ``"per_video": {video stem: the same report}`` for every video with a scored frame.
    """
    pairs = pair_files(Path(gt_dir), Path(pred_dir))
    videos = [score_video(g, p) for g, p in pairs]
    report = metrics(videos)
    if per_video:
        report["per_video"] = {
            g.stem: metrics([v]) for (g, _), v in zip(pairs, videos, strict=True) if v.n_frames > 0
        }
    return report


def format_table(report: dict) -> str:
    """The standard PoseTrack table, one decimal, with a row per video when the report has them."""
    cols = [*COLUMNS, "Total"]
    rows = [(name, r) for name, r in report.get("per_video", {}).items()] + [("total", report)]
    width = max(len(name) for name, _ in rows)
    lines = [" ".join([" " * width] + [f"{c:>8}" for c in cols])]
    lines += [" ".join([f"{name:<{width}}"] + [f"{r[c]:>8.1f}" for c in cols]) for name, r in rows]
    return "\n".join(lines)
