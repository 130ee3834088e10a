"""Augmentation as pure functions: drawing the parameters, half-body boxes, colour jitter.

All randomness comes from a ``numpy.random.Generator`` passed in by the dataset's
``__getitem__``; nothing here keeps state.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from cmpose.data.config import AugmentConfig
from cmpose.keypoints import LOWER_BODY, UPPER_BODY

UPPER_BODY_PROB = 0.7


@dataclass(frozen=True)
class AugmentParams:
    scale: float = 1.0  # multiplies the crop region size
    rotation: float = 0.0  # degrees, counter-clockwise
    flip: bool = False
    half_body: bool = False
    brightness: float = 1.0
    contrast: float = 1.0
    saturation: float = 1.0
    shift: tuple[float, float] = (0.0, 0.0)  # centre offset, in units of the crop region's w, h


def draw_augment(cfg: AugmentConfig, rng: np.random.Generator) -> AugmentParams:
    """Draw one clip's augmentation. Scale and rotation follow the HRNet/ViTPose recipe: a
    normal draw clipped to +-1 (scale) or +-2 (rotation) standard deviations; the centre shift
    follows mmpose 1.x's RandomBBoxTransform (uniform in +-shift of the region, with shift_prob)."""
    s = float(np.clip(rng.normal() * cfg.scale + 1.0, 1.0 - cfg.scale, 1.0 + cfg.scale))
    r = 0.0
    if rng.random() < cfg.rotation_prob:
        r = float(np.clip(rng.normal() * cfg.rotation, -2 * cfg.rotation, 2 * cfg.rotation))
    shift = (0.0, 0.0)
    # Drawn only when enabled, so configs without a shift keep their random stream.
    if cfg.shift > 0 and rng.random() < cfg.shift_prob:
        dx, dy = rng.uniform(-cfg.shift, cfg.shift, 2)
        shift = (float(dx), float(dy))
    return AugmentParams(
        scale=s,
        rotation=r,
        flip=bool(rng.random() < cfg.flip_prob),
        half_body=bool(rng.random() < cfg.half_body_prob),
        brightness=float(rng.uniform(1 - cfg.brightness, 1 + cfg.brightness)),
        contrast=float(rng.uniform(1 - cfg.contrast, 1 + cfg.contrast)),
        saturation=float(rng.uniform(1 - cfg.saturation, 1 + cfg.saturation)),
        shift=shift,
    )


def half_body_region(
    keypoints: np.ndarray, aspect_ratio: float, padding: float, min_joints: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray] | None:
    """Centre (2,) and size (2,) of an upper- or lower-body crop (HRNet's half-body transform).

    Args:
        keypoints: (J, 3) image coordinates and visibility.
        aspect_ratio: crop width / height.
        padding: enlargement of the joints' extent (HRNet uses 1.5).
        min_joints: only people with more annotated joints than this get a half-body crop.

    Returns:
        None when the person has too few joints or the chosen half has fewer than 2.
    """
    vis = keypoints[:, 2] > 0
    if vis.sum() <= min_joints:
        return None
    upper = [j for j in UPPER_BODY if vis[j]]
    lower = [j for j in LOWER_BODY if vis[j]]
    # Upper body preferred with probability 0.7 (mmpose's upper_prioritized_prob; HRNet's
    # randn() < 0.5 gives 0.69).
    chosen = upper if (rng.random() < UPPER_BODY_PROB and len(upper) > 2) or len(lower) < 2 else lower
    if len(chosen) < 2:
        return None
    pts = keypoints[chosen, :2]
    lo, hi = pts.min(0), pts.max(0)
    # Centre of the joints' extent, so the padded box always contains them (HRNet centres on
    # the joints' mean, which can leave an outlying joint, e.g. a far ankle, outside the crop).
    centre = (lo + hi) / 2
    w, h = hi - lo
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    size = np.array([w, h]) * padding
    if size.min() <= 1.0:
        return None
    return centre, size


# Grey weights in BGR order (ITU-R BT.601, as torchvision's rgb_to_grayscale).
_GRAY_BGR = np.array([0.114, 0.587, 0.299])


def color_normalize(
    crops: np.ndarray, params: AugmentParams, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    """Colour jitter, BGR -> RGB and normalisation of uint8 crops.

    Args:
        crops: (T, H, W, 3) uint8 BGR, all frames of a clip (they get the same jitter).
        params: brightness, contrast, saturation factors (1.0 = unchanged).
        mean, std: (3,) RGB in 0..1 units.

    Returns:
        (T, 3, H, W) float32 RGB, normalised.
    """
    T, H, W, _ = crops.shape
    rows = crops.reshape(T * H, W, 3)
    b, c, s = params.brightness, params.contrast, params.saturation
    if (b, c, s) != (1.0, 1.0, 1.0):
        # Brightness scales; contrast blends with the clip's mean grey; saturation blends with
        # each pixel's grey (torchvision ColorJitter's three operations, folded into one 3x4
        # colour matrix). cv2.transform saturates to 0..255 once at the end, where torchvision
        # clamps after each step; the two differ only where an intermediate step leaves 0..255.
        mean_gray = float(np.dot(cv2.mean(rows)[:3], _GRAY_BGR)) * b
        mix = b * c * s * np.eye(3) + b * c * (1 - s) * np.tile(_GRAY_BGR, (3, 1))
        rows = cv2.transform(rows, np.hstack([mix, np.full((3, 1), (1 - c) * mean_gray)]))
    # Per-plane affine normalisation is ~4x faster than a float (T, H, W, 3) pass + transpose.
    out = np.empty((T, 3, H, W), np.float32)
    planes = cv2.split(rows)  # B, G, R planes of shape (T*H, W)
    for ch in range(3):
        scale = np.float32(1.0 / (255.0 * std[ch]))
        np.multiply(planes[2 - ch].reshape(T, H, W), scale, out=out[:, ch], dtype=np.float32)
        out[:, ch] -= np.float32(mean[ch] / std[ch])
    return out
