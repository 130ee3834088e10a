"""The tracking measurements of docs/results.md ("Tracking"): one checkpoint on one synthetic val set
(made by ``cmpose synth``, which writes detections on every frame), in one process so that the pose
pass over every frame runs once and every tracker setting reuses it.

    python scripts/measure_tracking.py --checkpoint CKPT --data SYNTH_ROOT --out DIR

Rows: ``cmpose test`` on the labelled frames' boxes without and with ``test.gap_fill`` (max_gap 4),
then ``cmpose test --track`` on the every-frame boxes with IoU-only and IoU + OKS tracking (without and
with motion prediction), with the tracker's gap filling, and IoU + OKS at a few joint thresholds
of the MOTA files. Each row equals the ``cmpose test`` command printed beside it. Writes
``DIR/measure_tracking.json`` and prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from cmpose.data.config import GapFillConfig
from cmpose.engine.testing import load_trained_model, run_test
from cmpose.engine.testing_track import TrackTestConfig, pose_every_frame, track_and_evaluate
from cmpose.engine.trainer import amp_dtype
from cmpose.synth.detections import ALL_FRAMES_FILE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--data", type=Path, required=True, help="a cmpose synth root with a val split")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--no-plain", action="store_true", help="skip the two cmpose test rows")
    args = ap.parse_args()
    device = torch.device("cpu")
    model, cfg = load_trained_model(args.checkpoint, device)
    amp = amp_dtype(cfg.run.amp, device)
    clip = dataclasses.replace(cfg.data.clip, num_frames=model.num_frames)
    root = str(args.data.resolve())
    labelled = dataclasses.replace(cfg.data, root=root, val="annotations/val", image_root=None,
                                   val_detections="detections/val_boxes.json")  # fmt: skip
    every = dataclasses.replace(labelled, val_detections=f"detections/{ALL_FRAMES_FILE}")
    test = dataclasses.replace(cfg.test, boxes="detections")
    base = f"cmpose test --checkpoint {args.checkpoint} --set data.root={root} --split val"
    rows = []

    def row(name: str, command: str, report: dict, seconds: float) -> None:
        mota = report.get("mota", {}).get("MOTA", {}).get("Total")
        counts = report.get("mota", {}).get("counts", {})
        rows.append({
            "name": name, "command": command, "mAP": report["all"]["Total"], "MOTA": mota,
            "switches": sum(c["switches"] for c in counts.values()) if counts else None,
            "tracks": report.get("track", {}).get("tracks"),
            "filled": report.get("track", {}).get("filled_boxes"),
            "seconds": round(seconds, 1),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)  # noqa: T201

    for gap in () if args.no_plain else (0, 4):
        t0 = time.perf_counter()
        t = dataclasses.replace(test, gap_fill=GapFillConfig(max_gap=gap))
        rep = run_test(model, labelled, clip, t, args.out / f"test_gap{gap}", device, amp)
        cmd = f"{base} --boxes {root}/detections/val_boxes.json --set test.gap_fill.max_gap={gap}"
        row(f"labelled-frame boxes, gap_fill {gap}", cmd, rep, time.perf_counter() - t0)

    t0 = time.perf_counter()
    posed = pose_every_frame(model, every, clip, test, device, amp)
    pose_s = time.perf_counter() - t0
    print(f"pose pass over every frame: {len(posed.people)} people, {pose_s:.0f} s", flush=True)  # noqa: T201
    settings = {
        "IoU only": (TrackTestConfig(oks_weight=0.0), "--track-oks-weight 0"),
        "IoU only, motion": (
            TrackTestConfig(oks_weight=0.0, motion=True),
            "--track-oks-weight 0 --track-motion",
        ),
        "IoU + OKS": (TrackTestConfig(), ""),
        "IoU + OKS, motion": (TrackTestConfig(motion=True), "--track-motion"),
        "IoU only, fill": (TrackTestConfig(oks_weight=0.0, fill=True), "--track-oks-weight 0 --track-fill"),
        "IoU + OKS, fill": (TrackTestConfig(fill=True), "--track-fill"),
    }
    for thr in (0.1, 0.2, 0.3, 0.5):
        settings[f"IoU + OKS, joints >= {thr}"] = (
            TrackTestConfig(joint_threshold=thr),
            f"--track-joint-threshold {thr}",
        )
    for name, (s, flags) in settings.items():
        t0 = time.perf_counter()
        out = args.out / name.replace(" ", "_").replace(",", "").replace("+", "and").replace(">=", "ge")
        rep = track_and_evaluate(model, posed, every, clip, test, out, device, amp, s)
        cmd = f"{base} --boxes {root}/detections/{ALL_FRAMES_FILE} --track {flags}".strip()
        row(f"every-frame boxes, tracked: {name}", cmd, rep, pose_s + time.perf_counter() - t0)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "measure_tracking.json").write_text(
        json.dumps({"pose_pass_s": pose_s, "rows": rows}, indent=1)
    )
    lines = [
        "| setting | mAP | MOTA | ID switches | tracks | filled boxes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        mota = "" if r["MOTA"] is None else f"{r['MOTA']:.1f}"
        cells = [r["name"], f"{r['mAP']:.1f}", mota, r["switches"], r["tracks"], r["filled"]]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
