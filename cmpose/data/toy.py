"""A small PoseTrack18-format dataset of drawn stick figures, for tests and loader benchmarks.

This is not the synthetic training generator (that is ``cmpose synth``); it only has to look
like PoseTrack on disk: per-video JSON files, 6-digit JPEG frames, people with 17 joints, head
boxes, track ids and ignore regions, with frame content that moves from frame to frame.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np

from cmpose.keypoints import NUM_JOINTS, PT18_NAMES, SKELETON

# A standing person in a unit box (x right, y down), PoseTrack18 order; ears unannotated.
_TEMPLATE = np.array(
    [
        [0.50, 0.10], [0.50, 0.17], [0.50, 0.02], [0.0, 0.0], [0.0, 0.0],
        [0.35, 0.20], [0.65, 0.20], [0.28, 0.35], [0.72, 0.35], [0.25, 0.50],
        [0.75, 0.50], [0.40, 0.52], [0.60, 0.52], [0.40, 0.75], [0.60, 0.75],
        [0.40, 0.97], [0.60, 0.97],
    ]
)  # fmt: skip
_ANNOTATED = np.array([name not in ("left_ear", "right_ear") for name in PT18_NAMES])


def _background(rng: np.random.Generator, size: tuple[int, int]) -> np.ndarray:
    w, h = size
    low = rng.integers(0, 255, (9, 16, 3)).astype(np.uint8)
    img = cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC)
    noise = rng.normal(0, 2.5, (h, w, 3))
    return np.clip(img + noise, 0, 255).astype(np.uint8)


def write_toy_posetrack(
    root: Path,
    num_videos: int = 2,
    num_frames: int = 8,
    people: int = 2,
    image_size: tuple[int, int] = (640, 360),
    split: str = "val",
    seed: int = 0,
    quality: int = 90,
) -> Path:
    """Write videos ``<root>/images/<split>/<id>_mpii_<split>/%06d.jpg`` with GT in
    ``<root>/annotations/<split>/<video>.json`` (every frame labelled); return that folder."""
    rng = np.random.default_rng(seed)
    w, h = image_size
    ann_dir = root / "annotations" / split
    ann_dir.mkdir(parents=True, exist_ok=True)
    for v in range(num_videos):
        vid = f"{v + 1:06d}"
        name = f"{vid}_mpii_{split}"
        img_dir = root / "images" / split / name
        img_dir.mkdir(parents=True, exist_ok=True)
        bg = _background(rng, image_size)
        heights = rng.uniform(0.35, 0.8, people) * h
        starts = np.stack([rng.uniform(0.1, 0.7, people) * w, rng.uniform(0.05, 0.15, people) * h], 1)
        velocity = rng.normal(0, 4, (people, 2))
        colours = rng.integers(40, 255, (people, 3))
        images, annotations = [], []
        for f in range(num_frames):
            img = np.roll(bg, 3 * f, axis=1).copy()  # a panning camera
            image_id = 10000000000 + int(vid) * 10000 + f
            for p in range(people):
                size = np.array([heights[p] * 0.45, heights[p]])
                kps = starts[p] + velocity[p] * f + _TEMPLATE * size + rng.normal(0, 1.0, (NUM_JOINTS, 2))
                for a, b in SKELETON:
                    if _ANNOTATED[a] and _ANNOTATED[b]:
                        pa, pb = kps[a].round().astype(int), kps[b].round().astype(int)
                        cv2.line(img, tuple(pa), tuple(pb), colours[p].tolist(), max(2, int(size[1] / 40)))
                kp = np.concatenate([kps, _ANNOTATED[:, None].astype(float)], 1)
                kp[~_ANNOTATED] = 0
                lo, hi = kps[_ANNOTATED].min(0), kps[_ANNOTATED].max(0)
                head_w = size[0] * 0.4
                annotations.append(
                    {
                        "image_id": image_id,
                        "id": image_id * 100 + p,
                        "track_id": p,
                        "category_id": 1,
                        "keypoints": kp.reshape(-1).round(2).tolist(),
                        "num_keypoints": int(_ANNOTATED.sum()),
                        "bbox": [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])],
                        "bbox_head": [
                            float(kps[2, 0] - head_w / 2),
                            float(kps[2, 1]),
                            head_w,
                            float(kps[1, 1] - kps[2, 1]),
                        ],
                        "scores": [],
                        "iscrowd": False,
                    }
                )
            file_name = f"images/{split}/{name}/{f:06d}.jpg"
            cv2.imwrite(str(root / file_name), img, [cv2.IMWRITE_JPEG_QUALITY, quality])
            corner = [[0, 40, 40, 0], [0, 0, 30, 30]]  # a small ignore region in the top-left corner
            images.append(
                {
                    "id": image_id,
                    "frame_id": image_id,
                    "vid_id": vid,
                    "file_name": file_name,
                    "nframes": num_frames,
                    "is_labeled": True,
                    "width": w,
                    "height": h,
                    "ignore_regions_x": [corner[0]],
                    "ignore_regions_y": [corner[1]],
                }
            )
        data = {
            "images": images,
            "annotations": annotations,
            "categories": [
                {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(PT18_NAMES)}
            ],
        }
        tmp = ann_dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(data))
        os.replace(tmp, ann_dir / f"{name}.json")
    return ann_dir
