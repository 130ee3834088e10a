"""Crop geometry for top-down pose estimation: boxes, affine crops and horizontal flips.

Conventions (shared with :mod:`cmpose.ops.heatmap`; change them together or not at all):

* **Pixel coordinates.** A point ``(x, y)`` is in pixels with the origin at the *centre* of the
  top-left pixel, so pixel ``(i, j)`` covers ``[i - 0.5, i + 0.5] x [j - 0.5, j + 0.5]``. This is
  the convention of ``cv2.warpAffine`` (which samples the source at ``M^-1 @ (i, j, 1)`` for
  output pixel ``(i, j)``) and of ``cv2.flip``.
* **Sizes** are ``(width, height)``, as in OpenCV.
* **Box centre** is ``(x + w / 2, y + h / 2)`` for a box ``(x, y, w, h)``, following mmpose's
  ``bbox_xywh2cs``. Under the pixel-centre convention the exact centre of the pixels covered by
  the box would be ``x + (w - 1) / 2``; the half-pixel difference only moves the crop window and
  is undone exactly when predictions are mapped back through the inverse of the same matrix, so
  we keep the widely used formula (detector boxes and annotations are not half-pixel accurate).
* **Unbiased crop mapping (UDP, Huang et al., "The Devil is in the Details", CVPR 2020).** A
  region of size ``scale = (sw, sh)`` centred at ``center`` maps onto an output of
  ``output_size = (W, H)`` pixels with factors ``(W - 1) / sw`` and ``(H - 1) / sh``: the region's
  extent lands exactly on the span from the first to the last output pixel *centre*, and
  ``center`` lands on the output centre ``((W - 1) / 2, (H - 1) / 2)``. Measuring sizes in
  pixel-centre units (``W - 1`` rather than ``W``) makes the mapping commute with the flip
  ``x -> W - 1 - x`` and with the crop -> heatmap rescaling ``x * (Wh - 1) / (W - 1)`` used by
  the heatmap codec, so flip-test averaging and heatmap decoding carry no half-pixel bias. The
  classic ``W / sw`` mapping with a ``x -> W - x`` flip is off by one pixel after flipping, which
  is why ViTPose (and mmpose's ``UDPHeatmap`` codec) use UDP.
* **Rotation** is in degrees, counter-clockwise positive as the image is displayed (y down), as
  in ``cv2.getRotationMatrix2D`` and mmpose's ``get_warp_matrix``: with a positive angle the crop
  shows the image content turned counter-clockwise.

All computation is in float64; :func:`get_affine_matrix` returns float32 because that is what
``cv2.warpAffine`` consumes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

from cmpose.keypoints import FLIP_INDEX

__all__ = [
    "apply_affine",
    "box_to_center_scale",
    "flip_keypoints",
    "get_affine_matrix",
    "invert_affine",
]


def box_to_center_scale(
    box_xywh: ArrayLike, aspect_ratio: float = 0.75, padding: float = 1.25
) -> tuple[np.ndarray, np.ndarray]:
    """Convert a box to the (centre, scale) pair that defines a crop.

    The box is grown (never shrunk) along its shorter side to reach ``aspect_ratio`` = w / h,
    then both sides are multiplied by ``padding`` so the crop includes some context, as in
    mmpose's ``bbox_xywh2cs`` + ``fix_aspect_ratio``.

    Args:
        box_xywh: ``(x, y, w, h)`` in pixels, ``(x, y)`` the top-left corner.
        aspect_ratio: Target width / height of the crop, normally the model's input W / H
            (192 / 256 = 0.75).
        padding: Factor applied to both sides after fixing the aspect ratio.

    Returns:
        ``center`` (2,) float64 = ``(x + w / 2, y + h / 2)`` (mmpose's formula; see the module
        docstring) and ``scale`` (2,) float64 = crop ``(width, height)`` in image pixels, with
        ``scale[0] / scale[1] == aspect_ratio`` up to rounding.

    Raises:
        ValueError: If the box does not have 4 finite values with w > 0 and h > 0, or
            ``aspect_ratio`` / ``padding`` is not a positive finite number.
    """
    box = np.asarray(box_xywh, dtype=np.float64).reshape(-1)
    if box.shape != (4,):
        raise ValueError(f"box must be (x, y, w, h), got shape {np.shape(box_xywh)}: {box_xywh!r}")
    x, y, w, h = (float(v) for v in box)
    if not (np.all(np.isfinite(box)) and w > 0 and h > 0):
        raise ValueError(f"box (x, y, w, h) = {tuple(box.tolist())} needs finite values and w, h > 0")
    if not (np.isfinite(aspect_ratio) and aspect_ratio > 0):
        raise ValueError(f"aspect_ratio must be positive and finite, got {aspect_ratio}")
    if not (np.isfinite(padding) and padding > 0):
        raise ValueError(f"padding must be positive and finite, got {padding}")

    center = np.array([x + w * 0.5, y + h * 0.5], dtype=np.float64)
    if w > aspect_ratio * h:
        h = w / aspect_ratio
    else:
        w = h * aspect_ratio
    scale = np.array([w, h], dtype=np.float64) * padding
    return center, scale


def get_affine_matrix(
    center: ArrayLike,
    scale: ArrayLike,
    rotation_deg: float,
    output_size: tuple[int, int],
    inverse: bool = False,
) -> np.ndarray:
    """Affine matrix that crops a (rotated) region of the image into a fixed-size output.

    Forward mapping (image -> output), with ``c = center``, ``(sw, sh) = scale``,
    ``(W, H) = output_size`` and ``R`` the rotation of ``cv2.getRotationMatrix2D``
    (``[[cos, sin], [-sin, cos]]``, counter-clockwise positive)::

        out = diag((W - 1) / sw, (H - 1) / sh) @ R @ (p - c) + ((W - 1) / 2, (H - 1) / 2)

    so ``c`` lands on the output centre and ``c -/+ R^T (sw/2, sh/2)`` on the first/last output
    pixel centres (UDP, Huang et al. CVPR 2020; see the module docstring).

    Args:
        center: (2,) region centre in image pixels.
        scale: (2,) region (width, height) in image pixels, both > 0.
        rotation_deg: Rotation in degrees, counter-clockwise positive.
        output_size: Output ``(W, H)`` in pixels, both >= 2.
        inverse: If True, return the output -> image matrix instead.

    Returns:
        (2, 3) float32 matrix for ``cv2.warpAffine(img, M, output_size)`` (forward) or for
        mapping output points back to the image (inverse).

    Raises:
        ValueError: If the scale or output size is not valid.
    """
    c = np.asarray(center, dtype=np.float64).reshape(2)
    s = np.asarray(scale, dtype=np.float64).reshape(2)
    out_w, out_h = (int(v) for v in output_size)
    if not (np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError(f"scale must be finite and > 0, got {tuple(s.tolist())}")
    if not np.all(np.isfinite(c)):
        raise ValueError(f"center must be finite, got {tuple(c.tolist())}")
    if out_w < 2 or out_h < 2:
        # UDP divides by (W - 1); a 1-pixel axis has no extent to map the region onto.
        raise ValueError(f"output_size must be >= 2 in both axes, got {output_size}")
    if not np.isfinite(rotation_deg):
        raise ValueError(f"rotation_deg must be finite, got {rotation_deg}")

    theta = np.deg2rad(float(rotation_deg))
    cos, sin = np.cos(theta), np.sin(theta)
    rot = np.array([[cos, sin], [-sin, cos]])
    linear = np.diag([(out_w - 1) / s[0], (out_h - 1) / s[1]]) @ rot
    out_center = np.array([(out_w - 1) * 0.5, (out_h - 1) * 0.5])
    forward = np.empty((2, 3), dtype=np.float64)
    forward[:, :2] = linear
    forward[:, 2] = out_center - linear @ c
    # Invert in float64 before the cast so the inverse is not built from a rounded matrix.
    matrix = invert_affine(forward) if inverse else forward
    return matrix.astype(np.float32)


def apply_affine(points: ArrayLike, matrix: ArrayLike) -> np.ndarray:
    """Apply a (2, 3) affine matrix to points.

    Args:
        points: (..., 2) array of ``(x, y)``.
        matrix: (2, 3) affine matrix, e.g. from :func:`get_affine_matrix`.

    Returns:
        (..., 2) float64 transformed points.
    """
    pts = np.asarray(points, dtype=np.float64)
    m = _as_affine(matrix)
    if pts.shape[-1:] != (2,):
        raise ValueError(f"points must have shape (..., 2), got {pts.shape}")
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(matrix: ArrayLike) -> np.ndarray:
    """Invert a (2, 3) affine matrix.

    Args:
        matrix: (2, 3) affine matrix ``[A | t]`` with invertible ``A``.

    Returns:
        (2, 3) matrix ``[A^-1 | -A^-1 t]``, computed in float64 and returned in the input's
        floating dtype (float64 for non-floating input).

    Raises:
        ValueError: If the matrix is not (2, 3) or its linear part is singular.
    """
    m = _as_affine(matrix)
    a = m[:, :2]
    det = a[0, 0] * a[1, 1] - a[0, 1] * a[1, 0]
    if not np.isfinite(det) or abs(det) < 1e-12:
        raise ValueError(f"affine matrix is singular (det = {det}): {m.tolist()}")
    a_inv = np.array([[a[1, 1], -a[0, 1]], [-a[1, 0], a[0, 0]]]) / det
    inv = np.empty((2, 3), dtype=np.float64)
    inv[:, :2] = a_inv
    inv[:, 2] = -a_inv @ m[:, 2]
    in_dtype = np.asarray(matrix).dtype
    return inv.astype(in_dtype if np.issubdtype(in_dtype, np.floating) else np.float64)


def flip_keypoints(
    keypoints: ArrayLike,
    width: float,
    flip_index: Sequence[int] = FLIP_INDEX,
    visibility: ArrayLike | None = None,
) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Mirror keypoints horizontally, as for an image flipped with ``cv2.flip(img, 1)``.

    ``x -> width - 1 - x`` (pixel-centre convention: pixel column i goes to column
    ``width - 1 - i``, exactly what ``cv2.flip`` does), ``y`` unchanged, and joints renamed left
    <-> right: output joint ``j`` is input joint ``flip_index[j]`` (the index is an involution,
    so "what j becomes" and "where j comes from" are the same table).

    Args:
        keypoints: (J, C) or (B, J, C) with C >= 2; column 0 is x, column 1 is y, any further
            columns (scores) are permuted but not changed.
        width: Width in pixels of the image (or crop) the coordinates live in.
        flip_index: (J,) permutation, default :data:`cmpose.keypoints.FLIP_INDEX`.
        visibility: Optional per-joint values (J,) or (B, J) (visibility flags, weights)
            permuted the same way.

    Returns:
        Flipped keypoints (same shape, float64); with ``visibility``, the tuple
        ``(keypoints, visibility)`` where visibility keeps its dtype.

    Raises:
        ValueError: If the shapes do not match ``flip_index``.
    """
    kpts = np.asarray(keypoints, dtype=np.float64)
    index = np.asarray(flip_index, dtype=np.intp)
    if kpts.ndim < 2 or kpts.shape[-1] < 2 or kpts.shape[-2] != index.shape[0]:
        raise ValueError(
            f"keypoints must be (..., J={index.shape[0]}, C>=2) to match flip_index, got {kpts.shape}"
        )
    flipped = kpts[..., index, :]  # fancy indexing copies, so the input is never modified
    flipped[..., 0] = (float(width) - 1.0) - flipped[..., 0]
    if visibility is None:
        return flipped
    vis = np.asarray(visibility)
    if vis.shape != kpts.shape[:-1]:
        raise ValueError(f"visibility must have shape {kpts.shape[:-1]}, got {vis.shape}")
    return flipped, vis[..., index]  # a copy, as above


def _as_affine(matrix: ArrayLike) -> np.ndarray:
    m = np.asarray(matrix, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"affine matrix must be (2, 3), got {m.shape}")
    return m
