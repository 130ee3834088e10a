"""Tests for cmpose.data.frames: reduced JPEG decoding, its coordinate map, and the frame cache."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cmpose.data.frames import FrameCache, decode_image, reduced_to_full, reduction_factor
from cmpose.errors import DataError

# --- reduction_factor ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("region", "output", "max_factor", "expect"),
    [
        ((192, 256), (192, 256), 4, 1),  # same size: no reduction
        ((100, 120), (192, 256), 4, 1),  # upscaling: no reduction
        ((383.9, 1000), (192, 256), 4, 1),  # x ratio just under 2
        ((384, 512), (192, 256), 4, 2),  # exactly 2 on both axes
        ((768, 1024), (192, 256), 4, 4),
        ((767.9, 1024), (192, 256), 4, 2),
        ((768, 1023.9), (192, 256), 4, 2),  # the smaller ratio decides
        ((5000, 5000), (192, 256), 4, 4),  # capped by max_factor
        ((5000, 5000), (192, 256), 8, 8),
        ((5000, 5000), (192, 256), 2, 2),
        ((5000, 5000), (192, 256), 1, 1),  # 1 turns reduction off
        ((5000, 5000), (192, 256), 3, 2),  # powers of two only
        ((1536, 2048), (192, 256), 8, 8),
        ((1535, 2048), (192, 256), 8, 4),
    ],
)
def test_reduction_factor(region, output, max_factor, expect):
    assert reduction_factor(np.asarray(region, float), output, max_factor) == expect


def test_reduction_factor_keeps_output_resolution():
    # Property over many regions: region / f >= output on both axes, and 2f would break it (or the cap).
    rng = np.random.default_rng(0)
    out = (48, 64)
    for _ in range(500):
        region = rng.uniform(10, 800, 2)
        mx = int(rng.choice([1, 2, 4, 8]))
        f = reduction_factor(region, out, mx)
        assert f in (1, 2, 4, 8) and f <= mx
        ratio = min(region[0] / out[0], region[1] / out[1])
        if f > 1:
            assert ratio >= f
        assert 2 * f > mx or ratio < 2 * f


# --- reduced_to_full on real JPEG decodes ----------------------------------------------------------


def _write_jpeg(path: Path, img: np.ndarray, quality: int = 95) -> Path:
    assert cv2.imwrite(str(path), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return path


def test_reduced_to_full_identity_for_factor_one():
    np.testing.assert_array_equal(reduced_to_full(1), np.eye(3))


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_reduced_to_full_maps_block_centres(factor):
    # Reduced pixel i covers full pixels f*i .. f*i+f-1: their mean coordinate is its centre.
    m = reduced_to_full(factor)
    for i in (0, 1, 7):
        block = np.arange(factor * i, factor * i + factor)
        np.testing.assert_allclose(m @ [i, i, 1], [block.mean(), block.mean(), 1], rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_bright_dot_maps_back_to_its_full_position(tmp_path, factor):
    # A grey Gaussian dot at sub-pixel positions; its centroid in the reduced decode, mapped with
    # reduced_to_full, must land on the true position (a missing (f-1)/2 offset is 0.5 .. 3.5 px off).
    H, W = 240, 320
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    for x0, y0 in [(161.3, 97.6), (90.8, 150.2), (232.0, 61.5)]:
        img = 60 + 180 * np.exp(-((xx - x0) ** 2 + (yy - y0) ** 2) / (2 * 4.0**2))
        img = np.repeat(np.rint(img).astype(np.uint8)[..., None], 3, axis=2)
        path = _write_jpeg(tmp_path / "dot.jpg", img)
        red = decode_image(path, factor)
        assert red.shape == (H // factor, W // factor, 3)
        r = np.clip(red[..., 1].astype(float) - 60.0, 0, None)
        v, u = np.mgrid[0 : r.shape[0], 0 : r.shape[1]]
        cu, cv = (r * u).sum() / r.sum(), (r * v).sum() / r.sum()
        x, y, _ = reduced_to_full(factor) @ [cu, cv, 1.0]
        assert abs(x - x0) < 0.15 and abs(y - y0) < 0.15, (factor, x0, y0, x, y)


@pytest.mark.parametrize(("factor", "max_mean_diff"), [(2, 0.7), (4, 1.2)])
def test_crop_from_reduced_decode_matches_crop_from_full_decode(tmp_path, factor, max_mean_diff):
    # The dataset crops by warping the reduced frame with (full -> crop) @ reduced_to_full(f).
    H, W = 480, 640
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    base = 128 + 50 * np.sin(2 * np.pi * xx / 97 + 0.3) * np.cos(2 * np.pi * yy / 83) + 0.1 * (xx - W / 2)
    img = np.clip(np.rint(np.stack([base, 0.8 * base + 20, 255 - base], -1)), 0, 255).astype(np.uint8)
    path = _write_jpeg(tmp_path / "smooth.jpg", img)
    full = decode_image(path, 1)

    # full -> crop: 10 degrees rotation, 1/4 scale, region centre (320, 240) -> crop centre.
    out_w, out_h = 96, 72
    ang, s = np.deg2rad(10.0), 0.25
    rot = s * np.array([[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]])
    t = np.array([(out_w - 1) / 2, (out_h - 1) / 2]) - rot @ [320.0, 240.0]
    to_crop = np.vstack([np.hstack([rot, t[:, None]]), [0, 0, 1]])

    ref = cv2.warpAffine(full, to_crop[:2], (out_w, out_h), flags=cv2.INTER_LINEAR).astype(float)
    red = decode_image(path, factor)
    got = cv2.warpAffine(
        red, (to_crop @ reduced_to_full(factor))[:2], (out_w, out_h), flags=cv2.INTER_LINEAR
    ).astype(float)
    assert np.abs(got - ref).mean() < max_mean_diff
    # The same warp without the half-block offset is clearly worse (the test can tell them apart).
    naive = cv2.warpAffine(
        red, (to_crop @ np.diag([factor, factor, 1.0]))[:2], (out_w, out_h), flags=cv2.INTER_LINEAR
    ).astype(float)
    assert np.abs(naive - ref).mean() > 1.5 * np.abs(got - ref).mean()


# --- decode_image --------------------------------------------------------------------------------


@pytest.mark.parametrize(("factor", "shape"), [(1, (75, 101)), (2, (38, 51)), (4, (19, 26)), (8, (10, 13))])
@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_decode_sizes_round_up(tmp_path, factor, shape, suffix):
    # libjpeg's scaled decode gives ceil(size / f); PNG (emulated with a resize) must agree.
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 256, (75, 101, 3), dtype=np.uint8), (7, 7), 2)
    path = tmp_path / f"img{suffix}"
    assert cv2.imwrite(str(path), img)
    out = decode_image(path, factor)
    assert out.shape == (*shape, 3) and out.dtype == np.uint8


def test_decode_full_png_is_lossless(tmp_path):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / "x.png"
    assert cv2.imwrite(str(path), img)
    np.testing.assert_array_equal(decode_image(path), img)


def test_decode_png_reduced_is_block_average(tmp_path):
    img = np.zeros((8, 8, 3), np.uint8)
    img[:4, :4] = 200  # top-left 4x4 block bright
    img[4:, 4:] = (10, 50, 90)
    path = tmp_path / "blocks.png"
    assert cv2.imwrite(str(path), img)
    out = decode_image(path, 4)
    assert out.shape == (2, 2, 3)
    np.testing.assert_array_equal(out[0, 0], [200, 200, 200])
    np.testing.assert_array_equal(out[1, 1], [10, 50, 90])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 0])


def test_decode_grey_jpeg_gives_three_channels(tmp_path):
    img = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (16, 1))
    path = _write_jpeg(tmp_path / "grey.jpg", img)
    out = decode_image(path)
    assert out.shape == (16, 64, 3)
    np.testing.assert_array_equal(out[..., 0], out[..., 1])


def test_decode_missing_file_names_path(tmp_path):
    path = tmp_path / "videos" / "000123.jpg"
    with pytest.raises(DataError, match="not found") as info:
        decode_image(path)
    assert str(path) in str(info.value)
    assert info.value.path == path


@pytest.mark.parametrize("name", ["notes.jpg", "notes.png", "notes.txt"])
def test_decode_non_image_names_path(tmp_path, name):
    path = tmp_path / name
    path.write_text("this is not an image\n" * 10)
    with pytest.raises(DataError, match="not a decodable image") as info:
        decode_image(path)
    assert str(path) in str(info.value)


def test_decode_truncated_jpeg_header_names_path(tmp_path):
    path = tmp_path / "cut.jpg"
    path.write_bytes(b"\xff\xd8\xff\xe0\x00\x10JFIF")  # a JPEG start, nothing else
    with pytest.raises(DataError) as info:
        decode_image(path, 2)
    assert str(path) in str(info.value)


def test_decode_directory_is_data_error(tmp_path):
    folder = tmp_path / "000000.jpg"
    folder.mkdir()
    with pytest.raises(DataError) as info:
        decode_image(folder)
    assert str(folder) in str(info.value)


def test_decode_empty_file_is_data_error(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    with pytest.raises(DataError):
        decode_image(path)


# --- FrameCache ----------------------------------------------------------------------------------


@pytest.fixture
def frames(tmp_path) -> list[Path]:
    """Four small PNGs, each a distinct constant colour."""
    paths = []
    for i in range(4):
        path = tmp_path / f"{i:06d}.png"
        assert cv2.imwrite(str(path), np.full((4, 6, 3), 40 * i + 10, np.uint8))
        paths.append(path)
    return paths


def test_cache_hits_and_misses(frames):
    cache = FrameCache(capacity=4)
    a = cache.get(frames[0])
    assert (cache.hits, cache.misses) == (0, 1)
    again = cache.get(frames[0])
    assert (cache.hits, cache.misses) == (1, 1)
    assert again is a  # served from the cache, not decoded again
    assert int(a[0, 0, 0]) == 10


def test_cache_evicts_least_recently_used(frames):
    a, b, c, _ = frames
    cache = FrameCache(capacity=2)
    cache.get(a)  # miss      [a]
    cache.get(b)  # miss      [a, b]
    cache.get(a)  # hit       [b, a]
    cache.get(c)  # miss      [a, c]  (b evicted: least recently used)
    assert (cache.hits, cache.misses) == (1, 3)
    cache.get(a)  # hit       [c, a]
    assert (cache.hits, cache.misses) == (2, 3)
    cache.get(b)  # miss      [a, b]  (c evicted)
    assert (cache.hits, cache.misses) == (2, 4)
    cache.get(a)  # hit
    cache.get(c)  # miss
    assert (cache.hits, cache.misses) == (3, 5)


def test_cache_serves_from_memory_after_file_is_gone(frames):
    cache = FrameCache(capacity=2)
    first = cache.get(frames[1]).copy()
    frames[1].unlink()
    np.testing.assert_array_equal(cache.get(frames[1]), first)
    assert cache.hits == 1


def test_cache_keys_include_the_factor(tmp_path):
    path = tmp_path / "big.png"
    assert cv2.imwrite(str(path), np.full((16, 16, 3), 99, np.uint8))
    cache = FrameCache(capacity=4)
    assert cache.get(path, 1).shape == (16, 16, 3)
    assert cache.get(path, 2).shape == (8, 8, 3)
    assert cache.get(path, 4).shape == (4, 4, 3)
    assert (cache.hits, cache.misses) == (0, 3)
    assert cache.get(path, 2).shape == (8, 8, 3)
    assert (cache.hits, cache.misses) == (1, 3)


def test_cache_capacity_zero_disables_caching(frames):
    cache = FrameCache(capacity=0)
    x = cache.get(frames[0])
    y = cache.get(frames[0])
    assert (cache.hits, cache.misses) == (0, 2)
    assert x is not y
    np.testing.assert_array_equal(x, y)
    frames[0].unlink()
    with pytest.raises(DataError):  # nothing kept: it has to read the (now missing) file
        cache.get(frames[0])


def test_cache_does_not_keep_failures(tmp_path):
    path = tmp_path / "later.png"
    cache = FrameCache(capacity=2)
    with pytest.raises(DataError):
        cache.get(path)
    assert cv2.imwrite(str(path), np.full((2, 2, 3), 7, np.uint8))
    assert int(cache.get(path)[0, 0, 0]) == 7
    assert (cache.hits, cache.misses) == (0, 2)
