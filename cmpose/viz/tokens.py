"""Pictures of CM-Pose's token maps: TCIS importance and the kept / clustered split of stage 2.

Images are (H, W, 3) uint8 BGR. A token map is (Hp, Wp) over the crop's token grid; each token
covers a (H / Hp) x (W / Wp) cell of the crop.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence

import cv2
import numpy as np

from cmpose.viz.draw import draw_pose

__all__ = ["cluster_color", "draw_token_maps", "token_map_sheet"]

_GOLDEN = 0.618033988749895


def cluster_color(cluster_id: int) -> tuple[int, int, int]:
    """A distinct BGR colour per cluster id (hues spaced by the golden ratio)."""
    h = (cluster_id * _GOLDEN) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


def _cells(shape: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel edges of the token cells: ys (Hp + 1,), xs (Wp + 1,)."""
    (H, W), (Hp, Wp) = shape, grid
    return np.round(np.linspace(0, H, Hp + 1)).astype(int), np.round(np.linspace(0, W, Wp + 1)).astype(int)


def _check(crop_bgr: np.ndarray, *maps: np.ndarray | None) -> None:
    if crop_bgr.ndim != 3 or crop_bgr.shape[2] != 3 or crop_bgr.dtype != np.uint8:
        raise ValueError(f"crop must be (H, W, 3) uint8, got {crop_bgr.shape} {crop_bgr.dtype}")
    shapes = {np.shape(m) for m in maps if m is not None}
    if len(shapes) > 1 or any(len(s) != 2 for s in shapes):
        raise ValueError(f"token maps must all be (Hp, Wp), got {sorted(shapes)}")


def _importance_panel(crop: np.ndarray, importance: np.ndarray, vmin: float, vmax: float) -> np.ndarray:
    imp = np.asarray(importance, np.float64)
    norm = np.clip((imp - vmin) / (vmax - vmin), 0, 1) if vmax > vmin else np.zeros_like(imp)
    grid = (norm * 255).round().astype(np.uint8)
    # Nearest: one flat cell per token, so the picture shows what the model scored.
    up = cv2.resize(grid, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_NEAREST)
    return cv2.addWeighted(cv2.applyColorMap(up, cv2.COLORMAP_INFERNO), 0.6, crop, 0.4, 0)


def _cluster_panel(crop: np.ndarray, cluster_ids: np.ndarray) -> np.ndarray:
    ids = np.asarray(cluster_ids)
    ys, xs = _cells(crop.shape[:2], ids.shape)
    fill = crop.copy()
    for i in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[i, j] >= 0:
                fill[ys[i] : ys[i + 1], xs[j] : xs[j + 1]] = cluster_color(int(ids[i, j]))
    # Clustered cells: the cluster's colour over a dimmed crop; kept cells: the crop as it is.
    panel = np.where((ids >= 0).repeat(np.diff(ys), 0).repeat(np.diff(xs), 1)[..., None],
                     cv2.addWeighted(fill, 0.65, crop, 0.35, 0), crop)  # fmt: skip
    for i in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            if ids[i, j] < 0:  # kept (causal) token: outlined
                cv2.rectangle(panel, (xs[j], ys[i]), (xs[j + 1] - 1, ys[i + 1] - 1), (255, 255, 255), 1)
    return panel


def _panels(
    crop: np.ndarray,
    importance: np.ndarray,
    cluster_ids: np.ndarray | None,
    keypoints: np.ndarray | None,
    value_range: tuple[float, float] | None,
) -> list[np.ndarray]:
    _check(crop, importance, cluster_ids)
    first = crop.copy()
    if keypoints is not None:
        kp = np.asarray(keypoints, np.float64)
        draw_pose(first, np.concatenate([kp[:, :2], np.ones((len(kp), 1))], axis=1), (0, 255, 0), 1)
    imp = np.asarray(importance, np.float64)
    vmin, vmax = value_range if value_range is not None else (float(imp.min()), float(imp.max()))
    panels = [first, _importance_panel(crop, imp, vmin, vmax)]
    if cluster_ids is not None:
        panels.append(_cluster_panel(crop, cluster_ids))
    return panels


def draw_token_maps(
    crop_bgr: np.ndarray,
    importance: np.ndarray,
    cluster_ids: np.ndarray | None = None,
    keypoints: np.ndarray | None = None,
    value_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Side-by-side panels of one crop: the crop (with ``keypoints`` (J, 2) in crop pixels drawn
    when given), the TCIS importance (Hp, Wp) as a colour map over it (inferno: bright = kept by
    the model's attention; scaled to the map's min..max unless ``value_range`` is given), and,
    with ``cluster_ids`` (Hp, Wp; -1 = kept), the kept tokens outlined in white over the crop and
    the clustered ones filled with their cluster's colour.

    Returns:
        (H, W * k, 3) uint8 BGR, k = 3 with cluster ids, else 2.
    """
    return np.hstack(_panels(crop_bgr, importance, cluster_ids, keypoints, value_range))


def token_map_sheet(
    crops: np.ndarray,
    importance: np.ndarray,
    cluster_ids: np.ndarray | None = None,
    keypoints: np.ndarray | None = None,
    labels: Sequence[str] | None = None,
) -> np.ndarray:
    """The token maps of a clip's T frames, side by side: column t is frame t (labelled
    ``labels[t]``, default offsets relative to the keyframe), rows are the crop, the importance
    (one colour scale for the whole clip, so frames compare) and, with ``cluster_ids``, the
    kept / clustered tokens (a cluster has one colour across all frames).

    Args:
        crops: (T, H, W, 3) uint8 BGR.
        importance: (T, Hp, Wp). cluster_ids: (T, Hp, Wp) or None.
        keypoints: (J, 2) keyframe keypoints in crop pixels, drawn on the keyframe's crop.

    Returns:
        (k * H + label strip, T * W, 3) uint8 BGR.
    """
    crops = np.asarray(crops)
    imp = np.asarray(importance, np.float64)
    T = crops.shape[0]
    if imp.shape[0] != T or (cluster_ids is not None and np.shape(cluster_ids)[0] != T):
        raise ValueError(f"{T} crops but importance {imp.shape} / cluster_ids {np.shape(cluster_ids)}")
    key = T // 2
    rng = (float(imp.min()), float(imp.max()))
    labels = labels or [("key" if t == key else f"{t - key:+d}") for t in range(T)]
    columns = []
    for t in range(T):
        panels = _panels(
            crops[t],
            imp[t],
            None if cluster_ids is None else cluster_ids[t],
            keypoints if t == key else None,
            rng,
        )
        strip = np.full((18, crops.shape[2], 3), 32, np.uint8)
        cv2.putText(
            strip, labels[t], (4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA
        )
        columns.append(np.vstack([strip, *panels]))
    return np.hstack(columns)
