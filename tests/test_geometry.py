"""Tests for cmpose.ops.geometry: boxes, affine crops (UDP) and horizontal flips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from cmpose.keypoints import FLIP_INDEX, FLIP_PAIRS, PT18_NAMES
from cmpose.ops.geometry import (
    apply_affine,
    box_to_center_scale,
    flip_keypoints,
    get_affine_matrix,
    invert_affine,
)

OUT = (192, 256)  # (W, H)


# --- box_to_center_scale -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "box", [(10, 20, 30, 100), (5, 5, 300, 40), (0, 0, 75, 100), (3.5, 7.25, 1e-3, 2e-3)]
)
@pytest.mark.parametrize("aspect", [0.75, 1.0, 4 / 3])
def test_box_to_center_scale_aspect_and_cover(box, aspect):
    padding = 1.25
    center, scale = box_to_center_scale(box, aspect_ratio=aspect, padding=padding)
    x, y, w, h = box
    np.testing.assert_allclose(center, [x + w / 2, y + h / 2], rtol=0, atol=1e-12)
    assert scale[0] / scale[1] == pytest.approx(aspect, rel=1e-12)
    # Grow, never shrink: the crop always contains the padded box.
    assert scale[0] >= w * padding * (1 - 1e-12)
    assert scale[1] >= h * padding * (1 - 1e-12)
    # ... and exactly one side is the padded box side (the other was grown).
    assert np.isclose(scale[0], w * padding) or np.isclose(scale[1], h * padding)


def test_box_to_center_scale_accepts_array_likes():
    c1, s1 = box_to_center_scale([1, 2, 3, 4])
    c2, s2 = box_to_center_scale(np.array([[1.0, 2.0, 3.0, 4.0]], dtype=np.float32))
    np.testing.assert_array_equal(c1, c2)
    np.testing.assert_array_equal(s1, s2)
    assert c1.dtype == np.float64 and s1.shape == (2,)


@pytest.mark.parametrize(
    "box", [(0, 0, 0, 10), (0, 0, 10, 0), (0, 0, -5, 10), (0, 0, np.nan, 10), (np.inf, 0, 10, 10)]
)
def test_box_to_center_scale_rejects_bad_boxes(box):
    with pytest.raises(ValueError, match="box"):
        box_to_center_scale(box)


def test_box_to_center_scale_rejects_wrong_length():
    with pytest.raises(ValueError, match="box"):
        box_to_center_scale((1, 2, 3))


# --- affine -----------------------------------------------------------------------------------------


def test_affine_inverse_is_identity_on_random_points():
    rng = np.random.default_rng(0)
    for _ in range(50):
        center = rng.uniform(-100, 1500, size=2)
        scale = rng.uniform(5, 800, size=2)
        rot = rng.uniform(-180, 180)
        fwd = get_affine_matrix(center, scale, rot, OUT)
        inv = get_affine_matrix(center, scale, rot, OUT, inverse=True)
        pts = rng.uniform(-500, 2000, size=(7, 3, 2))
        back = apply_affine(apply_affine(pts, fwd), inv)
        assert back.shape == pts.shape
        # float32 matrices: relative precision ~1e-7 of coordinates up to ~2000 px.
        np.testing.assert_allclose(back, pts, atol=5e-3)
        # invert_affine agrees with the directly built inverse.
        np.testing.assert_allclose(invert_affine(fwd), inv, rtol=1e-4, atol=1e-3)


def test_invert_affine_exact_in_float64_and_rejects_singular():
    m = np.array([[2.0, 0.5, 3.0], [-0.25, 1.5, -7.0]])
    pts = np.random.default_rng(1).normal(size=(10, 2)) * 100
    np.testing.assert_allclose(apply_affine(apply_affine(pts, m), invert_affine(m)), pts, atol=1e-10)
    assert invert_affine(m).dtype == np.float64
    assert invert_affine(m.astype(np.float32)).dtype == np.float32
    with pytest.raises(ValueError, match="singular"):
        invert_affine([[1, 2, 0], [2, 4, 0]])


@pytest.mark.parametrize("rot", [0.0, 30.0, -90.0])
def test_affine_centre_and_box_corners_land_on_output_pixel_centres(rot):
    center = np.array([321.5, 123.25])
    scale = np.array([150.0, 200.0])
    w, h = OUT
    m = get_affine_matrix(center, scale, rot, OUT)
    np.testing.assert_allclose(apply_affine(center, m), [(w - 1) / 2, (h - 1) / 2], atol=1e-4)
    # The region's corners, expressed in its own (rotated) frame, land on the first and last
    # output pixel centres (UDP): (0, 0) and (W - 1, H - 1).
    t = np.deg2rad(rot)
    r = np.array([[np.cos(t), np.sin(t)], [-np.sin(t), np.cos(t)]])  # image -> region frame
    half = scale / 2
    corners_region = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
    corners_img = center + corners_region @ r  # r^T applied to row vectors: region -> image
    expected = np.array([[0, 0], [w - 1, 0], [w - 1, h - 1], [0, h - 1]], dtype=np.float64)
    np.testing.assert_allclose(apply_affine(corners_img, m), expected, atol=1e-4)


def test_affine_rotation_matches_cv2_direction():
    # With (W - 1) / sw = 1 the linear part must equal cv2.getRotationMatrix2D's (scale 1).
    center, rot = (50.0, 60.0), 37.0
    m = get_affine_matrix(center, (OUT[0] - 1, OUT[1] - 1), rot, OUT)
    ref = cv2.getRotationMatrix2D(center, rot, 1.0)
    np.testing.assert_allclose(m[:, :2], ref[:, :2], atol=1e-6)
    # Counter-clockwise positive: a point to the right of the centre goes up (y decreases).
    m90 = get_affine_matrix(center, (OUT[0] - 1, OUT[1] - 1), 90.0, OUT)
    moved = apply_affine(np.array(center) + (10.0, 0.0), m90) - apply_affine(center, m90)
    np.testing.assert_allclose(moved, [0.0, -10.0], atol=1e-4)


@pytest.mark.parametrize("rot", [0.0, 25.0, -140.0])
def test_warp_affine_moves_bright_pixel_to_apply_affine(rot):
    img = np.zeros((120, 160), dtype=np.float32)
    point = np.array([97.0, 41.0])
    img[int(point[1]), int(point[0])] = 1.0
    out_size = (96, 128)
    # Zoom in (~3x) so the bilinear footprint of the single pixel is resolved in the output.
    m = get_affine_matrix((90.0, 50.0), (32.0, 128.0 / 96.0 * 32.0), rot, out_size)
    warped = cv2.warpAffine(img, m, out_size, flags=cv2.INTER_LINEAR, borderValue=0)
    assert warped.sum() > 0
    yy, xx = np.mgrid[: out_size[1], : out_size[0]]
    centroid = np.array([(warped * xx).sum(), (warped * yy).sum()]) / warped.sum()
    target = apply_affine(point, m)
    assert np.linalg.norm(centroid - target) < 0.5
    # The same point comes back through the inverse matrix.
    inv = get_affine_matrix((90.0, 50.0), (32.0, 128.0 / 96.0 * 32.0), rot, out_size, inverse=True)
    np.testing.assert_allclose(apply_affine(centroid, inv), point, atol=0.5)


def test_get_affine_matrix_validates():
    assert get_affine_matrix((0, 0), (10, 10), 0, (4, 4)).dtype == np.float32
    with pytest.raises(ValueError):
        get_affine_matrix((0, 0), (0, 10), 0, (4, 4))
    with pytest.raises(ValueError):
        get_affine_matrix((0, 0), (10, 10), 0, (1, 4))


# --- flip -------------------------------------------------------------------------------------------


def test_flip_pairs_by_name():
    assert len(FLIP_INDEX) == len(PT18_NAMES) == 17
    for j, name in enumerate(PT18_NAMES):
        other = PT18_NAMES[FLIP_INDEX[j]]
        if name.startswith("left_"):
            assert other == "right_" + name[len("left_") :]
        elif name.startswith("right_"):
            assert other == "left_" + name[len("right_") :]
        else:
            assert name in ("nose", "head_bottom", "head_top")
            assert other == name
    assert len(FLIP_PAIRS) == 7


def test_flip_keypoints_twice_is_identity_and_swaps_sides():
    rng = np.random.default_rng(2)
    kpts = rng.uniform(0, 300, size=(4, 17, 2))
    vis = rng.integers(0, 3, size=(4, 17))
    flipped, fvis = flip_keypoints(kpts, 321, visibility=vis)
    assert flipped.shape == kpts.shape and fvis.shape == vis.shape and fvis.dtype == vis.dtype
    twice, tvis = flip_keypoints(flipped, 321, visibility=fvis)
    np.testing.assert_allclose(twice, kpts, atol=1e-12)
    np.testing.assert_array_equal(tvis, vis)
    ls, rs = PT18_NAMES.index("left_shoulder"), PT18_NAMES.index("right_shoulder")
    np.testing.assert_allclose(flipped[:, rs, 0], 320 - kpts[:, ls, 0])
    np.testing.assert_allclose(flipped[:, rs, 1], kpts[:, ls, 1])
    np.testing.assert_array_equal(fvis[:, rs], vis[:, ls])
    # Single-instance (J, 2) input and no visibility -> a plain array; the input is untouched.
    k1 = kpts[0].copy()
    out = flip_keypoints(k1, 321)
    assert isinstance(out, np.ndarray) and out.shape == (17, 2)
    np.testing.assert_array_equal(k1, kpts[0])


def test_flip_keypoints_matches_cv2_flip():
    rng = np.random.default_rng(3)
    h, w = 50, 73
    ys = rng.integers(0, h, size=17)
    xs = rng.integers(0, w, size=17)
    kpts = np.stack([xs, ys], axis=1).astype(np.float64)
    for j in range(17):
        img = np.zeros((h, w), dtype=np.uint8)
        img[ys[j], xs[j]] = 255
        flipped_img = cv2.flip(img, 1)
        flipped = flip_keypoints(kpts, w)
        fx, fy = flipped[FLIP_INDEX[j]]  # joint j is renamed FLIP_INDEX[j] after the flip
        assert flipped_img[int(fy), int(fx)] == 255


def test_flip_keypoints_validates_shapes():
    with pytest.raises(ValueError):
        flip_keypoints(np.zeros((16, 2)), 10)
    with pytest.raises(ValueError):
        flip_keypoints(np.zeros((17, 2)), 10, visibility=np.ones(16))
