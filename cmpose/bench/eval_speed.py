"""Speed benchmark of the PoseTrack evaluator on a full-size synthetic load.

Generates PoseTrack2018 GT and prediction files (n_videos x n_frames labelled frames x n_people people,
realistic localisation noise, missed and false-positive people, some ignore regions, distinct
scores, track ids that follow the GT people), then times ``cmpose.eval.posetrack.evaluate`` (or, for
``--track``, ``cmpose.eval.track.evaluate_tracking``) on them.
"""

from __future__ import annotations

import json
import logging
import statistics
import time
from pathlib import Path

import numpy as np

from cmpose.eval.posetrack import evaluate
from cmpose.eval.track import evaluate_tracking
from cmpose.eval.writer import PT18_CATEGORY
from cmpose.keypoints import NUM_JOINTS, PT18_NAMES

log = logging.getLogger(__name__)

_EARS = [PT18_NAMES.index("left_ear"), PT18_NAMES.index("right_ear")]
# A rough standing pose in head sizes, relative to the head centre (x right, y down), PT18 order.
_POSE = np.array(
    [
        [0, 0],
        [0, 0.6],
        [0, -0.6],
        [0.3, 0],
        [-0.3, 0],
        [1, 1.5],
        [-1, 1.5],
        [1.4, 3],
        [-1.4, 3],
        [1.5, 4.4],
        [-1.5, 4.4],
        [0.7, 4.6],
        [-0.7, 4.6],
        [0.8, 6.6],
        [-0.8, 6.6],
        [0.9, 8.6],
        [-0.9, 8.6],
    ]
)


def _video(
    rng: np.random.Generator, name: str, n_frames: int, n_people: int
) -> tuple[dict, dict, np.ndarray]:
    """GT and prediction dicts of one video, plus the raw quality of each predicted joint (for scores)."""
    images, gt_anns, pr_anns, quality = [], [], [], []
    for f in range(n_frames):
        image_id = int(rng.integers(1, 10**9)) * 1000 + f
        image = {
            "id": image_id,
            "file_name": f"images/val/{name}/{f:06d}.jpg",
            "is_labeled": True,
            "width": 1920,
            "height": 1080,
        }
        if rng.random() < 0.3:  # a few ignore polygons in a corner of some frames
            polys = [
                rng.uniform(0, 300, (int(rng.integers(4, 9)), 2)) + rng.uniform(0, 1500, 2) for _ in range(2)
            ]
            image["ignore_regions_x"] = [p[:, 0].round(1).tolist() for p in polys]
            image["ignore_regions_y"] = [p[:, 1].round(1).tolist() for p in polys]
        images.append(image)
        head = rng.uniform(25, 90, n_people)
        centre = rng.uniform([50, 50], [1850, 500], (n_people, 2))
        gt = (
            centre[:, None]
            + _POSE[None] * head[:, None, None]
            + rng.normal(0, 0.15, (n_people, NUM_JOINTS, 2)) * head[:, None, None]
        )
        labelled = rng.random((n_people, NUM_JOINTS)) > 0.12
        labelled[:, _EARS] = False
        for p in range(n_people):
            kp = np.where(labelled[p, :, None], np.column_stack([gt[p].round(2), np.ones(NUM_JOINTS)]), 0.0)
            side = head[p] / 0.6 / np.sqrt(2)
            box = [centre[p, 0] - side / 2, centre[p, 1] - side / 2, side, side]
            gt_anns.append(
                {
                    "image_id": image_id,
                    "id": len(gt_anns),
                    "track_id": p,
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "bbox_head": [round(v, 2) for v in box],
                    "scores": [],
                }
            )
        detected = np.flatnonzero(rng.random(n_people) < 0.92)
        n_fp = int(rng.integers(0, 3))
        err_scale = rng.choice([0.05, 0.15, 0.4, 1.5], (len(detected), NUM_JOINTS), p=[0.4, 0.35, 0.15, 0.1])
        pred = (
            gt[detected]
            + rng.normal(0, 1, (len(detected), NUM_JOINTS, 2)) * (err_scale * head[detected, None])[..., None]
        )
        fp = rng.uniform([0, 0], [1920, 1080], (n_fp, 1, 2)) + _POSE[None] * rng.uniform(25, 90, (n_fp, 1, 1))
        pred = np.concatenate([pred, fp])
        qual = np.concatenate([-err_scale, np.full((n_fp, NUM_JOINTS), -1.0)]) + rng.normal(
            0, 0.3, (len(pred), NUM_JOINTS)
        )
        # Track ids follow the GT person (a perfect tracker); false positives get fresh ids. The mAP
        # ignores them; ``--track`` scores them.
        track_ids = [*detected.tolist(), *range(n_people, n_people + n_fp)]
        for t, person in zip(track_ids, pred, strict=True):
            kp = np.column_stack([person.round(2), np.ones(NUM_JOINTS)])
            pr_anns.append(
                {
                    "image_id": image_id,
                    "id": len(pr_anns),
                    "track_id": t,
                    "category_id": 1,
                    "keypoints": kp.ravel().tolist(),
                    "scores": None,
                }
            )
        quality.append(qual)
    cats = [PT18_CATEGORY]
    return (
        {"images": images, "annotations": gt_anns, "categories": cats},
        {"images": images, "annotations": pr_anns, "categories": cats},
        np.concatenate(quality),
    )


def generate(work_dir: Path, n_videos: int, n_frames: int, n_people: int, seed: int) -> tuple[Path, Path]:
    """Write the GT and prediction folders; returns (gt_dir, pred_dir)."""
    rng = np.random.default_rng(seed)
    gt_dir, pred_dir = Path(work_dir) / "gt", Path(work_dir) / "pred"
    gt_dir.mkdir(parents=True, exist_ok=True)
    pred_dir.mkdir(parents=True, exist_ok=True)
    videos = [_video(rng, f"{v:06d}_mpii_test", n_frames, n_people) for v in range(n_videos)]
    # Distinct scores: the rank of each joint's (noisy) quality over the whole load.
    quality = np.concatenate([q.ravel() for _, _, q in videos])
    rank = np.empty(len(quality))
    rank[np.argsort(quality, kind="stable")] = np.arange(len(quality))
    scores = (rank + 1) / (len(quality) + 1)
    start = 0
    for v, (gt, pr, q) in enumerate(videos):
        s = scores[start : start + q.size].reshape(q.shape)
        start += q.size
        for ann, row in zip(pr["annotations"], s, strict=True):
            ann["scores"] = row.tolist()
        name = f"{v:06d}_mpii_test.json"
        (gt_dir / name).write_text(json.dumps(gt))
        (pred_dir / name).write_text(json.dumps(pr))
    return gt_dir, pred_dir


def run_eval_benchmark(
    work_dir: Path,
    n_videos: int = 170,
    n_frames: int = 30,
    n_people: int = 10,
    repeats: int = 5,
    seed: int = 0,
    track: bool = False,
) -> dict:
    """Generate the load into ``work_dir``, evaluate once to warm up, then ``repeats`` timed runs.

    ``track``: time the pose-tracking metrics (``cmpose.eval.track.evaluate_tracking``) instead.
    """
    t0 = time.perf_counter()
    gt_dir, pred_dir = generate(Path(work_dir), n_videos, n_frames, n_people, seed)
    gen_s = time.perf_counter() - t0
    run = evaluate_tracking if track else evaluate
    report = run(gt_dir, pred_dir)  # warm-up: imports, file cache
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run(gt_dir, pred_dir)
        times.append(time.perf_counter() - t0)
    result = {
        "n_videos": n_videos,
        "n_frames": n_frames,
        "n_people": n_people,
        "repeats": repeats,
        "seed": seed,
        "work_dir": str(work_dir),
        "generate_s": gen_s,
        "times_s": times,
        "median_s": statistics.median(times) if times else float("nan"),
    }
    if track:
        result.update({f"total_{m.lower()}": report[m]["Total"] for m in ("MOTA", "MOTP")})
    else:
        result["total_ap"] = report["Total"]
    log.info("evaluate: median %.2f s over %d runs (%s)", result["median_s"], repeats, times)
    return result
