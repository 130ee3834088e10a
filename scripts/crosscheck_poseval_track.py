"""Cross-check ``cmpose evaluate --track`` against poseval's ``--evalPoseTracking`` on generated inputs.

Not part of the test suite: it needs a separate Python environment where poseval (commit 4258a15)
and py-motmetrics are importable. Procedure and last result: docs/evaluation.md, "Tracking mode".

    python scripts/crosscheck_poseval_track.py --poseval-python /path/to/venv/bin/python \
        [--poseval-src /path/to/poseval] [--cases 200] [--seed 0] [--keep DIR]

Each case is a small random set of videos (GT tracks that appear and leave, predictions with id
switches, misses, false positives, jitter, crowds, ignore regions, empty frames, PoseTrack2017 and
2018 files in any mix). cmpose runs in this process, poseval in a subprocess; the script prints the
largest absolute difference over every metric of every joint and the totals, and exits 1 above 0.05.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from cmpose.eval.track import METRICS, evaluate_tracking
from cmpose.eval.writer import PT18_CATEGORY
from cmpose.keypoints import PT17_NAMES, PT18_NAMES

# A rough standing pose in head sizes around the head centre (x right, y down), PoseTrack18 order.
POSE = np.array(
    [
        [0, 0], [0, 0.6], [0, -0.6], [0.3, 0], [-0.3, 0], [1, 1.5], [-1, 1.5], [1.4, 3], [-1.4, 3],
        [1.5, 4.4], [-1.5, 4.4], [0.7, 4.6], [-0.7, 4.6], [0.8, 6.6], [-0.8, 6.6], [0.9, 8.6], [-0.9, 8.6],
    ]
)  # fmt: skip
_PT18_OF_PT17 = [PT18_NAMES.index(n) for n in PT17_NAMES]
_POSEVAL_KEYS = {"MOTA": "mota", "MOTP": "motp", "Precision": "pre", "Recall": "rec"}


def _tracks(rng: np.random.Generator, n_frames: int) -> list[dict]:
    """GT tracks: id, first/last frame, start centre and velocity, head size."""
    tracks = []
    crowd = rng.random() < 0.5  # people close together: several candidates per joint
    for t in range(int(rng.integers(1, 6))):
        a = int(rng.integers(0, n_frames))
        b = int(rng.integers(a, n_frames)) if rng.random() < 0.5 else n_frames - 1
        spread = 150 if crowd else 1500
        tracks.append(
            {
                "id": int(rng.integers(0, 40)) * 10 + t,  # distinct, not 0..n
                "first": 0 if rng.random() < 0.6 else a,
                "last": b,
                "centre": rng.uniform([100, 100], [100 + spread, 400]),
                "vel": rng.normal(0, 8, 2),
                "head": float(rng.uniform(30, 80)),
            }
        )
    return tracks


def _video(rng: np.random.Generator, n_frames: int) -> tuple[list[list[dict]], list[list[dict]], dict]:
    """Per frame: GT people and predicted people as dicts (xy (17, 2), present (17,), track id...)."""
    tracks = _tracks(rng, n_frames)
    ids = {tr["id"]: tr["id"] + 1000 for tr in tracks}  # GT track -> predicted track id
    next_id = 5000
    gt_frames, pr_frames, regions = [], [], {}
    for f in range(n_frames):
        gts, prs = [], []
        if rng.random() < 0.12:  # an unlabelled frame
            gt_frames.append([])
            pr_frames.append([_fp(rng, next_id + 900)] if rng.random() < 0.5 else [])
            continue
        if rng.random() < 0.15 and len(ids) >= 2:  # id switch between two tracks
            a, b = rng.choice(list(ids), 2, replace=False)
            ids[a], ids[b] = ids[b], ids[a]
        if rng.random() < 0.1 and ids:  # a track gets a new id
            k = list(ids)[int(rng.integers(0, len(ids)))]
            ids[k], next_id = next_id, next_id + 1
        for tr in tracks:
            if not tr["first"] <= f <= tr["last"]:
                continue
            h = tr["head"]
            xy = tr["centre"] + tr["vel"] * f + POSE * h + rng.normal(0, 0.1, (17, 2)) * h
            present = rng.random(17) > 0.15
            present[3:5] = False  # ears: never scored
            gts.append({"tid": tr["id"], "xy": xy, "present": present, "head": h})
            if rng.random() < 0.85:
                scale = rng.choice([0.05, 0.2, 0.45, 1.0], p=[0.4, 0.3, 0.2, 0.1])
                pxy = xy + rng.normal(0, scale, (17, 2)) * h
                pp = rng.random(17) > 0.1
                prs.append({"tid": ids[tr["id"]], "xy": pxy, "present": pp})
        for _ in range(int(rng.poisson(0.4))):
            prs.append(_fp(rng, next_id + 900 + len(prs)))
        if prs and rng.random() < 0.1:  # a predicted person with no keypoint at all
            prs.append({"tid": next_id + 800, "xy": np.zeros((17, 2)), "present": np.zeros(17, bool)})
        rng.shuffle(prs)
        if rng.random() < 0.2 and gts:  # an ignore polygon around part of someone
            c = gts[0]["xy"][int(rng.integers(0, 17))]
            w = float(rng.uniform(10, 200))
            regions[f] = [
                [c[0] - w, c[1] - w],
                [c[0] + w, c[1] - w],
                [c[0] + w, c[1] + w],
                [c[0] - w, c[1] + w],
            ]
        gt_frames.append(gts)
        pr_frames.append(prs)
    if sum(1 for g in gt_frames if g) < 2:  # poseval crashes on videos with one evaluated frame
        return _video(rng, n_frames)
    return gt_frames, pr_frames, regions


def _fp(rng: np.random.Generator, tid: int) -> dict:
    h = float(rng.uniform(30, 80))
    return {"tid": tid, "xy": rng.uniform([0, 0], [1800, 600]) + POSE * h, "present": rng.random(17) > 0.2}


def _pt18(name: str, frames: list[list[dict]], regions: dict, gt: bool) -> dict:
    images, anns = [], []
    for f, people in enumerate(frames):
        image = {"id": 10000 + f, "file_name": f"images/val/{name}/{f:06d}.jpg", "is_labeled": bool(people)}
        if f in regions and gt:
            image["ignore_regions_x"] = [[p[0] for p in regions[f]]]
            image["ignore_regions_y"] = [[p[1] for p in regions[f]]]
        images.append(image)
        for p in people:
            kp = np.column_stack([p["xy"].round(2), np.ones(17)]) * p["present"][:, None]
            ann = {"image_id": 10000 + f, "track_id": p["tid"], "keypoints": kp.ravel().tolist()}
            ann["scores"] = [0.5] * 17
            if gt:
                h = p["head"]
                c = p["xy"][2]
                ann["bbox_head"] = [
                    round(c[0] - h / 2, 2),
                    round(c[1] - h / 2, 2),
                    round(h / 1.2, 2),
                    round(h / 1.2, 2),
                ]
            anns.append(ann)
    return {"images": images, "annotations": anns, "categories": [PT18_CATEGORY]}


def _pt17(rng: np.random.Generator, name: str, frames: list[list[dict]], regions: dict, gt: bool) -> dict:
    annolist = []
    for f, people in enumerate(frames):
        frame = {"image": [{"name": f"images/val/{name}/{f:06d}.jpg"}], "annorect": []}
        if f in regions and gt:
            frame["ignore_regions"] = [{"point": [{"x": [x], "y": [y]} for x, y in regions[f]]}]
        for p in people:
            points = [
                {
                    "id": [j],
                    "x": [round(float(p["xy"][k, 0]), 2)],
                    "y": [round(float(p["xy"][k, 1]), 2)],
                    "score": [0.5],
                }
                for j, k in enumerate(_PT18_OF_PT17)
                if p["present"][k]
            ]
            if rng.random() < 0.1:  # a point with an id poseval does not score
                points.append({"id": [15], "x": [float(p["xy"][3, 0])], "y": [float(p["xy"][3, 1])]})
            rect = {
                "track_id": [p["tid"]],
                "annopoints": [{"point": points}] if points or rng.random() < 0.5 else [],
            }
            if gt:
                h, c = p["head"], p["xy"][2]
                rect.update(x1=[c[0] - h / 2], y1=[c[1] - h / 2], x2=[c[0] + h / 3], y2=[c[1] + h / 3])
            frame["annorect"].append(rect)
        annolist.append(frame)
    return {"annolist": annolist}


def write_case(rng: np.random.Generator, root: Path) -> tuple[Path, Path]:
    gt_dir, pr_dir = root / "gt", root / "pred"
    gt_dir.mkdir(parents=True)
    pr_dir.mkdir(parents=True)
    for _ in range(int(rng.integers(1, 5))):
        name = f"{int(rng.integers(1, 999999)):06d}_mpii_test"
        gts, prs, regions = _video(rng, int(rng.integers(3, 13)))
        for frames, folder, is_gt in ((gts, gt_dir, True), (prs, pr_dir, False)):
            data = (
                _pt17(rng, name, frames, regions, is_gt)
                if rng.random() < 0.35
                else _pt18(name, frames, regions, is_gt)
            )
            (folder / f"{name}.json").write_text(json.dumps(data))
    return gt_dir, pr_dir


def run_poseval(python: str, src: str | None, gt_dir: Path, pr_dir: Path, out: Path) -> dict:
    env = dict(os.environ)
    if src:
        env["PYTHONPATH"] = src + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [python, "-m", "poseval.evaluate", "--groundTruth", f"{gt_dir}/", "--predictions", f"{pr_dir}/"]
    cmd += ["--evalPoseTracking", "--outputDir", str(out)]
    subprocess.run(cmd, check=True, env=env, capture_output=True, text=True)
    return json.loads((out / "total_MOT_metrics.json").read_text())


def compare(ours: dict, theirs: dict) -> float:
    """Largest |difference| over the 15 joints and Total of the four metrics (NaN must match NaN)."""
    worst = 0.0
    for m, key in _POSEVAL_KEYS.items():
        values = [ours["joints"][n][m] for n in PT17_NAMES] + [ours[m]["Total"]]
        for a, b in zip(values, theirs[key], strict=True):
            b = float("nan") if b is None else float(b)
            if math.isnan(a) or math.isnan(b):
                worst = max(worst, 0.0 if math.isnan(a) and math.isnan(b) else math.inf)
            else:
                worst = max(worst, abs(a - b))
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--poseval-python", required=True, help="a Python where poseval and motmetrics import")
    ap.add_argument("--poseval-src", default=None, help="poseval checkout to put on PYTHONPATH")
    ap.add_argument("--cases", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, default=None, help="keep the generated cases here")
    args = ap.parse_args()
    rng = np.random.default_rng(args.seed)
    worst, worst_case = 0.0, -1
    with tempfile.TemporaryDirectory() as tmp:
        base = args.keep or Path(tmp)
        for case in range(args.cases):
            root = base / f"case{case:04d}"
            gt_dir, pr_dir = write_case(rng, root)
            ours = evaluate_tracking(gt_dir, pr_dir)
            theirs = run_poseval(args.poseval_python, args.poseval_src, gt_dir, pr_dir, root / "poseval")
            d = compare(ours, theirs)
            if d > worst:
                worst, worst_case = d, case
            if d > 0.05:
                print(f"case {case}: difference {d:.6g}", file=sys.stderr)  # noqa: T201
    print(f"{args.cases} cases, max |cmpose - poseval| = {worst:.3g} (case {worst_case}); metrics {METRICS}")  # noqa: T201
    return 0 if worst <= 0.05 else 1


if __name__ == "__main__":
    sys.exit(main())
