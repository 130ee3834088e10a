"""Image corruptions at severities 1-5, pure functions of (image, severity, generator).

Images are (H, W, 3) uint8 (BGR, as OpenCV decodes; no corruption here depends on the channel
order) and the result is a new uint8 image of the same shape. cmpose applies them to the model's
input crops (``cmpose.robustness.hook``), not to whole frames: see docs/evaluation.md,
"Robustness", for why.

Sources of the severity tables (the constants are theirs, the code is ours):
- ``gaussian_noise``, ``motion_blur``, ``defocus``, ``jpeg``: ImageNet-C (Hendrycks & Dietterich,
  ICLR 2019), the same tables COCO-C (Michaelis et al. 2019, the ``imagecorruptions`` package) and
  the pose benchmarks built on it (Wang et al., CVPR 2021; PoseBench 2024) use. ImageNet-C's
  ``defocus_blur`` and ``jpeg_compression`` are called ``defocus`` and ``jpeg`` here.
- ``low_light``: the low-light corruption of 3D Common Corruptions (Kar et al., CVPR 2022): the
  intensity range is mapped to [0, c] with gamma 2, then Poisson-Gaussian sensor noise is added.
- ``occlusion``: textured patches pasted over joints, in the spirit of the synthetic occluders of
  Sarandi et al. 2018 ("How robust is 3D human pose estimation to occlusion?"); count and size
  are ours (no standard table exists).
- ``frame_drop`` (``drop_frames``): neighbour frames replaced by the keyframe, as a dropped or
  frozen frame in a video stream; probabilities are ours.
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np

from cmpose.robustness import SEVERITIES

# ImageNet-C: noise std in [0, 1] intensity units.
GAUSSIAN_NOISE_STD = (0.08, 0.12, 0.18, 0.26, 0.38)
# ImageNet-C: (radius, sigma) of ImageMagick's motion blur; the trail has 2 * radius + 1 taps
# weighted by a Gaussian of ``sigma`` taps, at an angle drawn uniformly from [-45, 45] degrees.
MOTION_BLUR = ((10, 3.0), (15, 5.0), (15, 8.0), (15, 12.0), (20, 15.0))
MOTION_BLUR_MAX_ANGLE = 45.0
# ImageNet-C: (disk radius in pixels, sigma of the Gaussian that anti-aliases the disk).
DEFOCUS = ((3, 0.1), (4, 0.5), (6, 0.5), (8, 0.5), (10, 0.5))
# ImageNet-C: JPEG quality.
JPEG_QUALITY = (25, 18, 15, 10, 7)
# 3D Common Corruptions: top of the darkened range, Poisson peak (photons at full intensity) and
# read-noise std (in [0, 1] units) of its low_light corruption; gamma 2.
LOW_LIGHT_TOP = (0.6, 0.5, 0.4, 0.3, 0.2)
LOW_LIGHT_GAMMA = 2.0
LOW_LIGHT_PEAK = (600.0, 250.0, 120.0, 50.0, 30.0)
LOW_LIGHT_READ_STD = (0.008, 0.012, 0.018, 0.026, 0.038)
# Ours: number of patches, and their side as a fraction of the image's shorter side.
OCCLUSION_PATCHES = (1, 2, 3, 4, 5)
OCCLUSION_SIDE = (0.15, 0.175, 0.2, 0.225, 0.25)
# Ours: probability that each neighbour frame is replaced by the keyframe.
FRAME_DROP_PROB = (0.2, 0.4, 0.6, 0.8, 1.0)


def _level(table: tuple, severity: int):
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    return table[severity - 1]


def _to_uint8(x: np.ndarray) -> np.ndarray:
    """[0, 255] floats -> uint8, rounded (ImageNet-C truncates; rounding keeps the mean unbiased)."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def gaussian_noise(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Additive i.i.d. Gaussian noise per pixel and channel, std ``GAUSSIAN_NOISE_STD`` x 255."""
    std = _level(GAUSSIAN_NOISE_STD, severity) * 255.0
    return _to_uint8(image.astype(np.float32) + rng.normal(0.0, std, image.shape).astype(np.float32))


def motion_blur_kernel(radius: int, sigma: float, angle: float) -> np.ndarray:
    """(S, S) float32 kernel, sum 1: a one-sided trail of 2 * radius + 1 taps, tap i at i pixels
    from the centre along ``angle`` (degrees, counter-clockwise from +x) with weight exp(-i^2 / 2
    sigma^2), so the image is smeared behind the motion as in ImageMagick's motion blur."""
    taps = 2 * radius + 1
    size = 2 * taps + 1
    kernel = np.zeros((size, size), np.float32)
    rad = np.deg2rad(angle)
    for i in range(taps):
        x = taps + int(round(i * np.cos(rad)))
        y = taps - int(round(i * np.sin(rad)))  # image rows grow downwards
        kernel[y, x] += np.exp(-(i**2) / (2.0 * sigma**2))
    return kernel / kernel.sum()


def motion_blur(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Linear motion blur (``MOTION_BLUR``) at a random angle; edges replicated."""
    radius, sigma = _level(MOTION_BLUR, severity)
    angle = float(rng.uniform(-MOTION_BLUR_MAX_ANGLE, MOTION_BLUR_MAX_ANGLE))
    kernel = motion_blur_kernel(radius, sigma, angle)
    out = cv2.filter2D(image.astype(np.float32), -1, kernel, borderType=cv2.BORDER_REPLICATE)
    return _to_uint8(out)


def defocus_kernel(radius: int, alias_sigma: float) -> np.ndarray:
    """(S, S) float32 disk of ``radius`` pixels, sum 1, softened by a small Gaussian (3x3 up to
    radius 8, else 5x5, as ImageNet-C) so that its rim is not a staircase."""
    half = max(radius, 8)
    ax = np.arange(-half, half + 1)
    xx, yy = np.meshgrid(ax, ax)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    ksize = (3, 3) if radius <= 8 else (5, 5)
    return cv2.GaussianBlur(disk, ksize, sigmaX=alias_sigma)


def defocus(image: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Out-of-focus blur: convolution with a disk (``DEFOCUS``). Deterministic (``rng`` unused)."""
    radius, alias_sigma = _level(DEFOCUS, severity)
    return _to_uint8(cv2.filter2D(image.astype(np.float32), -1, defocus_kernel(radius, alias_sigma)))


def jpeg(image: np.ndarray, severity: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """JPEG encode and decode at quality ``JPEG_QUALITY`` (libjpeg through OpenCV, 4:2:0 chroma).
    Deterministic (``rng`` unused)."""
    quality = _level(JPEG_QUALITY, severity)
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(image), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the image")
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)


def low_light(image: np.ndarray, severity: int, rng: np.random.Generator) -> np.ndarray:
    """Darkening with sensor noise (3D Common Corruptions): x in [0, 1] -> top * x^2, then
    Poisson noise of ``LOW_LIGHT_PEAK`` photons at full intensity and Gaussian read noise.

    3DCC stretches each image's own [min, max] first; here the fixed range [0, 255] is used, so
    the map does not depend on the content (a crop's black padding would set its min anyway)."""
    top = _level(LOW_LIGHT_TOP, severity)
    peak = _level(LOW_LIGHT_PEAK, severity)
    read_std = _level(LOW_LIGHT_READ_STD, severity)
    x = top * (image.astype(np.float64) / 255.0) ** LOW_LIGHT_GAMMA
    x = rng.poisson(x * peak) / peak
    x = x + rng.normal(0.0, read_std, x.shape)
    return _to_uint8(np.clip(x, 0.0, 1.0) * 255.0)


def _texture(side: int, rng: np.random.Generator) -> np.ndarray:
    """(side, side, 3) uint8 textured patch: a random colour with low-frequency colour noise (a
    flat patch would be a trivially ignorable occluder)."""
    base = rng.uniform(0, 255, 3)
    coarse = rng.normal(0.0, 45.0, (max(2, side // 6), max(2, side // 6), 3)).astype(np.float32)
    detail = cv2.resize(coarse, (side, side), interpolation=cv2.INTER_CUBIC)
    return _to_uint8(base[None, None, :] + detail)


def occluders(
    shape: tuple[int, int], severity: int, rng: np.random.Generator, joints: np.ndarray | None
) -> list[tuple[int, int, np.ndarray]]:
    """The occluders of an (H, W) image: [(x0, y0, patch (side, side, 3) uint8)].

    ``OCCLUSION_PATCHES`` squares of side ``OCCLUSION_SIDE`` x the shorter image side, each
    centred on a distinct joint of ``joints`` ((N, 2) pixels: the annotated joints inside the
    image; repeated when there are fewer joints than patches) and jittered by up to a quarter of
    its side; with no joint, centred anywhere in the image. Patches are kept inside the image."""
    h, w = shape
    count = _level(OCCLUSION_PATCHES, severity)
    side = max(1, min(h, w, int(round(_level(OCCLUSION_SIDE, severity) * min(h, w)))))
    if joints is not None and len(joints) > 0:
        pick = rng.choice(len(joints), size=count, replace=len(joints) < count)
        centres = np.asarray(joints, np.float64)[pick] + rng.uniform(-side / 4, side / 4, (count, 2))
    else:
        centres = rng.uniform((0, 0), (w, h), (count, 2))
    out = []
    for cx, cy in centres:
        x0 = int(np.clip(round(cx - side / 2), 0, w - side))
        y0 = int(np.clip(round(cy - side / 2), 0, h - side))
        out.append((x0, y0, _texture(side, rng)))
    return out


def paste(image: np.ndarray, patches: list[tuple[int, int, np.ndarray]]) -> np.ndarray:
    """A copy of ``image`` with ``patches`` ([(x0, y0, patch)], from ``occluders``) pasted in."""
    out = image.copy()
    for x0, y0, patch in patches:
        out[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]] = patch
    return out


def occlusion(
    image: np.ndarray, severity: int, rng: np.random.Generator, joints: np.ndarray | None = None
) -> np.ndarray:
    """Textured square patches over joints (``occluders``); ``joints`` (N, 2) in pixels."""
    return paste(image, occluders(image.shape[:2], severity, rng, joints))


def drop_frames(frames: np.ndarray, severity: int, rng: np.random.Generator, key: int) -> np.ndarray:
    """Each neighbour of the keyframe (``frames`` (T, H, W, 3), keyframe at ``key``) is replaced
    by the keyframe with probability ``FRAME_DROP_PROB``. With T = 1 this is the identity."""
    p = _level(FRAME_DROP_PROB, severity)
    out = frames.copy()
    for t in range(len(frames)):
        if t != key and rng.random() < p:
            out[t] = frames[key]
    return out


# The per-image corruptions, by name (frame_drop works on the clip, occlusion also takes joints).
IMAGE_CORRUPTIONS: dict[str, Callable[[np.ndarray, int, np.random.Generator], np.ndarray]] = {
    "motion_blur": motion_blur,
    "defocus": defocus,
    "gaussian_noise": gaussian_noise,
    "low_light": low_light,
    "jpeg": jpeg,
}
