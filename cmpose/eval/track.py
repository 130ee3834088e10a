"""PoseTrack multi-person pose tracking metrics (MOTA, MOTP, precision, recall), equal to poseval's
``--evalPoseTracking`` (leonid-pishchulin/poseval at 4258a15, evaluateTracking.py).

Every rule, including poseval's quirks, and every deliberate difference is in docs/evaluation.md
("Tracking mode"). Joint arrays use poseval's joint order (``PT17_NAMES``); reports use PoseTrack18
names. J = 15 joints, G / P GT / predicted people of a frame.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from cmpose.errors import DataError
from cmpose.eval.matching import PCKH_THRESHOLD
from cmpose.eval.posetrack import COLUMNS, pair_files
from cmpose.eval.track_load import TrackVideo, load_track_video
from cmpose.eval.track_mot import Accumulator, MotCounts
from cmpose.keypoints import PT17_NAMES, SCORED_NAMES

log = logging.getLogger(__name__)

METRICS = ("MOTA", "MOTP", "Precision", "Recall")
_COUNTS = ("objects", "hypotheses", "matches", "switches", "misses", "false_positives", "sum_d")
_JOINT = {name: j for j, name in enumerate(PT17_NAMES)}


def _check_heads(video: TrackVideo, gs: int, ge: int) -> None:
    g = video.gt
    bad = np.flatnonzero(np.isnan(g.head[gs:ge]) & g.present[gs:ge].any(axis=1))
    if len(bad):
        raise DataError(
            "GT person has annotated joints but no head box, which the joint distance needs",
            path=video.gt_path,
            record=g.record[gs + int(bad[0])],
            field="bbox_head (PoseTrack2018) / x1,y1,x2,y2 (PoseTrack2017)",
        )


def _distances(video: TrackVideo, gs: int, ge: int, ps: int, pe: int) -> np.ndarray:
    """(J, G, P) joint distance in head sizes where both joints exist and it is within PCKH_THRESHOLD
    (inclusive), NaN elsewhere (eval_helpers.assignGTmulti)."""
    g, p = video.gt, video.pred
    diff = g.xy[gs:ge, None] - p.xy[None, ps:pe]  # (G, P, J, 2)
    with np.errstate(divide="ignore", invalid="ignore"):
        dist = np.sqrt((diff * diff).sum(axis=3)) / g.head[gs:ge, None, None]
    ok = g.present[gs:ge, None] & p.present[None, ps:pe] & (dist <= PCKH_THRESHOLD)
    return np.where(ok, dist, np.nan).transpose(2, 0, 1)


def _frame(accs: list[Accumulator], d: np.ndarray, g_tid: list[int], p_tid: list[int]) -> None:
    """Feed one frame's candidate pairs, d (J, G, P), to the per-joint accumulators."""
    valid = np.isfinite(d)
    # Joints whose candidate pairs are disjoint (the common case) need no assignment solver.
    simple = (valid.sum(axis=2).max(axis=1, initial=0) <= 1) & (valid.sum(axis=1).max(axis=1, initial=0) <= 1)
    js, gs, ps = np.nonzero(valid & simple[:, None, None])
    for j, gi, pi, dist in zip(js.tolist(), gs.tolist(), ps.tolist(), d[js, gs, ps].tolist(), strict=True):
        accs[j].update_disjoint(g_tid[gi], p_tid[pi], dist)
    for j in np.flatnonzero(~simple).tolist():
        rows, cols = np.flatnonzero(valid[j].any(axis=1)), np.flatnonzero(valid[j].any(axis=0))
        accs[j].update([g_tid[i] for i in rows], [p_tid[i] for i in cols], d[j][np.ix_(rows, cols)])


def video_counts(video: TrackVideo) -> list[MotCounts]:
    """Per-joint event counts of one video, accumulated as poseval does: every evaluated frame but the
    last, one accumulator per joint."""
    accs = [Accumulator() for _ in PT17_NAMES]
    g, p = video.gt, video.pred
    if video.n_frames == 1:
        # poseval crashes (IndexError) on a video with one evaluated frame: dropping the last frame
        # leaves nothing. cmpose counts nothing for it (docs/evaluation.md).
        log.warning(
            "%s: only one evaluated frame, which poseval's tracking mode leaves out: no counts", video.name
        )
    g_start = np.searchsorted(g.frame, np.arange(video.n_frames + 1))
    p_start = np.searchsorted(p.frame, np.arange(video.n_frames + 1))
    n_joints = len(PT17_NAMES)
    objects, hyps, raw_d = np.zeros(n_joints, np.int64), np.zeros(n_joints, np.int64), np.zeros(n_joints)
    for f in range(video.n_frames):
        gs, ge, ps, pe = g_start[f], g_start[f + 1], p_start[f], p_start[f + 1]
        if ge > gs and pe > ps:
            _check_heads(video, gs, ge)  # poseval needs them on every such frame, even the last
        if f == video.n_frames - 1:
            break  # poseval leaves out each video's last evaluated frame (imgidxs[:-1])
        if ge == gs or pe == ps:
            # poseval's dummy entries: one object and one hypothesis per joint that cannot pair.
            objects += 1
            hyps += 1
            continue
        objects += g.present[gs:ge].sum(axis=0)
        hyps += p.present[ps:pe].sum(axis=0)
        d = _distances(video, gs, ge, ps, pe)
        raw_d += np.nansum(d, axis=(1, 2))  # motmetrics' raw events: every candidate pair
        _frame(accs, d, g.track_id[gs:ge].tolist(), p.track_id[ps:pe].tolist())
    for j, acc in enumerate(accs):
        acc.count(int(objects[j]), int(hyps[j]), float(raw_d[j]))
    return [acc.counts for acc in accs]


def _joint_metrics(c: MotCounts) -> dict[str, float]:
    """evaluateTracking.computeMetrics for one joint; NaN where poseval divides by zero."""
    nan = float("nan")
    det = c.matches + c.switches
    return {
        "MOTA": 100 * (1 - (c.misses + c.switches + c.false_positives) / c.objects) if c.objects else nan,
        # poseval writes 0 (not NaN) without detections.
        "MOTP": 100 * (1 - c.sum_d / det) if det else 0.0,
        "Precision": 100 * det / (det + c.false_positives) if det + c.false_positives else nan,
        "Recall": 100 * det / c.objects if c.objects else nan,
    }


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def metrics(counts: list[list[MotCounts]]) -> dict:
    """The report for per-video, per-joint counts summed over videos (``counts[v][j]``)."""
    total = [MotCounts() for _ in PT17_NAMES]
    for video in counts:
        for t, c in zip(total, video, strict=True):
            t.add(c)
    per_joint = [_joint_metrics(c) for c in total]
    report: dict = {}
    for m in METRICS:
        values = [pj[m] for pj in per_joint]
        # Columns: plain means of their joints (eval_helpers.getCum); Total: mean of the joints that
        # are not NaN, in poseval's joint order (computeMetrics).
        report[m] = {col: _mean([values[_JOINT[n]] for n in names]) for col, names in COLUMNS.items()}
        report[m]["Total"] = _mean([v for v in values if not np.isnan(v)])
    report["joints"] = {name: per_joint[_JOINT[name]] for name in SCORED_NAMES}
    report["counts"] = {name: {k: getattr(total[_JOINT[name]], k) for k in _COUNTS} for name in SCORED_NAMES}
    return report


def evaluate_tracking(gt_dir: str | Path, pred_dir: str | Path, per_video: bool = False) -> dict:
    """poseval's pose-tracking metrics of the prediction files in ``pred_dir`` against ``gt_dir``.

    Returns ``{"MOTA" | "MOTP" | "Precision" | "Recall": {"Head", ..., "Ankle", "Total": percent},
    "joints": {name: {metric: percent}}, "counts": {name: event counts}}``, NaN where poseval has NaN;
    with ``per_video`` also ``"per_video": {video stem: the same report}``.
    """
    pairs = pair_files(Path(gt_dir), Path(pred_dir))
    videos = [load_track_video(g, p) for g, p in pairs]
    counts = [video_counts(v) for v in videos]
    report = metrics(counts)
    if per_video:
        report["per_video"] = {
            v.name: metrics([c]) for v, c in zip(videos, counts, strict=True) if v.n_frames > 1
        }
    return report


def format_track_table(report: dict) -> str:
    """One row per metric (one decimal), columns Head ... Total; per-video MOTA rows when present."""
    cols = [*COLUMNS, "Total"]
    rows = [(f"MOTA {name}", r["MOTA"]) for name, r in report.get("per_video", {}).items()]
    rows += [(m, report[m]) for m in METRICS]
    width = max(len(name) for name, _ in rows)
    lines = [" ".join([" " * width] + [f"{c:>8}" for c in cols])]
    lines += [" ".join([f"{name:<{width}}"] + [f"{r[c]:>8.1f}" for c in cols]) for name, r in rows]
    return "\n".join(lines)
