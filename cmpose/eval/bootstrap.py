"""Paired cluster bootstrap of the PoseTrack mAP: confidence intervals of a model's mAP and of
the difference between two models tested on the same val set.

The unit resampled is a *video* with all its GT people and all its predictions (a cluster
bootstrap). The people of one video are not independent observations: the same person appears
in every labelled frame of the video, in the same scene, with the same motion; resampling people
or frames one by one would treat these correlated copies as independent and give intervals that
are too narrow. A video also keeps the AP well defined: its false positives stay with the GT they
failed to match. The same resample of videos is applied to both models (paired), so the variance
both share (which videos are easy) cancels in the difference.

AP is computed by the rule of :func:`cmpose.eval.ap.joint_ap` (poseval's VOC all-point AP over the
predictions of each joint ranked by score, pooled over the set). A resample that draws a video c
times counts its predictions and GT joints c times; :func:`weighted_joint_ap` evaluates that
without building the resampled arrays: with the predictions ranked once, a resample is a weight
per prediction, and the AP of the expanded list is a function of the weighted cumulative sums
(the c copies of a prediction are adjacent in the ranking; they have the same score and label, so
this is one of the orders a tie may take, and with distinct scores the only one).

Shapes: U units (videos), J joints, P predicted joints of one type, B resamples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from cmpose.eval.ap import joint_ap, rank_descending

# Resamples per chunk in the vectorised AP: bounds memory at about 6 x chunk x P numbers.
_CHUNK = 250


@dataclass(frozen=True)
class UnitScores:
    """Every predicted joint of a set, with the unit it belongs to, and the GT joints per unit.

    Attributes:
        scores: J arrays (P_j,) of the scores of the predicted joints of type j, in evaluation
            order (units in order, predictions in file order within a unit).
        correct: J arrays (P_j,) bool, the prediction is a PCKh-matched joint.
        unit: J arrays (P_j,) int, the unit of each prediction.
        n_gt: (U, J) annotated GT joints per unit.
        skip_joints_without_gt: a joint type without GT joints (in the sample, or in a resample)
            is left out of the mean (AP NaN), the rule of the per-class tables
            (``cmpose.eval.joint_classes.class_report``); False: poseval's rule, where a joint type
            without predictions scores 0.
    """

    scores: list[np.ndarray]
    correct: list[np.ndarray]
    unit: list[np.ndarray]
    n_gt: np.ndarray
    skip_joints_without_gt: bool = False

    @property
    def num_units(self) -> int:
        return int(self.n_gt.shape[0])


def from_video_scores(videos: Sequence[Any], skip_joints_without_gt: bool = False) -> UnitScores:
    """Units = videos, from :class:`cmpose.eval.posetrack.VideoScores` in evaluation order."""
    if not videos:
        raise ValueError("no videos to bootstrap over")
    J = videos[0].n_gt.shape[0]
    scores, correct, unit = [], [], []
    for j in range(J):
        sel = [v.present[:, j] for v in videos]
        scores.append(np.concatenate([v.score[s, j] for v, s in zip(videos, sel, strict=True)]))
        correct.append(np.concatenate([v.correct[s, j] for v, s in zip(videos, sel, strict=True)]))
        unit.append(np.concatenate([np.full(int(s.sum()), u, np.int64) for u, s in enumerate(sel)]))
    n_gt = np.stack([np.asarray(v.n_gt, np.int64) for v in videos])
    return UnitScores(scores, correct, unit, n_gt, skip_joints_without_gt)


def _total(ap: np.ndarray) -> np.ndarray:
    """Mean over the last axis (joints, in poseval's order) of the APs that are not NaN, as
    ``cmpose.eval.posetrack.metrics``' Total; NaN where every joint is NaN."""
    ok = ~np.isnan(ap)
    n = ok.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, np.where(ok, ap, 0.0).sum(axis=-1) / n, np.nan)


def sample_map(us: UnitScores) -> float:
    """The mAP (Total, percent) of the whole sample, computed exactly as the evaluator does."""
    n_gt = us.n_gt.sum(axis=0)
    ap = [joint_ap(s, c, int(n_gt[j]))[0] for j, (s, c) in enumerate(zip(us.scores, us.correct, strict=True))]
    if us.skip_joints_without_gt:
        ap = [float("nan") if n_gt[j] == 0 else a for j, a in enumerate(ap)]
    good = [a for a in ap if not np.isnan(a)]
    # np.mean over the list, as posetrack._mean: the same summation, so the same bits.
    return float(np.mean(np.array(good, dtype=np.float64))) if good else float("nan")


def resample_counts(num_units: int, num_boot: int, seed: int) -> np.ndarray:
    """(B, U) how often each unit is drawn in each of ``num_boot`` resamples with replacement."""
    if num_units < 1 or num_boot < 1:
        raise ValueError(f"need at least one unit and one resample, got {num_units} and {num_boot}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, num_units, size=(num_boot, num_units))
    flat = idx + num_units * np.arange(num_boot)[:, None]
    counts = np.bincount(flat.ravel(), minlength=num_boot * num_units).reshape(num_boot, num_units)
    return counts.astype(np.int32)  # less memory traffic in the gathers than int64


def weighted_joint_ap(
    scores: np.ndarray, correct: np.ndarray, unit: np.ndarray, n_gt: np.ndarray, counts: np.ndarray
) -> np.ndarray:
    """(B,) AP in percent of one joint in each resample.

    Args:
        scores, correct, unit: (P,) the predicted joints of this type (see ``UnitScores``).
        n_gt: (U,) GT joints of this type per unit.
        counts: (B, U) draws of each unit per resample (``resample_counts``).

    Follows ``joint_ap``: no prediction gives 0; predictions without GT give NaN. With unit weights
    it equals ``joint_ap`` up to float rounding (the sums run in another order).
    """
    counts = np.asarray(counts)
    B = counts.shape[0]
    gt = counts @ np.asarray(n_gt, np.float64)  # (B,)
    out = np.zeros(B)
    if len(scores) == 0:
        return out
    order = rank_descending(np.asarray(scores))
    label = np.asarray(correct, bool)[order]
    u = np.asarray(unit)[order]
    u_tp = u[label]
    # A resample without any prediction of this joint scores 0, as joint_ap.
    has_pred = counts @ np.bincount(u, minlength=counts.shape[1]) > 0  # (B,)
    for b0 in range(0, B, _CHUNK):
        c = counts[b0 : b0 + _CHUNK]
        # Predictions drawn up to each rank, read at the correct ones; correct ones drawn up to
        # each correct one (integer sums: exact).
        n = np.cumsum(c[:, u], axis=1)[:, label]  # (b, P_T)
        w = c[:, u_tp]  # (b, P_T) copies of each correct prediction
        tp = np.cumsum(w, axis=1)
        # VOC AP: each drawn copy of a correct prediction raises recall by 1 / gt, times the
        # precision envelope there. A false positive's precision never exceeds that of the position
        # before it, so the envelope at a correct prediction is the largest precision of the
        # correct ones from it on; within a run of c copies the precision rises, so all c share the
        # envelope of the run's end, which is tp / n at that prediction.
        with np.errstate(invalid="ignore", divide="ignore"):
            prec = np.where(w > 0, tp / n, 0.0)
            env = np.maximum.accumulate(prec[:, ::-1], axis=1)[:, ::-1]
            g = gt[b0 : b0 + _CHUNK]
            ap = np.where(g > 0, 100.0 * (w * env).sum(axis=1) / g, np.nan)
        out[b0 : b0 + _CHUNK] = np.where(has_pred[b0 : b0 + _CHUNK], ap, 0.0)
    return out


def bootstrap_map(us: UnitScores, counts: np.ndarray) -> np.ndarray:
    """(B,) mAP (Total, percent) of each resample."""
    if counts.shape[1] != us.num_units:
        raise ValueError(f"resample counts cover {counts.shape[1]} units, the scores {us.num_units}")
    ap = np.stack(
        [
            weighted_joint_ap(s, c, u, us.n_gt[:, j], counts)
            for j, (s, c, u) in enumerate(zip(us.scores, us.correct, us.unit, strict=True))
        ],
        axis=1,
    )  # (B, J)
    if us.skip_joints_without_gt:
        ap[counts @ us.n_gt == 0] = np.nan
    return _total(ap)


def _check_paired(samples: Sequence[UnitScores]) -> None:
    first = samples[0].n_gt
    for s in samples[1:]:
        if s.n_gt.shape != first.shape or not np.array_equal(s.n_gt, first):
            raise ValueError(
                "paired bootstrap: the samples are not on the same GT units "
                f"({s.n_gt.shape[0]} vs {first.shape[0]} units, or other GT joint counts)"
            )


def percentile_interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """The percentile interval of the resampled statistic (resamples with a NaN left out)."""
    v = np.asarray(values, np.float64)
    v = v[~np.isnan(v)]
    if len(v) == 0:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def map_interval(
    seeds: Sequence[UnitScores], num_boot: int = 1000, seed: int = 0, level: float = 0.95
) -> dict[str, Any]:
    """The mean mAP over training seeds with its bootstrap interval over the val units (one
    resample of units for all seeds: the val set is the same), and the per-seed values."""
    _check_paired(seeds)
    per_seed = [sample_map(s) for s in seeds]
    counts = resample_counts(seeds[0].num_units, num_boot, seed)
    boot = np.mean([bootstrap_map(s, counts) for s in seeds], axis=0)
    lo, hi = percentile_interval(boot, level)
    return {"mean": float(np.mean(per_seed)), "low": lo, "high": hi, "per_seed": per_seed}


def paired_difference(
    x: Sequence[UnitScores],
    y: Sequence[UnitScores],
    num_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> dict[str, Any]:
    """mAP(x) - mAP(y), averaged over training seeds, with its paired bootstrap interval.

    ``x[s]`` and ``y[s]`` are the two models of training seed s, tested on the same val set. Each
    resample draws the val units once and applies the draw to every model of every seed; its
    statistic is the mean over seeds of the difference. The interval so covers the val-set
    sampling of the seed-averaged difference; the spread across seeds is ``per_seed``.
    """
    if len(x) != len(y) or not x:
        raise ValueError(f"paired difference needs the same seeds on both sides, got {len(x)} and {len(y)}")
    _check_paired([*x, *y])
    counts = resample_counts(x[0].num_units, num_boot, seed)
    return difference_from_resamples(
        [sample_map(a) for a in x],
        [sample_map(b) for b in y],
        np.stack([bootstrap_map(a, counts) for a in x]),
        np.stack([bootstrap_map(b, counts) for b in y]),
        level,
    )


def difference_from_resamples(
    point_x: Sequence[float],
    point_y: Sequence[float],
    boot_x: np.ndarray,
    boot_y: np.ndarray,
    level: float = 0.95,
    seed_boot_seed: int = 0,
) -> dict[str, Any]:
    """``paired_difference`` from precomputed statistics: the full-sample mAPs per seed (S,) and
    the resampled ones (S, B), all computed with one ``resample_counts`` draw (that makes it
    paired). Lets a report resample each model once and compare it with several others.
    ``seeds_low``/``seeds_high`` widen the interval by the seeds' spread (``resample_seeds``,
    its seed draw seeded by ``seed_boot_seed``)."""
    per_seed = [float(a - b) for a, b in zip(point_x, point_y, strict=True)]
    boot_x, boot_y = np.atleast_2d(boot_x), np.atleast_2d(boot_y)
    if boot_x.shape != boot_y.shape or boot_x.shape[0] != len(per_seed):
        raise ValueError(
            f"resampled statistics of shapes {boot_x.shape} and {boot_y.shape} for {len(per_seed)} seeds"
        )
    lo, hi = percentile_interval((boot_x - boot_y).mean(axis=0), level)
    seeds_lo, seeds_hi = percentile_interval(resample_seeds(boot_x - boot_y, seed_boot_seed), level)
    return {
        "diff": float(np.mean(per_seed)),
        "low": lo,
        "high": hi,
        "seeds_low": seeds_lo,
        "seeds_high": seeds_hi,
        "per_seed": per_seed,
        "num_boot": int(boot_x.shape[1]),
        "level": level,
    }


def resample_seeds(boot: np.ndarray, seed: int = 0) -> np.ndarray:
    """Two-level (hierarchical) bootstrap of a seed-averaged statistic: ``boot`` (S, B) holds
    each training seed's statistic under B resamples of the val units; resample b also draws S
    seeds with replacement and averages their b-th values. The interval of the result covers
    the training's variance across seeds as well as the val-set sampling (as in Saravanan et
    al., "Application of the hierarchical bootstrap to multi-level data", 2020). With one seed
    it is the plain resample; with 3 seeds the seed draw is coarse (10 distinct multisets), so
    read it as a check on the plain interval, not as a finer one. Returns (B,)."""
    boot = np.atleast_2d(np.asarray(boot, np.float64))
    S, B = boot.shape
    if S == 1:
        return boot[0]
    pick = np.random.default_rng(seed).integers(0, S, size=(B, S))  # (B, S) seed indices
    return boot[pick, np.arange(B)[:, None]].mean(axis=1)


def seeds_effect(result: dict[str, Any]) -> dict[str, Any]:
    """A ``difference_from_resamples`` result with its seed-and-val interval as the interval."""
    return {**result, "low": result["seeds_low"], "high": result["seeds_high"]}


def effect_words(result: dict[str, Any]) -> str:
    """``+1.2 [0.3, 2.1]``, or with "no measurable effect" when the interval includes 0."""
    text = f"{result['diff']:+.1f} [{result['low']:+.1f}, {result['high']:+.1f}]"
    if not (result["low"] > 0 or result["high"] < 0):
        text += " no measurable effect"
    return text
