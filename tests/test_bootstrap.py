"""The paired cluster bootstrap of the PoseTrack mAP (cmpose.eval.bootstrap)."""

from __future__ import annotations

import numpy as np
import pytest

from cmpose.eval.ap import joint_ap
from cmpose.eval.bootstrap import (
    UnitScores,
    bootstrap_map,
    effect_words,
    from_video_scores,
    map_interval,
    paired_difference,
    resample_counts,
    resample_seeds,
    sample_map,
    seeds_effect,
    weighted_joint_ap,
)
from cmpose.eval.posetrack import VideoScores, metrics

J = 15


def make_videos(seed: int, n_videos: int = 30, skill: float = 0.6, gt_seed: int = 0) -> list[VideoScores]:
    """Random scored videos; the GT counts depend only on ``gt_seed`` (one val set), the
    predictions on ``seed``; ``skill`` is the chance that a predicted joint is correct."""
    gt_rng = np.random.default_rng(gt_seed)
    rng = np.random.default_rng(seed)
    videos = []
    for _ in range(n_videos):
        people = int(gt_rng.integers(1, 5))
        n_gt = gt_rng.integers(0, people + 1, size=J)
        M = people + int(rng.integers(0, 3))  # some false positives
        present = rng.random((M, J)) < 0.9
        correct = present & (rng.random((M, J)) < skill)
        # correct joints tend to score higher, as a useful model's do
        score = np.clip(rng.normal(0.4 + 0.3 * correct, 0.15), 0, 1)
        # a correct joint matches a GT joint: no more correct ones than GT joints
        correct &= np.cumsum(correct, axis=0) <= n_gt
        videos.append(VideoScores(score, present, correct, n_gt, n_frames=people))
    return videos


def test_sample_map_is_the_evaluators_map_exactly() -> None:
    for seed in range(5):
        videos = make_videos(seed)
        assert sample_map(from_video_scores(videos)) == metrics(videos)["Total"]
        assert 0.0 < metrics(videos)["Total"] < 100.0


def test_weighted_ap_with_unit_weights_is_joint_ap() -> None:
    us = from_video_scores(make_videos(3))
    ones = np.ones((1, us.num_units), np.int64)
    for j in range(J):
        ref = joint_ap(us.scores[j], us.correct[j], int(us.n_gt[:, j].sum()))[0]
        got = weighted_joint_ap(us.scores[j], us.correct[j], us.unit[j], us.n_gt[:, j], ones)[0]
        assert got == pytest.approx(ref, abs=1e-9) or (np.isnan(ref) and np.isnan(got))
    assert bootstrap_map(us, ones)[0] == pytest.approx(sample_map(us), abs=1e-9)


def test_weighted_ap_equals_the_ap_of_the_resampled_set() -> None:
    """A resample drawing units several times is evaluated as the concatenation of those units."""
    videos = make_videos(7, n_videos=12)
    us = from_video_scores(videos)
    counts = resample_counts(us.num_units, 20, seed=1)
    boot = bootstrap_map(us, counts)
    for b in range(20):
        drawn = [videos[u] for u in range(len(videos)) for _ in range(counts[b, u])]
        assert boot[b] == pytest.approx(metrics(drawn)["Total"], abs=1e-9)


def test_edge_cases_follow_joint_ap() -> None:
    counts = np.array([[1, 1], [2, 0], [0, 2]])
    # no prediction at all: 0
    assert np.array_equal(weighted_joint_ap(np.array([]), np.array([], bool), np.array([], int),
                                            np.array([1, 1]), counts), np.zeros(3))  # fmt: skip
    # predictions only in unit 0, GT only in unit 1: the draw without unit 1 has no GT -> NaN;
    # the draw without unit 0 has no prediction -> 0
    ap = weighted_joint_ap(np.array([0.9]), np.array([False]), np.array([0]), np.array([0, 1]), counts)
    assert ap[0] == 0.0 and np.isnan(ap[1]) and ap[2] == 0.0


def test_resample_counts() -> None:
    c = resample_counts(7, 50, seed=3)
    assert c.shape == (50, 7) and (c.sum(axis=1) == 7).all() and (c >= 0).all()
    assert np.array_equal(c, resample_counts(7, 50, seed=3))
    assert not np.array_equal(c, resample_counts(7, 50, seed=4))
    with pytest.raises(ValueError):
        resample_counts(0, 5, 0)


def test_a_variant_against_itself_is_exactly_zero() -> None:
    seeds = [from_video_scores(make_videos(s)) for s in range(3)]
    r = paired_difference(seeds, seeds, num_boot=200, seed=0)
    assert r["diff"] == 0.0 and r["low"] == 0.0 and r["high"] == 0.0
    assert "no measurable effect" in effect_words(r)


def test_a_better_variant_gets_an_interval_above_zero() -> None:
    good = [from_video_scores(make_videos(s, n_videos=60, skill=0.8)) for s in range(3)]
    bad = [from_video_scores(make_videos(10 + s, n_videos=60, skill=0.5)) for s in range(3)]
    r = paired_difference(good, bad, num_boot=300, seed=0)
    assert r["low"] > 0 and r["low"] <= r["diff"] <= r["high"]
    assert len(r["per_seed"]) == 3 and all(d > 0 for d in r["per_seed"])
    assert "no measurable effect" not in effect_words(r)
    back = paired_difference(bad, good, num_boot=300, seed=0)
    assert back["high"] < 0 and back["diff"] == pytest.approx(-r["diff"])


def test_close_variants_are_no_measurable_effect() -> None:
    # two seeds' draws of the same skill: their difference is noise
    a = [from_video_scores(make_videos(s, n_videos=40, skill=0.6)) for s in range(2)]
    b = [from_video_scores(make_videos(20 + s, n_videos=40, skill=0.6)) for s in range(2)]
    r = paired_difference(a, b, num_boot=300, seed=0)
    assert r["low"] < 0 < r["high"]


def test_the_seed_resample_widens_the_interval_by_the_seed_spread() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0.0, 0.1, size=(1, 400))  # the val-set sampling, shared by the seeds
    # Seeds that agree: the seed draw changes nothing.
    agree = resample_seeds(np.repeat(1.0 + noise, 3, axis=0), seed=0)
    np.testing.assert_allclose(agree, 1.0 + noise[0])
    # One seed: the plain resample.
    np.testing.assert_array_equal(resample_seeds(1.0 + noise, seed=0), 1.0 + noise[0])
    # Seeds at +3, 0, -3 (mean 0): the plain interval is narrow around 0, the seed-and-val one
    # reaches beyond +-1.5 (a draw of seeds (+3, +3, 0) has mean 2).
    spread = np.array([[3.0], [0.0], [-3.0]]) + noise
    plain = np.percentile(spread.mean(axis=0), [2.5, 97.5])
    lo, hi = np.percentile(resample_seeds(spread, seed=0), [2.5, 97.5])
    assert plain[1] - plain[0] < 0.5
    assert lo < -1.5 and hi > 1.5
    # Deterministic by its seed.
    np.testing.assert_array_equal(resample_seeds(spread, seed=4), resample_seeds(spread, seed=4))


def test_a_difference_carries_both_intervals() -> None:
    good = [from_video_scores(make_videos(s, n_videos=60, skill=0.8)) for s in range(3)]
    bad = [from_video_scores(make_videos(10 + s, n_videos=60, skill=0.5)) for s in range(3)]
    r = paired_difference(good, bad, num_boot=300, seed=0)
    both = seeds_effect(r)
    assert both["low"] == r["seeds_low"] and both["high"] == r["seeds_high"]
    assert r["seeds_low"] <= r["diff"] <= r["seeds_high"]
    assert r["seeds_low"] > 0  # every seed's model is far better


def test_map_interval_brackets_the_mean() -> None:
    seeds = [from_video_scores(make_videos(s, n_videos=40)) for s in range(3)]
    r = map_interval(seeds, num_boot=300, seed=0)
    assert r["low"] < r["mean"] < r["high"]
    assert r["mean"] == pytest.approx(np.mean(r["per_seed"]))


def test_unpaired_samples_are_refused() -> None:
    a = from_video_scores(make_videos(0, n_videos=10))
    b = from_video_scores(make_videos(0, n_videos=11))
    with pytest.raises(ValueError, match="same GT units"):
        paired_difference([a], [b], num_boot=10)
    with pytest.raises(ValueError, match="same seeds"):
        paired_difference([a], [a, a], num_boot=10)
    other_gt = from_video_scores(make_videos(0, n_videos=10, gt_seed=5))
    with pytest.raises(ValueError, match="same GT units"):
        paired_difference([a], [other_gt], num_boot=10)
    assert isinstance(a, UnitScores)


def test_the_per_class_rule_leaves_out_joint_types_without_gt() -> None:
    """As cmpose.eval.joint_classes.class_report: a joint type with no GT joint of the class is
    left out of the mean, in the sample and in every resample (poseval's rule would score it 0)."""
    from cmpose.eval.joint_classes import class_report

    videos = make_videos(4, n_videos=12)
    for i, v in enumerate(videos):
        v.n_gt[0] = 0  # no GT of joint 0 anywhere, and no prediction of it
        v.present[:, 0] = v.correct[:, 0] = False
        if i % 2:  # joint 1 only in the even videos: some resamples draw none of them
            v.n_gt[1] = 0
            v.present[:, 1] = v.correct[:, 1] = False
    skip = from_video_scores(videos, skip_joints_without_gt=True)
    assert sample_map(skip) == class_report(videos)["Total"]
    assert sample_map(from_video_scores(videos)) == metrics(videos)["Total"] < sample_map(skip)
    # 40 random resamples and one that draws only odd videos (no GT of joint 1 at all)
    odd_only = np.zeros((1, skip.num_units), np.int32)
    odd_only[0, 1::2] = 2
    counts = np.vstack([resample_counts(skip.num_units, 40, seed=2), odd_only])
    boot = bootstrap_map(skip, counts)
    for b in range(41):
        drawn = [videos[u] for u in range(len(videos)) for _ in range(counts[b, u])]
        assert boot[b] == pytest.approx(class_report(drawn)["Total"], abs=1e-9)
    # there, poseval's rule would count joint 1 as 0 and lower the mean
    assert bootstrap_map(from_video_scores(videos), odd_only)[0] < boot[-1]
