"""cmpose.robustness.corruptions: each corruption is a deterministic function of (image,
severity, seed), gets measurably stronger with severity, and keeps the image's shape and type."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cmpose.robustness import CORRUPTIONS, SEVERITIES
from cmpose.robustness import corruptions as C


def _image(seed: int = 0, h: int = 64, w: int = 48) -> np.ndarray:
    """A textured test image: smooth colour noise with detail at several scales, mid-range
    intensities (so noise is rarely clipped)."""
    rng = np.random.default_rng(seed)
    coarse = cv2.resize(
        rng.uniform(40, 215, (8, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC
    )
    fine = rng.normal(0, 20, (h, w, 3)).astype(np.float32)
    return np.clip(coarse + fine, 0, 255).astype(np.uint8)


def _sharpness(img: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: falls as an image gets blurrier."""
    grey = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float64)
    return float(cv2.Laplacian(grey, cv2.CV_64F)[8:-8, 8:-8].var())


def _run(name: str, img: np.ndarray, severity: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if name == "occlusion":
        return C.occlusion(img, severity, rng, np.array([[20.0, 30.0], [30.0, 10.0]]))
    return C.IMAGE_CORRUPTIONS[name](img, severity, rng)


IMAGE_NAMES = [*C.IMAGE_CORRUPTIONS, "occlusion"]


def test_names_match_the_issue() -> None:
    assert set(CORRUPTIONS) == {*IMAGE_NAMES, "frame_drop"}
    assert SEVERITIES == (1, 2, 3, 4, 5)


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_deterministic_by_seed_and_shape_kept(name: str) -> None:
    img = _image()
    before = img.copy()
    for severity in SEVERITIES:
        a, b = _run(name, img, severity, 7), _run(name, img, severity, 7)
        assert a.shape == img.shape and a.dtype == np.uint8
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, img)  # every severity changes the image
    np.testing.assert_array_equal(img, before)  # the input is not modified
    if name not in ("defocus", "jpeg"):  # the random ones depend on the seed
        assert not np.array_equal(_run(name, img, 3, 7), _run(name, img, 3, 8))


@pytest.mark.parametrize("name", ["motion_blur", "defocus"])
def test_blur_sharpness_falls_with_severity(name: str) -> None:
    img = _image()
    sharp = [_sharpness(img)] + [_sharpness(_run(name, img, s, 0)) for s in SEVERITIES]
    assert all(a > b for a, b in zip(sharp, sharp[1:], strict=False)), sharp


def test_gaussian_noise_std_is_the_imagenet_c_table() -> None:
    flat = np.full((128, 128, 3), 128, np.uint8)  # no clipping at 128 +- 3 std for the low levels
    stds = [float((_run("gaussian_noise", flat, s, 0).astype(float) - 128).std()) for s in SEVERITIES]
    assert all(a < b for a, b in zip(stds, stds[1:], strict=False))
    for s, std in zip((1, 2, 3), stds, strict=False):
        assert std == pytest.approx(C.GAUSSIAN_NOISE_STD[s - 1] * 255, rel=0.03)


def test_low_light_darkens_and_is_noisier_with_severity() -> None:
    img = _image()
    outs = [_run("low_light", img, s, 0).astype(float) for s in SEVERITIES]
    means = [o.mean() for o in outs]
    assert all(a > b for a, b in zip([img.mean(), *means], means, strict=False))
    # the mean follows top * x^2: the noise is zero-mean, except where clipping at 0 lifts the
    # darkest pixels (noticeable at the strongest levels)
    expected = [C.LOW_LIGHT_TOP[s - 1] * ((img / 255.0) ** 2).mean() * 255 for s in SEVERITIES]
    np.testing.assert_allclose(means[:3], expected[:3], rtol=0.02)
    np.testing.assert_allclose(means, expected, rtol=0.1)
    # relative noise: residual from the noiseless map, divided by its level
    rel = [
        (o - C.LOW_LIGHT_TOP[s - 1] * (img / 255.0) ** 2 * 255).std() / expected[s - 1]
        for s, o in zip(SEVERITIES, outs, strict=True)
    ]
    assert all(a < b for a, b in zip(rel, rel[1:], strict=False)), rel


def test_jpeg_error_grows_with_severity() -> None:
    img = _image()
    err = [float(((_run("jpeg", img, s, 0).astype(float) - img) ** 2).mean()) for s in SEVERITIES]
    assert all(a < b for a, b in zip(err, err[1:], strict=False)), err


def test_occlusion_covers_the_joints_and_grows() -> None:
    img = _image(h=128, w=96)
    joint = np.array([[40.0, 70.0]])
    covered = []
    for s in SEVERITIES:
        out = C.occlusion(img, s, np.random.default_rng(0), joint)
        changed = (out != img).any(-1)
        assert changed[70, 40]  # the joint is under a patch (jitter < half the side)
        covered.append(changed.mean())
    assert all(a < b for a, b in zip(covered, covered[1:], strict=False)), covered
    # patches stay inside the image even for joints at its border
    patches = C.occluders((128, 96), 5, np.random.default_rng(0), np.array([[95.0, 127.0]]))
    assert len(patches) == 5
    for x0, y0, patch in patches:
        assert 0 <= x0 and x0 + patch.shape[1] <= 96 and 0 <= y0 and y0 + patch.shape[0] <= 128
        assert patch.std() > 5  # textured, not flat
    # without joints the patches go anywhere, still deterministic
    a = C.occlusion(img, 3, np.random.default_rng(1), None)
    np.testing.assert_array_equal(a, C.occlusion(img, 3, np.random.default_rng(1), np.zeros((0, 2))))


def test_drop_frames() -> None:
    rng = np.random.default_rng(0)
    clip = rng.integers(0, 255, (5, 8, 6, 3), dtype=np.uint8)
    one = clip[:1]
    np.testing.assert_array_equal(C.drop_frames(one, 5, rng, 0), one)  # T = 1: identity
    full = C.drop_frames(clip, 5, rng, 2)  # probability 1: every neighbour is the keyframe
    assert all(np.array_equal(f, clip[2]) for f in full)
    rates = []
    for s in SEVERITIES:
        g = np.random.default_rng(1)
        dropped = [
            sum(np.array_equal(f, clip[2]) for t, f in enumerate(C.drop_frames(clip, s, g, 2)) if t != 2)
            for _ in range(200)
        ]
        rates.append(np.mean(dropped) / 4)
    np.testing.assert_allclose(rates, C.FRAME_DROP_PROB, atol=0.05)
    np.testing.assert_array_equal(C.drop_frames(clip, 2, np.random.default_rng(3), 2)[2], clip[2])


def test_kernels() -> None:
    k = C.motion_blur_kernel(10, 3.0, 0.0)
    assert k.sum() == pytest.approx(1.0)
    centre = k.shape[0] // 2
    row = k[centre]
    assert row.sum() == pytest.approx(1.0)  # angle 0: a horizontal trail ...
    assert row[:centre].sum() == 0 and row[centre] == row.max()  # ... on one side, peaked at 0
    d = C.defocus_kernel(6, 0.5)
    assert d.sum() == pytest.approx(1.0, abs=1e-5)
    np.testing.assert_allclose(d, d.T, atol=1e-7)
    np.testing.assert_allclose(d, d[::-1], atol=1e-7)


@pytest.mark.parametrize("name", IMAGE_NAMES)
def test_bad_severity(name: str) -> None:
    with pytest.raises(ValueError, match="severity"):
        _run(name, _image(), 6, 0)
