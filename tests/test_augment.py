"""Tests for cmpose.data.augment: parameter draws, half-body regions and colour jitter."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cmpose.data.augment import AugmentParams, color_normalize, draw_augment, half_body_region
from cmpose.data.config import AugmentConfig
from cmpose.keypoints import JOINT_INDEX, NUM_JOINTS

MEAN = np.array([0.485, 0.456, 0.406], np.float32)
STD = np.array([0.229, 0.224, 0.225], np.float32)
GRAY_RGB = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, R, G, B


class FixedRng:
    """Stands in for the Generator where only ``random()`` is used: returns the given value."""

    def __init__(self, value: float) -> None:
        self.value = value

    def random(self) -> float:
        return self.value


# --- draw_augment --------------------------------------------------------------------------------


def _draws(cfg: AugmentConfig, n: int, seed: int = 0) -> list[AugmentParams]:
    rng = np.random.default_rng(seed)
    return [draw_augment(cfg, rng) for _ in range(n)]


def test_draw_augment_ranges_and_frequencies():
    cfg = AugmentConfig()  # flip 0.5, rotation 40 with p 0.6, scale 0.5, half-body 0.3, jitter 0.2
    n = 4000
    ps = _draws(cfg, n)
    scale = np.array([p.scale for p in ps])
    rot = np.array([p.rotation for p in ps])
    assert scale.min() >= 1 - cfg.scale and scale.max() <= 1 + cfg.scale
    # A normal draw clipped at +-1 sd: P(|z| > 1) = 0.3173, half at each bound.
    at_bounds = np.isclose(scale, 1 - cfg.scale) | np.isclose(scale, 1 + cfg.scale)
    assert abs(at_bounds.mean() - 0.3173) < 0.035
    assert (scale == 1 - cfg.scale).any() and (scale == 1 + cfg.scale).any()

    assert np.abs(rot).max() <= 2 * cfg.rotation
    rotated = rot != 0.0
    # P(rotate) = 0.6; binomial sd for n = 4000 is 0.0077.
    assert abs(rotated.mean() - cfg.rotation_prob) < 0.035
    # Rotated draws are N(0, 40) clipped at +-80: sd just under 40, about 4.6 % at the bounds.
    assert 36.0 < rot[rotated].std() < 41.0
    assert abs(np.mean(np.abs(rot[rotated]) == 2 * cfg.rotation) - 0.0455) < 0.02

    flips = np.array([p.flip for p in ps])
    half = np.array([p.half_body for p in ps])
    assert abs(flips.mean() - cfg.flip_prob) < 0.035
    assert abs(half.mean() - cfg.half_body_prob) < 0.035
    for name, width in (("brightness", 0.2), ("contrast", 0.2), ("saturation", 0.2)):
        v = np.array([getattr(p, name) for p in ps])
        assert v.min() >= 1 - width and v.max() <= 1 + width, name
        assert abs(v.mean() - 1.0) < 0.01, name  # uniform around 1
        assert v.max() - v.min() > 1.8 * width, name  # fills the range


def test_draw_augment_switched_off_is_identity():
    cfg = AugmentConfig.disabled()
    assert cfg.rotation == 40.0  # a range that is never drawn
    for p in _draws(cfg, 200):
        assert p == AugmentParams()


def test_draw_augment_always_flip_and_rotate():
    cfg = AugmentConfig(flip_prob=1.0, rotation_prob=1.0, half_body_prob=1.0, rotation=10.0)
    ps = _draws(cfg, 300, seed=3)
    assert all(p.flip and p.half_body for p in ps)
    rot = np.array([p.rotation for p in ps])
    assert (rot != 0).all() and np.abs(rot).max() <= 20.0
    assert (rot > 0).any() and (rot < 0).any()


def test_draw_augment_is_deterministic_in_the_generator():
    cfg = AugmentConfig()
    assert _draws(cfg, 50, seed=11) == _draws(cfg, 50, seed=11)
    assert _draws(cfg, 50, seed=11) != _draws(cfg, 50, seed=12)


def test_augment_params_default_is_identity():
    p = AugmentParams()
    assert dataclasses.astuple(p) == (1.0, 0.0, False, False, 1.0, 1.0, 1.0, (0.0, 0.0))


def test_draw_augment_shift_range_and_probability():
    cfg = dataclasses.replace(AugmentConfig.disabled(), shift=0.16, shift_prob=0.3)
    s = np.array([p.shift for p in _draws(cfg, 4000, seed=5)])  # (draws, 2)
    moved = np.any(s != 0, axis=1)
    assert abs(moved.mean() - 0.3) < 0.03
    assert np.abs(s).max() <= 0.16 and np.abs(s[moved]).max() > 0.15  # fills +-0.16
    assert abs(s[moved].mean()) < 0.01  # centred: no drift of the crop


def test_draw_augment_without_shift_keeps_the_random_stream():
    # A config with shift 0 draws nothing for it, so older configs replay the same augmentation.
    a, b = np.random.default_rng(3), np.random.default_rng(3)
    pa = draw_augment(AugmentConfig(), a)
    pb = draw_augment(AugmentConfig(shift_prob=1.0), b)
    assert pa == pb and a.random() == b.random()


@pytest.mark.parametrize("field,value", [("shift", 1.0), ("shift", -0.1), ("shift_prob", 1.5)])
def test_shift_config_is_validated(field: str, value: float):
    with pytest.raises(ValueError, match=field):
        AugmentConfig(**{field: value})


# --- half_body_region ----------------------------------------------------------------------------


def _person(points: dict[str, tuple[float, float]]) -> np.ndarray:
    kps = np.zeros((NUM_JOINTS, 3))
    for name, (x, y) in points.items():
        kps[JOINT_INDEX[name]] = (x, y, 1.0)
    return kps


# A standing person, left-right symmetric; each half's mean is near the middle of its extent.
FULL = {
    "nose": (100, 40),
    "head_bottom": (100, 60),
    "head_top": (100, 20),
    "left_shoulder": (80, 70),
    "right_shoulder": (120, 70),
    "left_elbow": (70, 100),
    "right_elbow": (130, 100),
    "left_wrist": (60, 130),
    "right_wrist": (140, 130),
    "left_hip": (85, 150),
    "right_hip": (115, 150),
    "left_knee": (85, 200),
    "right_knee": (115, 200),
    "left_ankle": (85, 250),
    "right_ankle": (115, 250),
}
UPPER_NAMES = [n for n in FULL if "hip" not in n and "knee" not in n and "ankle" not in n]
LOWER_NAMES = [n for n in FULL if n not in UPPER_NAMES]


def _check_region(region, names, aspect, padding):
    assert region is not None
    centre, size = region
    pts = np.array([FULL[n] for n in names], float)
    np.testing.assert_allclose(centre, (pts.min(0) + pts.max(0)) / 2, rtol=0, atol=1e-12)
    assert size[0] / size[1] == pytest.approx(aspect, rel=1e-12)
    w, h = pts.max(0) - pts.min(0)
    # Exactly one side is the padded extent, the other was grown to the aspect.
    expect_h = max(h, w / aspect) * padding
    assert size[1] == pytest.approx(expect_h, rel=1e-12)
    # Every chosen joint lies inside the box (see test_half_body_box_contains_skewed_joints).
    lo, hi = centre - size / 2, centre + size / 2
    assert (pts >= lo).all() and (pts <= hi).all()
    return centre, size


@pytest.mark.parametrize("aspect", [0.75, 1.0, 2.0])
def test_half_body_upper(aspect):
    region = half_body_region(_person(FULL), aspect, 1.5, 8, FixedRng(0.1))
    centre, size = _check_region(region, UPPER_NAMES, aspect, 1.5)
    # Upper body: 9 joints, x 60..140 (80), y 20..130 (110): extent centre (100, 75).
    np.testing.assert_allclose(centre, [100.0, 75.0], rtol=0, atol=1e-12)
    assert size[1] == pytest.approx(max(110, 80 / aspect) * 1.5)


@pytest.mark.parametrize("aspect", [0.75, 1.0])
def test_half_body_lower(aspect):
    region = half_body_region(_person(FULL), aspect, 1.25, 8, FixedRng(0.9))
    centre, size = _check_region(region, LOWER_NAMES, aspect, 1.25)
    np.testing.assert_allclose(centre, [100.0, 200.0], rtol=0, atol=1e-12)
    # Lower body spans x 85..115 (30), y 150..250 (100): height decides.
    assert size[1] == pytest.approx(125.0) and size[0] == pytest.approx(125.0 * aspect)


def test_half_body_box_contains_skewed_joints():
    # HRNet's half_body_transform centres on the mean of the chosen joints: with skewed joints
    # (five near y = 100, one ankle at 200) the mean is 120 and its x1.5 box (y 45..195) misses
    # that ankle. cmpose centres on the extent's middle (150), so the box (y 75..225) holds it.
    pts = {
        "left_hip": (85, 100),
        "right_hip": (115, 100),
        "left_knee": (85, 105),
        "right_knee": (115, 105),
        "left_ankle": (85, 110),
        "right_ankle": (115, 200),
    }
    kps = _person({**{n: FULL[n] for n in UPPER_NAMES}, **pts})
    centre, size = half_body_region(kps, 0.75, 1.5, 8, FixedRng(0.9))
    np.testing.assert_allclose(centre, [100.0, 150.0], rtol=0, atol=1e-12)
    np.testing.assert_allclose(size, [112.5, 150.0], rtol=1e-12)
    chosen = np.array(list(pts.values()), float)
    assert (chosen >= centre - size / 2).all() and (chosen <= centre + size / 2).all()


def test_half_body_choice_follows_the_generator():
    kps = _person(FULL)
    rng = np.random.default_rng(0)
    lower_centre = np.array([100.0, 200.0])
    picks = [np.allclose(half_body_region(kps, 0.75, 1.5, 8, rng)[0], lower_centre) for _ in range(1000)]
    assert 0.25 < np.mean(picks) < 0.35  # upper body preferred with probability 0.7 (mmpose)


@pytest.mark.parametrize("min_joints", [15, 20])
def test_half_body_none_with_too_few_joints(min_joints):
    # 15 joints annotated: "more than min_joints" is needed.
    assert half_body_region(_person(FULL), 0.75, 1.5, min_joints, FixedRng(0.1)) is None


def test_half_body_min_joints_is_strict():
    kps = _person(FULL)
    assert half_body_region(kps, 0.75, 1.5, 14, FixedRng(0.1)) is not None
    assert half_body_region(kps, 0.75, 1.5, 15, FixedRng(0.1)) is None


def test_half_body_uses_upper_when_lower_is_missing():
    names = UPPER_NAMES + ["left_hip"]  # only one lower joint
    kps = _person({n: FULL[n] for n in names})
    region = half_body_region(kps, 0.75, 1.5, 8, FixedRng(0.9))  # would pick lower
    _check_region(region, UPPER_NAMES, 0.75, 1.5)


def test_half_body_uses_lower_when_upper_has_two_or_fewer():
    names = ["nose", "head_top"] + LOWER_NAMES
    kps = _person({n: FULL[n] for n in names})
    region = half_body_region(kps, 0.75, 1.5, 3, FixedRng(0.0))  # would pick upper
    _check_region(region, LOWER_NAMES, 0.75, 1.5)


def test_half_body_none_when_chosen_half_has_one_joint():
    kps = _person({"nose": (10, 10), "left_hip": (20, 40)})
    assert half_body_region(kps, 0.75, 1.5, 0, FixedRng(0.1)) is None
    assert half_body_region(kps, 0.75, 1.5, 0, FixedRng(0.9)) is None


def test_half_body_none_for_degenerate_extent():
    # All lower joints at one point: zero-size region.
    kps = _person({**{n: FULL[n] for n in UPPER_NAMES}, **{n: (50.0, 60.0) for n in LOWER_NAMES}})
    assert half_body_region(kps, 0.75, 1.5, 8, FixedRng(0.9)) is None


def test_half_body_ignores_unannotated_coordinates():
    kps = _person(FULL)
    kps[JOINT_INDEX["left_ear"]] = (-500.0, -500.0, 0.0)  # junk coordinates, not annotated
    region = half_body_region(kps, 0.75, 1.5, 8, FixedRng(0.1))
    _check_region(region, UPPER_NAMES, 0.75, 1.5)


# --- color_normalize -----------------------------------------------------------------------------


def _denormalize(out: np.ndarray) -> np.ndarray:
    """(T, 3, H, W) normalised RGB -> (T, H, W, 3) RGB in 0..255 (float)."""
    return (out.transpose(0, 2, 3, 1).astype(np.float64) * STD + MEAN) * 255.0


def test_color_normalize_identity_is_plain_normalisation():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (3, 7, 9, 3), dtype=np.uint8)
    out = color_normalize(x, AugmentParams(), MEAN, STD)
    assert out.dtype == np.float32 and out.shape == (3, 3, 7, 9)
    expect = ((x[..., ::-1] / 255.0 - MEAN.astype(np.float64)) / STD).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(out, expect, rtol=0, atol=2e-6)


def test_color_normalize_channel_order_is_bgr_to_rgb():
    x = np.zeros((1, 2, 2, 3), np.uint8)
    x[..., 0] = 255  # pure blue in BGR
    out = color_normalize(x, AugmentParams(), MEAN, STD)
    np.testing.assert_allclose(out[0, 2], (1 - MEAN[2]) / STD[2], rtol=1e-6)  # RGB channel 2 = blue
    np.testing.assert_allclose(out[0, 0], -MEAN[0] / STD[0], rtol=1e-6)
    np.testing.assert_allclose(out[0, 1], -MEAN[1] / STD[1], rtol=1e-6)


def test_color_normalize_does_not_modify_input():
    rng = np.random.default_rng(1)
    x = rng.integers(0, 256, (2, 5, 6, 3), dtype=np.uint8)
    before = x.copy()
    color_normalize(x, AugmentParams(brightness=1.3, contrast=0.7, saturation=0.5), MEAN, STD)
    np.testing.assert_array_equal(x, before)


@pytest.mark.parametrize("b", [0.5, 0.8, 0.93, 1.17, 1.2, 1.6])
def test_brightness_only_matches_scaling(b):
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (2, 6, 128, 3), dtype=np.uint8)
    x[0, 0, :, :] = np.arange(128, 256, dtype=np.uint8)[:, None]  # bright ramp: saturates for b > 1
    out = color_normalize(x, AugmentParams(brightness=b), MEAN, STD)
    expect = np.clip(x[..., ::-1].astype(np.float64) * b, 0, 255)
    got = _denormalize(out)
    # The jittered crop is uint8 again before normalising: within rounding of the exact value.
    np.testing.assert_allclose(got, expect, rtol=0, atol=0.5 + 1e-3)
    np.testing.assert_allclose(got, np.round(got), rtol=0, atol=1e-3)


def test_brightness_is_per_pixel_so_frames_are_independent():
    rng = np.random.default_rng(3)
    a, b = rng.integers(0, 256, (2, 1, 5, 8, 3), dtype=np.uint8)
    p = AugmentParams(brightness=1.25)
    both = color_normalize(np.concatenate([a, b]), p, MEAN, STD)
    np.testing.assert_array_equal(both[0], color_normalize(a, p, MEAN, STD)[0])
    np.testing.assert_array_equal(both[1], color_normalize(b, p, MEAN, STD)[0])


def _reference_jitter(x_bgr: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    """Sequential torchvision-style jitter in float (RGB out); no clamping needed for mid-range input."""
    rgb = x_bgr[..., ::-1].astype(np.float64) * b
    rgb = c * rgb + (1 - c) * (rgb @ GRAY_RGB).mean()  # contrast: blend with the clip's mean grey
    rgb = s * rgb + (1 - s) * (rgb @ GRAY_RGB)[..., None]  # saturation: blend with each pixel's grey
    return rgb


@pytest.mark.parametrize(
    ("b", "c", "s"), [(1.0, 0.8, 1.0), (1.0, 1.0, 1.2), (1.1, 0.9, 1.15), (0.85, 1.15, 0.8), (1.2, 1.2, 0.9)]
)
def test_contrast_and_saturation_match_sequential_reference(b, c, s):
    rng = np.random.default_rng(4)
    x = rng.integers(70, 180, (3, 8, 12, 3), dtype=np.uint8)
    expect = _reference_jitter(x, b, c, s)
    assert expect.min() > 0 and expect.max() < 255  # no clamping in the reference
    got = _denormalize(color_normalize(x, AugmentParams(brightness=b, contrast=c, saturation=s), MEAN, STD))
    # One uint8 level: rounding plus cv2.transform's fixed-point coefficients.
    np.testing.assert_allclose(got, expect, rtol=0, atol=1.0)


def test_zero_saturation_gives_grey():
    rng = np.random.default_rng(5)
    x = rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8)
    got = _denormalize(color_normalize(x, AugmentParams(saturation=0.0), MEAN, STD))
    grey = x[..., ::-1].astype(np.float64) @ GRAY_RGB
    for ch in range(3):
        np.testing.assert_allclose(got[..., ch], grey, rtol=0, atol=1.0)


def test_zero_contrast_gives_the_clip_mean_grey_everywhere():
    rng = np.random.default_rng(6)
    x = rng.integers(0, 256, (3, 5, 7, 3), dtype=np.uint8)
    got = _denormalize(color_normalize(x, AugmentParams(contrast=0.0), MEAN, STD))
    mean_grey = (x[..., ::-1].astype(np.float64) @ GRAY_RGB).mean()
    np.testing.assert_allclose(got, np.full_like(got, mean_grey), rtol=0, atol=1.0)


@pytest.mark.parametrize(
    "params",
    [
        AugmentParams(),
        AugmentParams(brightness=1.3),
        AugmentParams(brightness=0.8, contrast=1.2, saturation=0.7),
        AugmentParams(brightness=1.1, contrast=0.6, saturation=1.4),
    ],
)
def test_identical_frames_get_identical_treatment(params):
    rng = np.random.default_rng(7)
    frame = rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)
    T = 5
    out = color_normalize(np.stack([frame] * T), params, MEAN, STD)
    assert out.shape == (T, 3, 9, 11)
    for t in range(1, T):
        np.testing.assert_array_equal(out[t], out[0])
    # ... and the same as the single frame alone (the clip's mean grey is that frame's).
    np.testing.assert_array_equal(out[0], color_normalize(frame[None], params, MEAN, STD)[0])


def test_contrast_uses_one_mean_for_the_whole_clip():
    # Two frames of different brightness: each is blended with the mean grey of the *clip*.
    dark = np.full((1, 4, 4, 3), 60, np.uint8)
    light = np.full((1, 4, 4, 3), 160, np.uint8)
    got = _denormalize(color_normalize(np.concatenate([dark, light]), AugmentParams(contrast=0.5), MEAN, STD))
    # mean grey 110: 0.5 * 60 + 0.5 * 110 = 85, 0.5 * 160 + 0.5 * 110 = 135
    np.testing.assert_allclose(got[0], 85.0, atol=1.0)
    np.testing.assert_allclose(got[1], 135.0, atol=1.0)
