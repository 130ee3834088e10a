"""One-Euro keypoint smoothing (cmpose.infer.smooth)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cmpose.infer.smooth import KeypointSmoother, OneEuroFilter, one_euro_alpha, parse_smooth_params
from cmpose.infer.video import FrameResult, PersonPose

FPS = 25.0


def _run(f: OneEuroFilter, xs: np.ndarray, scale: float = 1.0) -> np.ndarray:
    return np.array([f(np.array([x]), i / FPS, scale)[0] for i, x in enumerate(xs)])


def test_alpha_matches_the_first_order_filter() -> None:
    # tau = 1 / (2 pi fc); alpha = 1 / (1 + tau / dt)
    assert one_euro_alpha(1.0, 0.04) == pytest.approx(1 / (1 + 1 / (2 * np.pi * 0.04)))
    assert one_euro_alpha(1e6, 0.04) == pytest.approx(1.0, abs=1e-4)


def test_constant_signal_is_unchanged() -> None:
    out = _run(OneEuroFilter(1.0, 0.5), np.full(50, 123.4))
    np.testing.assert_allclose(out, 123.4)


def test_step_is_followed_with_lag() -> None:
    xs = np.r_[np.zeros(10), np.full(40, 10.0)]
    out = _run(OneEuroFilter(1.0, 0.0), xs)
    assert out[10] < 5.0  # lags right after the step
    assert np.all(np.diff(out[10:]) >= 0)  # approaches monotonically, no overshoot
    assert 9.9 < out[-1] <= 10.0  # and gets there


def test_high_frequency_noise_variance_is_reduced() -> None:
    rng = np.random.default_rng(0)
    noise = rng.normal(0, 2.0, 400)
    out = _run(OneEuroFilter(1.0, 0.5), 100 + noise, scale=100.0)
    assert np.var(out[20:]) < 0.2 * np.var(noise[20:])


def test_beta_reduces_lag_on_fast_motion() -> None:
    xs = 200.0 * np.arange(50) / FPS  # 200 px/s ramp
    slow = _run(OneEuroFilter(1.0, 0.0), xs, scale=100.0)
    fast = _run(OneEuroFilter(1.0, 2.0), xs, scale=100.0)
    lag0, lag1 = xs[-1] - slow[-1], xs[-1] - fast[-1]
    assert lag0 > 0 and 0 <= lag1 < 0.5 * lag0


def test_speed_scale_makes_beta_size_invariant() -> None:
    xs = 50.0 * np.arange(30) / FPS
    small = _run(OneEuroFilter(1.0, 1.0), xs, scale=50.0)
    big = _run(OneEuroFilter(1.0, 1.0), 4 * xs, scale=200.0)  # 4x larger person, 4x the pixels
    np.testing.assert_allclose(4 * small, big, rtol=1e-9)


def test_bad_parameters_are_rejected() -> None:
    with pytest.raises(ValueError):
        OneEuroFilter(0.0, 0.5)
    with pytest.raises(ValueError):
        OneEuroFilter(1.0, -1.0)
    with pytest.raises(ValueError):
        KeypointSmoother(fps=0.0)


def _kp(value: float) -> np.ndarray:
    return np.full((17, 2), value)


def test_tracks_do_not_mix() -> None:
    both = KeypointSmoother(FPS, 1.0, 0.0)
    alone = KeypointSmoother(FPS, 1.0, 0.0)
    rng = np.random.default_rng(1)
    for i in range(20):
        a, b = _kp(10 + rng.normal()), _kp(500 + 30 * rng.normal())
        out = both.smooth(i, [1, 2], [a, b], [100.0, 100.0])
        ref = alone.smooth(i, [1], [a], [100.0])
        np.testing.assert_allclose(out[0], ref[0])
    assert both.num_tracks == 2


def test_new_track_id_starts_fresh() -> None:
    s = KeypointSmoother(FPS, 1.0, 0.0)
    for i in range(10):
        s.smooth(i, [1], [_kp(0.0)], [100.0])
    out = s.smooth(10, [1, 7], [_kp(100.0), _kp(100.0)], [100.0, 100.0])
    assert np.all(out[0] < 50)  # the old track lags towards its new position
    np.testing.assert_allclose(out[1], 100.0)  # the new one starts where it is


def test_unseen_tracks_are_forgotten() -> None:
    s = KeypointSmoother(FPS, forget_after=1.0)
    s.smooth(0, [1], [_kp(0.0)], [100.0])
    s.smooth(10, [2], [_kp(0.0)], [100.0])
    assert s.num_tracks == 2
    s.smooth(40, [2], [_kp(0.0)], [100.0])  # track 1 unseen for 1.6 s
    assert s.num_tracks == 1
    out = s.smooth(41, [1], [_kp(50.0)], [100.0])
    np.testing.assert_allclose(out[0], 50.0)  # came back fresh


def test_frame_result_is_smoothed_in_place() -> None:
    s = KeypointSmoother(FPS, 1.0, 0.0)
    people = [PersonPose(3, np.array([0, 0, 50, 100.0]), _kp(0.0).astype(np.float32), np.ones(17))]
    s(FrameResult(0, np.zeros((4, 4, 3), np.uint8), people))
    people[0].keypoints = _kp(10.0).astype(np.float32)
    s(FrameResult(1, np.zeros((4, 4, 3), np.uint8), people))
    assert people[0].keypoints.dtype == np.float32
    assert np.all((people[0].keypoints > 0) & (people[0].keypoints < 10))


def test_parse_smooth_params() -> None:
    assert parse_smooth_params("1.5, 0.2") == (1.5, 0.2)
    for bad in ["1", "a,b", "0,1", "1,-1", "1,2,3"]:
        with pytest.raises(ValueError):
            parse_smooth_params(bad)


def test_run_video_hook_writes_smoothed_keypoints(tmp_path: Path) -> None:
    """``run_video(smoother=...)`` changes the keypoints before the JSON lines are written: the
    written stream equals the raw stream filtered by the same smoother."""
    import cv2

    from cmpose.infer.video_io import run_video

    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(8):
        cv2.imwrite(str(frames / f"{i:06d}.png"), np.full((64, 96, 3), 40 * (i % 4), np.uint8))
    rng = np.random.default_rng(3)
    raw = {i: 30 + rng.normal(0, 2.0, (17, 2)) for i in range(8)}

    class NoisyRunner:
        stats: dict = {}

        def run(self, stream):  # noqa: ANN001, ANN202
            for i, frame, tracked in stream:
                people = [PersonPose(t.track_id, t.box, raw[i].copy(), np.ones(17)) for t in tracked]
                yield FrameResult(i, frame, people)

    def boxes(i: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.array([[20.0, 10.0, 30.0, 40.0]]), np.array([0.9])

    def written(name: str, smoother: KeypointSmoother | None) -> list[np.ndarray]:
        out = tmp_path / f"{name}.jsonl"
        run_video(
            frames, tmp_path / f"{name}.mp4", out, NoisyRunner(), boxes, smoother=smoother, progress=False
        )
        lines = [json.loads(s) for s in out.read_text().splitlines()]
        return [np.array(line["people"][0]["keypoints"]) for line in lines]

    plain = written("plain", None)
    smooth = written("smooth", KeypointSmoother(FPS, 1.0, 0.0))
    np.testing.assert_allclose(plain, [raw[i] for i in range(8)], atol=0.01)
    ref = KeypointSmoother(FPS, 1.0, 0.0)
    expected = [ref.smooth(i, [0], [raw[i]], [40.0])[0] for i in range(8)]
    np.testing.assert_allclose(smooth, expected, atol=0.01)
    assert np.abs(np.diff(smooth, 2, axis=0)).mean() < 0.5 * np.abs(np.diff(plain, 2, axis=0)).mean()
