"""Gaussian heatmap codec: keypoints <-> heatmaps, with DARK decoding and flip-test support.

Conventions (shared with :mod:`cmpose.ops.geometry`):

* Coordinates are pixels with the origin at the centre of the top-left pixel; sizes are
  ``(width, height)``. Crop size ``(W, H)`` = ``input_size``, heatmap size ``(Wh, Hh)`` =
  ``heatmap_size``.
* Crop <-> heatmap mapping is the unbiased one of UDP (Huang et al., "The Devil is in the
  Details", CVPR 2020)::

      x_hm = x_in * (Wh - 1) / (W - 1),    y_hm = y_in * (Hh - 1) / (H - 1)

  i.e. the first and last pixel centres of the crop map onto the first and last heatmap pixel
  centres. Together with the pixel-centre flip ``x -> W - 1 - x`` of
  :func:`cmpose.ops.geometry.flip_keypoints` this commutes with flipping: a joint at ``x_in``
  in the flipped crop is at ``Wh - 1 - x_hm`` on the heatmap, which :meth:`HeatmapCodec.flip_back`
  turns back into ``x_hm`` by reversing the columns. The usual ``x_in * Wh / W`` mapping with the
  ``x -> W - x`` flip instead shifts flipped predictions by about one heatmap pixel, which is why
  ViTPose and mmpose's ``UDPHeatmap`` codec (used by the ViTPose configs) adopt UDP.
* Targets are unnormalised Gaussians (peak 1.0 at the exact sub-pixel location, no rounding of
  the centre, as in UDP's target encoding). We evaluate the full separable Gaussian rather than
  a 3-sigma window: it costs J * (Wh + Hh) exponentials plus an outer product, and keeps the
  target smooth (no truncation step), which also keeps its logarithm exactly quadratic for DARK.
* Decoding is argmax + DARK (Zhang et al., "Distribution-Aware Coordinate Representation for
  Human Pose Estimation", CVPR 2020): blur the map with a Gaussian of the target's sigma
  ("distribution modulation"), take the log, and move from the integer maximum by one Newton
  step ``-H^-1 g`` with finite-difference gradient ``g`` and Hessian ``H``. The blur is only
  needed at the 3 x 3 pixels around each maximum, so we evaluate it there (a local separable
  convolution, identical to ``cv2.GaussianBlur(..., borderType=cv2.BORDER_CONSTANT)`` at those
  pixels) for all B x J maps at once instead of blurring every full map.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TypeVar

import numpy as np
import torch
from numpy.typing import ArrayLike

from cmpose.keypoints import FLIP_INDEX

__all__ = ["HeatmapCodec", "flip_back"]

HeatmapArray = TypeVar("HeatmapArray", np.ndarray, torch.Tensor)

# Floor before the log in DARK: the blurred map is >= 0 but may be exactly 0 far from any peak.
_LOG_FLOOR = 1e-10
# Smallest Hessian determinant (in log-heatmap units / px^4) treated as invertible. A clean target
# blurred by DARK is a Gaussian with variance 2 sigma^2, so det = 1 / (4 sigma^4), far above this.
_MIN_DET = 1e-12


class HeatmapCodec:
    """Encode keypoints into Gaussian heatmaps and decode heatmaps into keypoints (UDP + DARK).

    Args:
        input_size: Crop ``(W, H)`` in pixels.
        heatmap_size: Heatmap ``(Wh, Hh)`` in pixels.
        sigma: Gaussian standard deviation in heatmap pixels (2.0 for 64 x 48, as in ViTPose).
    """

    def __init__(
        self,
        input_size: tuple[int, int] = (192, 256),
        heatmap_size: tuple[int, int] = (48, 64),
        sigma: float = 2.0,
    ) -> None:
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        if min(self.input_size) < 2 or min(self.heatmap_size) < 2:
            # UDP divides by (size - 1).
            raise ValueError(f"input_size and heatmap_size must be >= 2, got {input_size} and {heatmap_size}")
        if not (math.isfinite(sigma) and sigma > 0):
            raise ValueError(f"sigma must be positive and finite, got {sigma}")
        self.sigma = float(sigma)
        w_in, h_in = self.input_size
        w_hm, h_hm = self.heatmap_size
        # Heatmap pixels per crop pixel along (x, y), UDP.
        self._to_hm = np.array([(w_hm - 1) / (w_in - 1), (h_hm - 1) / (h_in - 1)])
        # DARK modulation kernel: same sigma as the target (Zhang et al. 2020), cut at 3 sigma.
        radius = max(1, math.ceil(3.0 * self.sigma))
        taps = np.arange(-radius, radius + 1, dtype=np.float64)
        kernel = np.exp(-(taps**2) / (2.0 * self.sigma**2))
        self._blur_kernel = kernel / kernel.sum()
        self._blur_radius = radius
        self._xs = np.arange(w_hm, dtype=np.float64)
        self._ys = np.arange(h_hm, dtype=np.float64)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(input_size={self.input_size}, heatmap_size={self.heatmap_size}, "
            f"sigma={self.sigma})"
        )

    def to_heatmap(self, points: ArrayLike) -> np.ndarray:
        """Map crop pixel coordinates (..., 2) to heatmap coordinates (..., 2) float64 (UDP)."""
        return np.asarray(points, dtype=np.float64) * self._to_hm

    def to_input(self, points: ArrayLike) -> np.ndarray:
        """Map heatmap coordinates (..., 2) to crop pixel coordinates (..., 2) float64 (UDP)."""
        return np.asarray(points, dtype=np.float64) / self._to_hm

    def encode(self, keypoints: ArrayLike, visible: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
        """Build the training target for one crop.

        Args:
            keypoints: (J, 2) keypoint ``(x, y)`` in crop pixels (extra columns are ignored).
            visible: (J,) visibility flags or weights; a joint counts as labelled when > 0.

        Returns:
            ``heatmaps`` (J, Hh, Wh) float32, an unnormalised Gaussian (amplitude 1.0) centred at
            each joint's exact sub-pixel heatmap location, and ``weights`` (J,) float32: 1.0 for
            labelled joints whose 3-sigma square overlaps the heatmap, else 0.0 with an all-zero
            map (mmpose's rule, so joints just outside the crop still teach the border).
        """
        kpts = np.asarray(keypoints, dtype=np.float64)
        vis = np.asarray(visible).reshape(-1)
        if kpts.ndim != 2 or kpts.shape[1] < 2 or vis.shape[0] != kpts.shape[0]:
            raise ValueError(f"keypoints must be (J, 2) and visible (J,), got {kpts.shape} and {vis.shape}")
        w_hm, h_hm = self.heatmap_size
        mu = kpts[:, :2] * self._to_hm  # (J, 2) heatmap coordinates
        reach = 3.0 * self.sigma
        with np.errstate(invalid="ignore"):  # NaN coordinates fail every comparison -> weight 0
            on_map = (
                (mu[:, 0] + reach >= 0)
                & (mu[:, 0] - reach <= w_hm - 1)
                & (mu[:, 1] + reach >= 0)
                & (mu[:, 1] - reach <= h_hm - 1)
            )
        keep = (vis > 0) & on_map
        weights = keep.astype(np.float32)

        # Separable Gaussian: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2).
        # Dropped joints get mu = 0 here and are zeroed below, so no NaN reaches the exp.
        mu = np.where(keep[:, None], mu, 0.0)
        inv_two_var = 1.0 / (2.0 * self.sigma**2)
        gx = np.exp(-((self._xs[None, :] - mu[:, 0:1]) ** 2) * inv_two_var)  # (J, Wh)
        gy = np.exp(-((self._ys[None, :] - mu[:, 1:2]) ** 2) * inv_two_var)  # (J, Hh)
        gy *= weights[:, None]
        heatmaps = (gy.astype(np.float32)[:, :, None]) * (gx.astype(np.float32)[:, None, :])
        return heatmaps, weights

    def decode(self, heatmaps: np.ndarray | torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """Decode heatmaps into crop-pixel keypoints with argmax + DARK refinement.

        The refinement is skipped (integer argmax kept) for maxima on the heatmap border, where
        the finite differences would need pixels outside the map, and where the log-Hessian is
        not negative definite (flat or saddle-shaped peaks, e.g. all-zero maps).

        Args:
            heatmaps: (B, J, Hh, Wh) or (J, Hh, Wh), numpy array or torch tensor (any float dtype
                and device; it is copied to CPU float32).

        Returns:
            ``keypoints`` float64 in crop pixels, (B, J, 2) for 4-D input or (J, 2) for 3-D input,
            and ``scores`` float64, (B, J) or (J,): the maximum heatmap value, taken before the
            DARK blur.
        """
        maps = _to_numpy_float32(heatmaps)
        if maps.ndim not in (3, 4):
            raise ValueError(f"heatmaps must be (B, J, Hh, Wh) or (J, Hh, Wh), got {maps.shape}")
        lead = maps.shape[:-2]
        h_hm, w_hm = maps.shape[-2:]
        if (w_hm, h_hm) != self.heatmap_size:
            raise ValueError(f"heatmaps are {w_hm}x{h_hm} (WxH) but the codec expects {self.heatmap_size}")
        flat = maps.reshape(-1, h_hm, w_hm)
        n = flat.shape[0]

        idx = flat.reshape(n, -1).argmax(axis=1)
        scores = flat.reshape(n, -1)[np.arange(n), idx].astype(np.float64)
        py, px = np.divmod(idx, w_hm)
        coords = np.stack([px, py], axis=1).astype(np.float64)

        interior = np.flatnonzero((px > 0) & (px < w_hm - 1) & (py > 0) & (py < h_hm - 1))
        if interior.size:
            coords[interior] += self._dark_offsets(flat, interior, px[interior], py[interior])

        keypoints = coords / self._to_hm
        return keypoints.reshape(*lead, 2), scores.reshape(lead)

    def _dark_offsets(self, flat: np.ndarray, sel: np.ndarray, px: np.ndarray, py: np.ndarray) -> np.ndarray:
        """Newton step (K, 2) from each integer maximum of the blurred log-heatmap (DARK)."""
        n_sel = sel.shape[0]
        h_hm, w_hm = flat.shape[-2:]
        r = self._blur_radius
        # The blurred 3x3 neighbourhood needs the raw (2r + 3)^2 patch around the maximum; pixels
        # outside the map count as 0 (zero padding, as mmpose's DARK blur does).
        offs = np.arange(-r - 1, r + 2)
        ys = py[:, None] + offs  # (K, P)
        xs = px[:, None] + offs
        y_ok = (ys >= 0) & (ys < h_hm)
        x_ok = (xs >= 0) & (xs < w_hm)
        patch = flat[
            sel[:, None, None],
            np.clip(ys, 0, h_hm - 1)[:, :, None],
            np.clip(xs, 0, w_hm - 1)[:, None, :],
        ].astype(np.float64)
        # Negative network outputs have no meaning as a likelihood; clamp before the blur.
        patch = np.maximum(patch, 0.0) * (y_ok[:, :, None] & x_ok[:, None, :])

        k = self._blur_kernel
        win = 2 * r + 1
        rows = np.lib.stride_tricks.sliding_window_view(patch, win, axis=1) @ k  # (K, 3, P)
        blurred = np.lib.stride_tricks.sliding_window_view(rows, win, axis=2) @ k  # (K, 3, 3)
        logm = np.log(np.maximum(blurred, _LOG_FLOOR))

        # Central differences at the centre (1, 1) of the 3x3 log neighbourhood (rows = y).
        c = logm[:, 1, 1]
        gx = 0.5 * (logm[:, 1, 2] - logm[:, 1, 0])
        gy = 0.5 * (logm[:, 2, 1] - logm[:, 0, 1])
        hxx = logm[:, 1, 2] - 2.0 * c + logm[:, 1, 0]
        hyy = logm[:, 2, 1] - 2.0 * c + logm[:, 0, 1]
        hxy = 0.25 * (logm[:, 2, 2] - logm[:, 2, 0] - logm[:, 0, 2] + logm[:, 0, 0])
        det = hxx * hyy - hxy**2

        offsets = np.zeros((n_sel, 2), dtype=np.float64)
        # Only a negative-definite Hessian describes a maximum; elsewhere the step is meaningless.
        ok = (hxx < 0) & (det > _MIN_DET)
        inv_det = 1.0 / det[ok]
        offsets[ok, 0] = -(hyy[ok] * gx[ok] - hxy[ok] * gy[ok]) * inv_det
        offsets[ok, 1] = -(hxx[ok] * gy[ok] - hxy[ok] * gx[ok]) * inv_det
        # The derivatives only describe the 3x3 neighbourhood; a longer step extrapolates noise.
        return np.clip(offsets, -1.0, 1.0)

    def flip_back(self, heatmaps: HeatmapArray, flip_index: Sequence[int] = FLIP_INDEX) -> HeatmapArray:
        """Same as the module-level :func:`flip_back`."""
        return flip_back(heatmaps, flip_index)


def flip_back(heatmaps: HeatmapArray, flip_index: Sequence[int] = FLIP_INDEX) -> HeatmapArray:
    """Turn heatmaps predicted on a horizontally flipped crop back into the original frame.

    Reverses the width axis and swaps left/right channels (output channel ``j`` is input channel
    ``flip_index[j]``). With the UDP mapping and the ``x -> W - 1 - x`` flip (module docstring)
    the result lines up with the un-flipped prediction with no shift, so the two can be averaged.

    Args:
        heatmaps: (B, J, Hh, Wh) or (J, Hh, Wh), numpy array or torch tensor.
        flip_index: (J,) permutation, default :data:`cmpose.keypoints.FLIP_INDEX`.

    Returns:
        Flipped heatmaps of the same type, shape, dtype (and device) as the input; a new array.
    """
    if heatmaps.ndim not in (3, 4) or heatmaps.shape[-3] != len(flip_index):
        raise ValueError(
            f"heatmaps must be (B, J={len(flip_index)}, Hh, Wh) or (J, Hh, Wh), got {tuple(heatmaps.shape)}"
        )
    if isinstance(heatmaps, torch.Tensor):
        index = torch.as_tensor(list(flip_index), dtype=torch.long, device=heatmaps.device)
        return heatmaps.index_select(-3, index).flip(-1)
    index = np.asarray(flip_index, dtype=np.intp)
    return np.ascontiguousarray(np.asarray(heatmaps)[..., index, :, ::-1])


def _to_numpy_float32(heatmaps: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(heatmaps, torch.Tensor):
        # float() first: numpy has no bfloat16, and AMP outputs may be half precision.
        return heatmaps.detach().float().cpu().numpy()
    return np.asarray(heatmaps, dtype=np.float32)
