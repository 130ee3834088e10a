"""Measure ``cmpose infer --smooth`` (One-Euro keypoint filtering): jitter and mAP with and without.

Data: a synthetic set whose every frame is labelled (``cmpose synth OUT --val-ratio 0``: the
train-split labelling; the videos are drawn like the val ones), unseen by the checkpoint.

For each box condition (``gt``: the GT boxes of every frame; ``noisy``: the GT boxes with seeded
Gaussian noise on centre and size, a stand-in for a detector's frame-to-frame box jitter) the
model runs **once** per video through ``cmpose.infer.pipeline.infer_video`` without smoothing
(the JSON-lines output). Every smoothing setting is then applied to that pose stream offline with
the same ``KeypointSmoother`` that ``--smooth`` hooks into ``run_video``: the filter is causal and
sees the frames in the same order, so this equals running ``cmpose infer --smooth`` once per
setting (``--check-cli`` runs ``cmpose infer --smooth`` on one video and prints the largest
difference to the offline smoothing with the default parameters).

Numbers per condition and setting, over the (predicted, GT) person pairs matched per frame by box
IoU >= 0.5 and the GT-visible joints:

* ``accel``: mean norm of the keypoints' second difference ``p[t+1] - 2 p[t] + p[t-1]`` (three
  consecutive frames of the same pair), in % of the GT box's longer side: the jitter;
* ``accel_err``: the same of ``pred - GT`` (acceleration error, Kanazawa et al. CVPR 2019): the
  jitter that is not the person's own motion;
* ``err``, ``err_median``: mean and median keypoint position error in % of the box size
  (smoothing's lag shows in the median);
* ``mAP``: PoseTrack mAP (``cmpose.eval.posetrack.evaluate``) on all labelled frames.

Usage::

    python scripts/measure_smoothing.py --data DATA --checkpoint CKPT --out OUT \
        [--params 4.0,2.0 1.0,0.5 ...] [--conditions gt noisy] [--box-noise 0.04] [--check-cli]
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from cmpose.infer.smooth import KeypointSmoother, parse_smooth_params

log = logging.getLogger("measure_smoothing")


def _gt(path: Path) -> tuple[list[dict], dict[int, list[dict]]]:
    data = json.loads(path.read_text())
    by_image: dict[int, list[dict]] = {}
    for a in data["annotations"]:
        by_image.setdefault(a["image_id"], []).append(a)
    return data["images"], by_image


def _noisy_boxes(images: list[dict], gt: dict[int, list[dict]], sigma: float, seed: int) -> list[dict]:
    """GT boxes with Gaussian noise (sigma x box size) on centre and size, independent per frame."""
    rng = np.random.default_rng(seed)
    out = []
    for t, im in enumerate(images):
        for a in gt.get(im["id"], []):
            x, y, w, h = a["bbox"]
            if w <= 0 or h <= 0:
                continue
            n = rng.normal(0.0, sigma, 4)
            cx, cy = x + w / 2 + n[0] * w, y + h / 2 + n[1] * h
            w2, h2 = w * (1 + n[2]), h * (1 + n[3])
            out.append({"frame_index": t, "bbox": [cx - w2 / 2, cy - h2 / 2, w2, h2], "score": 0.9})
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _smoothed(frames: list[dict], params: tuple[float, float] | None, fps: float) -> list[dict]:
    if params is None:
        return frames
    s = KeypointSmoother(fps, *params)
    out = []
    for fr in frames:
        people = fr["people"]
        kps = s.smooth(
            fr["frame_index"],
            [p["track_id"] for p in people],
            [np.array(p["keypoints"], float) for p in people],
            [max(p["box"][2], p["box"][3]) for p in people],
        )
        out.append(
            {
                "frame_index": fr["frame_index"],
                "people": [dict(p, keypoints=k.tolist()) for p, k in zip(people, kps, strict=True)],
            }
        )
    return out


def _posetrack(frames: list[dict], images: list[dict]) -> dict:
    anns = []
    for fr in frames:
        for p in fr["people"]:
            kp = []
            for x, y in p["keypoints"]:
                kp += [float(x), float(y), 1]
            anns.append(
                {
                    "image_id": images[fr["frame_index"]]["id"],
                    "track_id": int(p["track_id"]),
                    "category_id": 1,
                    "keypoints": kp,
                    "scores": p["scores"],
                }
            )
    from cmpose.eval.writer import PT18_CATEGORY

    return {"images": images, "annotations": anns, "categories": [PT18_CATEGORY]}


def _iou(a: list[float], b: list[float]) -> float:
    x0, y0 = max(a[0], b[0]), max(a[1], b[1])
    x1, y1 = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    inter = max(0.0, x1 - x0) * max(0.0, y1 - y0)
    union = a[2] * a[3] + b[2] * b[3] - inter
    return inter / union if union > 0 else 0.0


def _pairs(frames: list[dict], images: list[dict], gt: dict[int, list[dict]]) -> dict[tuple[int, int], dict]:
    """(pred track, GT track) -> {frame: (pred (J, 2), gt (J, 2), visible (J,), size)}, greedy IoU >= 0.5."""
    seqs: dict[tuple[int, int], dict] = {}
    for fr in frames:
        t = fr["frame_index"]
        gts = [a for a in gt.get(images[t]["id"], []) if a["bbox"][2] > 0 and a["bbox"][3] > 0]
        cand = sorted(
            (
                (_iou(p["box"], g["bbox"]), i, j)
                for i, p in enumerate(fr["people"])
                for j, g in enumerate(gts)
            ),
            reverse=True,
        )
        used_p, used_g = set(), set()
        for iou, i, j in cand:
            if iou < 0.5 or i in used_p or j in used_g:
                continue
            used_p.add(i)
            used_g.add(j)
            p, g = fr["people"][i], gts[j]
            gk = np.array(g["keypoints"], float).reshape(-1, 3)
            key = (int(p["track_id"]), int(g["track_id"]))
            seqs.setdefault(key, {})[t] = (
                np.array(p["keypoints"], float),
                gk[:, :2],
                gk[:, 2] > 0,
                max(g["bbox"][2], g["bbox"][3]),
            )
    return seqs


def _jitter(seqs: dict[tuple[int, int], dict]) -> dict[str, float]:
    acc, acc_gt, acc_err, err = [], [], [], []
    for seq in seqs.values():
        for t, (p, g, v, size) in seq.items():
            err.append(np.linalg.norm(p - g, axis=1)[v] / size)
            if t - 1 in seq and t + 1 in seq:
                (p0, g0, v0, _), (p2, g2, v2, _) = seq[t - 1], seq[t + 1]
                ok = v & v0 & v2
                ap, ag = p2 - 2 * p + p0, g2 - 2 * g + g0
                acc.append(np.linalg.norm(ap, axis=1)[ok] / size)
                acc_gt.append(np.linalg.norm(ag, axis=1)[ok] / size)
                acc_err.append(np.linalg.norm(ap - ag, axis=1)[ok] / size)

    def mean(x: list[np.ndarray]) -> float:
        return float(100 * np.concatenate(x).mean()) if x else float("nan")

    return {
        "accel": mean(acc),
        "accel_gt": mean(acc_gt),
        "accel_err": mean(acc_err),
        "err": mean(err),
        "err_median": float(100 * np.median(np.concatenate(err))) if err else float("nan"),
        "triples": int(sum(len(a) for a in acc)),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, required=True, help="a cmpose synth root with every frame labelled")
    ap.add_argument("--split", default="train", help="annotations/<split> and images/<split> (default train)")
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--params", nargs="*", default=["4.0,2.0"], help="MIN_CUTOFF,BETA settings to compare")
    ap.add_argument("--conditions", nargs="*", default=["gt", "noisy"], choices=["gt", "noisy"])
    ap.add_argument("--box-noise", type=float, default=0.04, help="sigma of the 'noisy' boxes (x box size)")
    ap.add_argument("--fps", type=float, default=25.0, help="frame rate (the synthetic motion's: 25)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--check-cli", action="store_true", help="also run `cmpose infer --smooth` on one video")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    log.setLevel(logging.INFO)

    import torch

    from cmpose.engine.testing import load_trained_model
    from cmpose.eval.posetrack import evaluate
    from cmpose.infer.pipeline import infer_video

    torch.set_num_threads(args.threads)
    ann_dir, img_dir = args.data / "annotations" / args.split, args.data / "images" / args.split
    videos = sorted(p.stem for p in ann_dir.glob("*.json"))
    settings: list[tuple[str, tuple[float, float] | None]] = [("off", None)]
    settings += [(f"one-euro {s}", parse_smooth_params(s)) for s in args.params]
    model, cfg = load_trained_model(args.checkpoint, "cpu")
    results: dict[str, dict[str, dict]] = {}
    timing = {}
    for cond in args.conditions:
        raw = args.out / cond / "raw"
        t0 = time.perf_counter()
        n_frames = 0
        streams = {}
        for v in videos:
            images, gt = _gt(ann_dir / f"{v}.json")
            if cond == "gt":
                spec = f"gt:{ann_dir / f'{v}.json'}"
            else:
                boxes = args.out / cond / "boxes" / f"{v}.json"
                boxes.parent.mkdir(parents=True, exist_ok=True)
                boxes.write_text(json.dumps(_noisy_boxes(images, gt, args.box_noise, seed=int(v[:6]))))
                spec = str(boxes)
            jsonl = raw / f"{v}.jsonl"
            if not jsonl.exists():
                infer_video(model, cfg, img_dir / v, raw, boxes=spec, formats=("jsonl",), fps=args.fps)
            streams[v] = (_read_jsonl(jsonl), images, gt)
            n_frames += len(images)
        timing[cond] = (time.perf_counter() - t0, n_frames)
        results[cond] = {}
        for name, params in settings:
            pred_dir = args.out / cond / name.replace(" ", "_").replace(",", "_") / "pred"
            pred_dir.mkdir(parents=True, exist_ok=True)
            seqs: dict = {}
            for v, (frames, images, gt) in streams.items():
                sm = _smoothed(frames, params, args.fps)
                (pred_dir / f"{v}.json").write_text(json.dumps(_posetrack(sm, images)))
                for k, s in _pairs(sm, images, gt).items():
                    seqs[(v, *k)] = s
            rep = evaluate(ann_dir, pred_dir)
            results[cond][name] = {"mAP": rep["Total"], **_jitter(seqs)}
            r = results[cond][name]
            log.info(
                "%s boxes, %s: mAP %.2f, accel %.3f (GT %.3f), accel error %.3f, position error %.2f "
                "(%% of box)",
                cond, name, r["mAP"], r["accel"], r["accel_gt"], r["accel_err"], r["err"],
            )  # fmt: skip
    summary = {"videos": len(videos), "settings": dict(settings), "results": results, "model_runs_s": timing}
    if args.check_cli:
        summary["cli_check_max_abs_diff_px"] = _check_cli(args, videos[0], ann_dir, img_dir)
    (args.out / "smoothing.json").write_text(json.dumps(summary, indent=1))
    _print_table(results)
    return 0


def _check_cli(args: argparse.Namespace, video: str, ann_dir: Path, img_dir: Path) -> float:
    """``cmpose infer --smooth`` on one video vs the offline smoothing of the raw stream with the
    default parameters."""
    from cmpose.infer.smooth import DEFAULT_BETA, DEFAULT_MIN_CUTOFF

    params = (DEFAULT_MIN_CUTOFF, DEFAULT_BETA)
    out = args.out / "cli_check"
    cmd = [
        sys.executable, "-m", "cmpose", "infer", str(img_dir / video), "--checkpoint", str(args.checkpoint),
        "--boxes", f"gt:{ann_dir / f'{video}.json'}", "--out", str(out), "--device", "cpu",
        "--smooth", "--threads", str(args.threads), "--fps", str(args.fps),
    ]  # fmt: skip
    subprocess.run(cmd, check=True)
    cli = _read_jsonl(out / f"{video}.jsonl")
    offline = _smoothed(_read_jsonl(args.out / "gt" / "raw" / f"{video}.jsonl"), params, args.fps)
    diff = 0.0
    for a, b in zip(cli, offline, strict=True):
        for p, q in zip(a["people"], b["people"], strict=True):
            diff = max(diff, float(np.abs(np.array(p["keypoints"]) - np.array(q["keypoints"])).max()))
    log.info("cmpose infer --smooth vs offline smoothing on %s: max |difference| %.4f px", video, diff)
    return diff


def _print_table(results: dict) -> None:
    print(  # noqa: T201
        "| boxes | smoothing | mAP | accel (% box) | accel error (% box) "
        "| position error mean / median (% box) |"
    )
    print("| --- | --- | --- | --- | --- | --- |")  # noqa: T201
    for cond, rows in results.items():
        for name, r in rows.items():
            print(  # noqa: T201
                f"| {cond} | {name} | {r['mAP']:.2f} | {r['accel']:.3f} | {r['accel_err']:.3f} "
                f"| {r['err']:.2f} / {r['err_median']:.2f} |"
            )


if __name__ == "__main__":
    raise SystemExit(main())
