"""A simulated person detector for the val split: boxes in the COCO results format that
``cmpose.data.detections.load_detections`` reads, with the errors of a real detector.

- misses: about 4 % of fully visible people, more when occluded or cut by the border
  (about 5 % overall);
- jitter: centre and size noise, larger for occluded people, so most boxes have IoU > 0.7 with
  the ground truth; scores follow the box quality (IoU) with noise;
- false positives: about 0.3 per frame, mostly with low scores, a few confident ones, plus
  detections of the tiny crowd inside ignore regions, and an occasional duplicate box.

``cmpose synth`` runs it on every val frame, as a real detector runs on every frame of a video:
``detections/val_boxes.json`` holds the labelled frames' boxes (what ``cmpose test`` uses),
``detections/val_boxes_all_frames.json`` (``ALL_FRAMES_FILE``) those same boxes plus the
unlabelled frames' (what ``cmpose test --track`` links into tracks). The unlabelled frames draw
from a random stream of their own, so adding them left the labelled frames' boxes unchanged.
"""

from __future__ import annotations

import numpy as np

ALL_FRAMES_FILE = "val_boxes_all_frames.json"


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two x, y, w, h boxes."""
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def _clip(box: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    w, h = size
    x0, y0 = max(box[0], 0.0), max(box[1], 0.0)
    x1, y1 = min(box[0] + box[2], float(w)), min(box[1] + box[3], float(h))
    if x1 - x0 < 2 or y1 - y0 < 2:
        return None
    return np.array([x0, y0, x1 - x0, y1 - y0])


def _entry(image_id: int, box: np.ndarray, score: float) -> dict:
    return {
        "image_id": image_id,
        "category_id": 1,
        "bbox": [round(float(v), 2) for v in box],
        "score": round(float(np.clip(score, 0.01, 0.999)), 4),
    }


def detect_frame(
    rng: np.random.Generator,
    image_id: int,
    size: tuple[int, int],
    people: list[tuple[np.ndarray, float]],
    crowd: list[np.ndarray],
) -> list[dict]:
    """Detections of one frame, best score first.

    Args:
        people: (GT box x, y, w, h, fraction of the person's 15 joints that are visible: occluded
            and truncated people are missed more often and boxed worse).
        crowd: boxes of the unannotated tiny people (inside ignore regions).
    """
    w, h = size
    out = []
    for box, seen in people:
        hidden = 1.0 - seen
        if rng.random() < 0.04 + 0.3 * hidden**1.2:
            continue  # missed
        sigma = 0.045 + 0.08 * hidden
        centre = box[:2] + box[2:] / 2 + rng.normal(0, sigma, 2) * box[2:]
        wh = box[2:] * np.exp(rng.normal(0, sigma * 1.4, 2))
        det = _clip(np.concatenate([centre - wh / 2, wh]), size)
        if det is None:
            continue
        q = iou(det, box)
        out.append(_entry(image_id, det, 0.35 + 0.6 * np.clip((q - 0.4) / 0.55, 0, 1) + rng.normal(0, 0.06)))
        if rng.random() < 0.03:  # a duplicate, shifted and weaker
            dup = _clip(det + np.concatenate([rng.normal(0, 0.15, 2) * det[2:], [0, 0]]), size)
            if dup is not None:
                out.append(_entry(image_id, dup, rng.uniform(0.1, 0.45)))
    for box in crowd:
        if rng.random() < 0.15:
            det = _clip(box * np.exp(rng.normal(0, 0.05, 4)), size)
            if det is not None:
                out.append(_entry(image_id, det, rng.uniform(0.15, 0.45)))
    for _ in range(rng.poisson(0.3)):
        bh = rng.uniform(0.15, 0.7) * h
        bw = bh * rng.uniform(0.3, 0.7)
        det = _clip(np.array([rng.uniform(-0.1, 1) * w, rng.uniform(0, 1) * h - bh / 2, bw, bh]), size)
        if det is not None:
            confident = rng.random() < 0.1
            out.append(_entry(image_id, det, rng.uniform(0.5, 0.9) if confident else rng.beta(1.5, 6.0)))
    return sorted(out, key=lambda d: -d["score"])
