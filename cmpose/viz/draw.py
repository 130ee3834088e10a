"""Small drawing functions. Images are (H, W, 3) uint8 BGR, as OpenCV reads and writes them."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from cmpose.keypoints import SKELETON

# Distinct colours per track id (Okabe-Ito, colour-blind safe), given in RGB and stored as BGR.
_PALETTE = np.array(
    [[230, 159, 0], [86, 180, 233], [0, 158, 115], [240, 228, 66], [0, 114, 178], [213, 94, 0],
     [204, 121, 167], [255, 255, 255], [120, 120, 255], [120, 255, 120]],
    dtype=np.uint8,
)[:, ::-1]  # fmt: skip


def track_color(track_id: int) -> tuple[int, int, int]:
    return tuple(int(c) for c in _PALETTE[track_id % len(_PALETTE)])


def draw_pose(
    img: np.ndarray,
    keypoints: np.ndarray,
    color: tuple[int, int, int] = (0, 255, 0),
    thickness: int = 2,
    min_score: float = 0.0,
) -> np.ndarray:
    """Draw a skeleton in place. keypoints: (J, 3) x, y, visibility or score; joints with a third
    column <= ``min_score`` are not drawn."""
    ok = keypoints[:, 2] > min_score
    pts = np.round(keypoints[:, :2]).astype(int)
    for a, b in SKELETON:
        if ok[a] and ok[b]:
            cv2.line(img, tuple(pts[a]), tuple(pts[b]), color, thickness, cv2.LINE_AA)
    for j in np.flatnonzero(ok):
        cv2.circle(img, tuple(pts[j]), thickness + 1, (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(img, tuple(pts[j]), thickness + 1, color, 1, cv2.LINE_AA)
    return img


def draw_box(
    img: np.ndarray, box_xywh: Sequence[float], color: tuple[int, int, int], label: str = ""
) -> np.ndarray:
    x, y, w, h = (int(round(v)) for v in box_xywh)
    cv2.rectangle(img, (x, y), (x + w, y + h), color, 1, cv2.LINE_AA)
    if label:
        cv2.putText(img, label, (x, max(y - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, color, 1, cv2.LINE_AA)
    return img


def shade_regions(
    img: np.ndarray, polygons: Sequence[np.ndarray], color=(0, 0, 255), alpha: float = 0.35
) -> np.ndarray:  # noqa: ANN001
    """Shade polygons (each (P, 2)) in place, e.g. PoseTrack's ignore regions."""
    if not polygons:
        return img
    overlay = img.copy()
    cv2.fillPoly(overlay, [np.round(p).astype(np.int32) for p in polygons], color)
    cv2.addWeighted(overlay, alpha, img, 1 - alpha, 0, dst=img)
    return img


def heatmap_overlay(img: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Max over joints of (J, Hh, Wh) heatmaps, resized to the image and blended as a colour map."""
    hm = np.clip(heatmaps.max(0), 0, 1)
    hm = cv2.resize((hm * 255).astype(np.uint8), (img.shape[1], img.shape[0]), interpolation=cv2.INTER_LINEAR)
    return cv2.addWeighted(cv2.applyColorMap(hm, cv2.COLORMAP_JET), alpha, img, 1 - alpha, 0)


def denormalize(frame: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(3, H, W) normalised RGB float -> (H, W, 3) uint8 BGR."""
    rgb = frame.transpose(1, 2, 0) * np.asarray(std) + np.asarray(mean)
    return np.ascontiguousarray((np.clip(rgb, 0, 1) * 255).round().astype(np.uint8)[..., ::-1])


def contact_sheet(
    images: Sequence[np.ndarray], labels: Sequence[str] | None = None, columns: int = 4, tile_width: int = 480
) -> np.ndarray:
    """Tile images (resized to a common width, padded to a common height) into one image."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    tiles = []
    for i, img in enumerate(images):
        h = max(1, round(img.shape[0] * tile_width / img.shape[1]))
        tile = cv2.resize(img, (tile_width, h), interpolation=cv2.INTER_AREA)
        if labels is not None:
            cv2.putText(tile, labels[i], (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (0, 0, 0), 3, cv2.LINE_AA)
            cv2.putText(
                tile, labels[i], (6, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.55, (255, 255, 255), 1, cv2.LINE_AA
            )
        tiles.append(tile)
    tile_h = max(t.shape[0] for t in tiles)
    columns = min(columns, len(tiles))
    rows = -(-len(tiles) // columns)
    sheet = np.full((rows * tile_h, columns * tile_width, 3), 32, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet[r * tile_h : r * tile_h + t.shape[0], c * tile_width : (c + 1) * tile_width] = t
    return sheet
