"""Tests for cmpose.ops.heatmap: UDP Gaussian encoding, DARK decoding and flip_back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from cmpose.keypoints import FLIP_INDEX
from cmpose.ops.geometry import flip_keypoints
from cmpose.ops.heatmap import HeatmapCodec, flip_back

IN_W, IN_H = 192, 256
HM_W, HM_H = 48, 64
J = len(FLIP_INDEX)


@pytest.fixture(scope="module")
def codec() -> HeatmapCodec:
    return HeatmapCodec((IN_W, IN_H), (HM_W, HM_H), sigma=2.0)


def random_interior_keypoints(rng: np.random.Generator, n: int, margin_hm: float = 4.0) -> np.ndarray:
    """(n, J, 2) crop-pixel keypoints whose heatmap location is >= margin_hm from the border."""
    lo = np.array([margin_hm, margin_hm])
    hi = np.array([HM_W - 1 - margin_hm, HM_H - 1 - margin_hm])
    hm = rng.uniform(lo, hi, size=(n, J, 2))
    return hm * np.array([(IN_W - 1) / (HM_W - 1), (IN_H - 1) / (HM_H - 1)])


def test_encode_shapes_peak_and_udp_location(codec):
    kpts = np.array([[95.5, 127.5]] * J)  # the crop's centre -> heatmap centre (23.5, 31.5)
    hm, w = codec.encode(kpts, np.ones(J))
    assert hm.shape == (J, HM_H, HM_W) and hm.dtype == np.float32
    assert w.shape == (J,) and w.dtype == np.float32
    np.testing.assert_array_equal(w, 1.0)
    np.testing.assert_allclose(codec.to_heatmap(kpts[0]), [23.5, 31.5])
    # Exactly between pixels: four equal maxima at (23|24, 31|32), value exp(-0.5 / 2 sigma^2).
    m = hm[0]
    np.testing.assert_allclose(m[31:33, 23:25], np.exp(-0.5 / 8.0), rtol=1e-6)
    # Corner pixels of the crop map to corner heatmap pixels (UDP), where the peak is exactly 1.
    hm2, _ = codec.encode(np.array([[0.0, 0.0], [IN_W - 1, IN_H - 1]] * 8 + [[0.0, 0.0]]), np.ones(J))
    assert hm2[0, 0, 0] == pytest.approx(1.0) and hm2[1, HM_H - 1, HM_W - 1] == pytest.approx(1.0)


def test_encode_invisible_and_off_map_get_zero(codec):
    kpts = np.full((J, 2), 100.0)
    vis = np.ones(J)
    vis[0] = 0  # unlabelled
    kpts[1] = (-40.0, 100.0)  # 10 hm px left of the map: beyond 3 sigma
    kpts[2] = (100.0, IN_H - 1 + 30.0)  # 7.5 hm px below the map
    kpts[3] = (np.nan, np.nan)
    kpts[4] = (-12.0, 100.0)  # 3 hm px outside: its Gaussian still reaches the map
    hm, w = codec.encode(kpts, vis)
    for j in (0, 1, 2, 3):
        assert w[j] == 0.0
        assert not hm[j].any()
    assert w[4] == 1.0 and hm[4].max() > 0.1
    assert np.all(w[5:] == 1.0)
    assert np.isfinite(hm).all()


def test_encode_decode_round_trip_subpixel(codec):
    rng = np.random.default_rng(0)
    kpts = random_interior_keypoints(rng, 32)
    hms = np.stack([codec.encode(k, np.ones(J))[0] for k in kpts])
    dec, scores = codec.decode(hms)
    assert dec.shape == (32, J, 2) and scores.shape == (32, J)
    err_hm = np.abs(codec.to_heatmap(dec) - codec.to_heatmap(kpts))
    assert err_hm.max() < 0.05
    assert np.abs(dec - kpts).max() < 0.2
    # Without DARK the integer argmax would be up to 0.5 hm px off; make sure refinement ran.
    assert np.abs(codec.to_heatmap(dec) - np.round(codec.to_heatmap(dec))).max() > 0.1
    # Clean targets: the max of a sampled unit Gaussian is >= exp(-(0.5^2 + 0.5^2) / 8).
    assert scores.min() > 0.93 and scores.max() <= 1.0


def test_decode_accepts_torch_and_unbatched(codec):
    rng = np.random.default_rng(1)
    kpts = random_interior_keypoints(rng, 2)
    hms = np.stack([codec.encode(k, np.ones(J))[0] for k in kpts])
    ref_k, ref_s = codec.decode(hms)
    for t in (torch.from_numpy(hms), torch.from_numpy(hms).to(torch.bfloat16)):
        k, s = codec.decode(t)
        assert isinstance(k, np.ndarray) and k.shape == (2, J, 2) and s.shape == (2, J)
        tol = 1e-9 if t.dtype == torch.float32 else 0.05
        np.testing.assert_allclose(k, ref_k, atol=tol * (IN_W / HM_W))
    k1, s1 = codec.decode(hms[1])
    assert k1.shape == (J, 2) and s1.shape == (J,)
    np.testing.assert_array_equal(k1, ref_k[1])
    np.testing.assert_array_equal(s1, ref_s[1])
    with pytest.raises(ValueError):
        codec.decode(hms[:, :, :32])


def test_decode_border_and_degenerate_maps(codec):
    maps = np.zeros((3, HM_H, HM_W), dtype=np.float32)
    maps[1, 0, 5] = 1.0  # peak on the top border: integer location, no refinement
    maps[2] = -1.0  # negative everywhere (untrained net): no crash, argmax location kept
    maps[2, 10, 10] = -0.5
    k, s = codec.decode(maps)
    assert np.isfinite(k).all()
    np.testing.assert_allclose(s, [0.0, 1.0, -0.5])
    np.testing.assert_allclose(codec.to_heatmap(k[1]), [5.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(codec.to_heatmap(k[2]), [10.0, 10.0], atol=1e-12)


def test_dark_local_blur_matches_cv2_gaussian_blur(codec):
    # The decoder evaluates the DARK blur only around each maximum; it must equal a full
    # cv2.GaussianBlur with zero padding there. Check via the decoded offset of a noisy map.
    rng = np.random.default_rng(4)
    m = codec.encode(random_interior_keypoints(rng, 1)[0], np.ones(J))[0][0]
    m = np.clip(m + rng.normal(0, 0.03, m.shape).astype(np.float32), 0, None)
    r = codec._blur_radius
    blurred = cv2.GaussianBlur(
        m.astype(np.float64), (2 * r + 1, 2 * r + 1), codec.sigma, borderType=cv2.BORDER_CONSTANT
    )
    y, x = np.unravel_index(np.argmax(m), m.shape)
    lg = np.log(np.maximum(blurred[y - 1 : y + 2, x - 1 : x + 2], 1e-10))
    g = np.array([lg[1, 2] - lg[1, 0], lg[2, 1] - lg[0, 1]]) / 2
    hxy = (lg[2, 2] - lg[2, 0] - lg[0, 2] + lg[0, 0]) / 4
    hess = np.array([[lg[1, 2] - 2 * lg[1, 1] + lg[1, 0], hxy], [hxy, lg[2, 1] - 2 * lg[1, 1] + lg[0, 1]]])
    expected = np.array([x, y]) + np.clip(-np.linalg.solve(hess, g), -1, 1)
    k, _ = codec.decode(m[None, None])
    np.testing.assert_allclose(codec.to_heatmap(k[0, 0]), expected, atol=1e-6)


def test_flip_back_undoes_flip_without_shift(codec):
    rng = np.random.default_rng(2)
    kpts = random_interior_keypoints(rng, 8)
    vis = np.ones((8, J))
    plain = np.stack([codec.encode(k, v)[0] for k, v in zip(kpts, vis, strict=True)])
    fk, fv = flip_keypoints(kpts, IN_W, visibility=vis)
    flipped = np.stack([codec.encode(k, v)[0] for k, v in zip(fk, fv, strict=True)])
    back = flip_back(flipped)
    # The flipped-back target is the un-flipped target (up to float rounding): no pixel shift.
    np.testing.assert_allclose(back, plain, atol=1e-5)
    dec_back, _ = codec.decode(back)
    dec_plain, _ = codec.decode(plain)
    np.testing.assert_allclose(dec_back, dec_plain, atol=1e-3)
    np.testing.assert_allclose(dec_back, kpts, atol=0.2)
    # Flip-test averaging keeps the location.
    dec_avg, _ = codec.decode((plain + back) / 2)
    np.testing.assert_allclose(dec_avg, kpts, atol=0.2)


def test_flip_back_numpy_torch_and_involution(codec):
    rng = np.random.default_rng(3)
    hm = rng.random((2, J, HM_H, HM_W)).astype(np.float32)
    out = flip_back(hm)
    assert isinstance(out, np.ndarray) and out.shape == hm.shape and out.flags.c_contiguous
    np.testing.assert_array_equal(out[:, 5], hm[:, 6, :, ::-1])  # left_shoulder <- right_shoulder
    np.testing.assert_array_equal(out[:, 0], hm[:, 0, :, ::-1])  # nose stays
    np.testing.assert_array_equal(flip_back(out), hm)
    t = torch.from_numpy(hm)
    tout = flip_back(t)
    assert isinstance(tout, torch.Tensor) and tout.dtype == t.dtype
    np.testing.assert_array_equal(tout.numpy(), out)
    np.testing.assert_array_equal(codec.flip_back(hm[0]), out[0])
    with pytest.raises(ValueError):
        flip_back(hm[:, :16])
