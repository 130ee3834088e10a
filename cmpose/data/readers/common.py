"""Pieces shared by the PoseTrack readers: frame-number parsing, image roots, boxes."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

_NUMBERED = re.compile(r"^(\d+)(\.[A-Za-z0-9]+)$")


def parse_frame_name(name: str) -> tuple[int, int, str] | None:
    """``000012.jpg`` -> (12, 6, ".jpg"); None when the file name is not a plain frame number."""
    m = _NUMBERED.match(name)
    if m is None:
        return None
    return int(m.group(1)), len(m.group(1)), m.group(2)


def guess_image_root(ann_path: Path, file_name: str) -> Path:
    """The folder that ``file_name`` (as written in the annotation) is relative to.

    PoseTrack's ``file_name`` is relative to the dataset root (``images/val/...``), and annotation
    files live one or two levels below it (``annotations/val/x.json``, ``annotations/x.json``,
    PoseTrack21's ``posetrack_data/val/x.json``). Walk up from the annotation's folder and take the
    first folder where the image exists; fall back to two levels up.
    """
    folder = ann_path.resolve().parent
    for candidate in (folder, *folder.parents[:3]):
        if (candidate / file_name).exists():
            return candidate
    parents = folder.parents
    return parents[1] if len(parents) > 1 else folder


def clip_box(box: np.ndarray, image_size: tuple[int, int] | None) -> np.ndarray:
    """Clip an x, y, w, h box to the image (HRNet/mmpose sanitise GT boxes the same way)."""
    if image_size is None:
        return box
    w_img, h_img = image_size
    x1, y1 = max(box[0], 0.0), max(box[1], 0.0)
    x2, y2 = min(box[0] + box[2], float(w_img)), min(box[1] + box[3], float(h_img))
    return np.array([x1, y1, max(x2 - x1, 0.0), max(y2 - y1, 0.0)])


def box_from_keypoints(keypoints: np.ndarray, enlarge: float = 1.15) -> np.ndarray | None:
    """Box around the annotated joints (J, 3), grown by ``enlarge``; None with fewer than 2 joints.

    Used where the annotation has no person box (PoseTrack17 GT only has head boxes). The 15 %
    growth is cmpose's choice: joint extents are tighter than person boxes (no hair, hands, feet).
    """
    pts = keypoints[keypoints[:, 2] > 0, :2]
    if len(pts) < 2:
        return None
    lo, hi = pts.min(0), pts.max(0)
    size = (hi - lo) * enlarge
    if size.min() <= 0:
        return None
    centre = (lo + hi) / 2
    return np.array([centre[0] - size[0] / 2, centre[1] - size[1] / 2, size[0], size[1]])
