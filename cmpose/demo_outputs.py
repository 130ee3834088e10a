"""What the demo leaves for people to look at: the summary (JSON + Markdown), the overlay video,
the token-importance picture and the training curves."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from cmpose.data.config import GapFillConfig
from cmpose.engine.config import ExperimentConfig
from cmpose.engine.testing import boxes_label, run_test, split_paths, summary_line
from cmpose.eval.joint_classes import class_markdown
from cmpose.eval.posetrack import format_table
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

# The demo's closing words (summary.md and the log): the model has only seen synthetic figures.
SYNTHETIC_NOTE = (
    "This model was trained only on synthetic data (cmpose synth figures): its poses on real "
    "footage (e.g. --video) are not meaningful. For real videos run `cmpose infer VIDEO --checkpoint "
    "vitpose-b.pth` with ViTPose COCO weights (docs/inference.md, 'Real weights')."
)


def token_picture(model: Any, cfg: ExperimentConfig, out_png: Path, num_people: int = 4) -> Path | None:
    """TCIS importance and cluster maps over the crops of a few val people (hard ones first)."""
    from cmpose.data.build import build_clip_dataset
    from cmpose.engine.stages import stage_clip
    from cmpose.viz.draw import denormalize
    from cmpose.viz.tokens import token_map_sheet

    ann, _ = split_paths(cfg.data, "val")
    ds = build_clip_dataset(
        ann,
        train=False,
        clip=stage_clip(cfg, cfg.stages[-1]),
        crop=cfg.data.crop,
        augment=cfg.data.augment,
        loader=cfg.data.loader,
    )
    order = sorted(range(len(ds)), key=lambda i: (not ds.samples[i].hard, i))[:num_people]
    rows = []
    for i in order:
        item = ds[i]
        with torch.no_grad():
            out = model(item["clip"][None])
        if "importance" not in out:
            return None
        crops = np.stack(
            [denormalize(f.numpy(), cfg.data.crop.mean, cfg.data.crop.std) for f in item["clip"]]
        )
        ids = out.get("cluster_ids")
        rows.append(
            token_map_sheet(crops, out["importance"][0].numpy(), None if ids is None else ids[0].numpy())
        )
    # People side by side, each a column of (crops ; importance ; kept/clustered) x T frames.
    height = max(r.shape[0] for r in rows)
    sheet = np.concatenate([np.pad(r, ((0, height - r.shape[0]), (0, 6), (0, 0))) for r in rows], axis=1)
    ok, png = cv2.imencode(".png", sheet)
    if not ok:
        return None
    atomic_write_bytes(out_png, png.tobytes())
    return out_png


def write_pictures(
    model: Any,
    checkpoint: Path,
    cfg: ExperimentConfig,
    out: Path,
    video: Path | None,
    showcase: Path | None = None,
) -> dict[str, str]:
    """Overlay MP4 of a val video (the one of the ``showcase`` dataset if given, else the first
    of the data's) and of ``video``, the token picture, the curves (beside ``checkpoint``'s
    stage folder). ``model``: the checkpoint's, on the CPU."""
    from cmpose.infer.pipeline import infer_video

    pictures: dict[str, str] = {}
    curves = checkpoint.parents[1] / "curves.png"
    if curves.is_file():
        shutil.copyfile(curves, out / "curves.png")
        pictures["curves"] = "curves.png"
    png = token_picture(model, cfg, out / "tokens.png")
    if png is not None:
        pictures["tokens"] = png.name
    if showcase is not None:
        root, ann = Path(showcase), Path(showcase) / "annotations" / "val"
    else:
        root, ann = Path(cfg.data.root), Path(split_paths(cfg.data, "val")[0])
    first = sorted(ann.glob("*.json"))[0]
    frames = root / "images" / "val" / first.stem
    # GT boxes, interpolated between the labelled frames: the detector file (like PoseTrack's)
    # has boxes on the labelled frames only, and the overlay should show every frame.
    mp4, stats = infer_video(model, cfg, frames, out / "video", boxes=f"gt:{first}")
    pictures["video"] = str(mp4.relative_to(out))
    log.info("val video %s: %.1f frames/s", first.stem, stats["fps"])
    if video is not None:
        mp4, stats = infer_video(model, cfg, Path(video), out / "video", boxes="hog")
        pictures["user_video"] = str(mp4.relative_to(out))
    return pictures


def plain_boxes_report(model: Any, cfg: ExperimentConfig, out: Path) -> dict[str, Any] | None:
    """The final model (on the CPU) on the detector's boxes as given, when the config fills their
    gaps: the number comparable to protocols that do not (None when there is nothing to compare)."""
    from cmpose.engine.trainer import amp_dtype

    if cfg.test.boxes != "detections" or cfg.test.gap_fill.max_gap == 0 or not cfg.data.val_detections:
        return None
    clip = dataclasses.replace(cfg.data.clip, num_frames=model.num_frames)
    test = dataclasses.replace(cfg.test, gap_fill=GapFillConfig())
    device = torch.device("cpu")
    report = run_test(
        model, cfg.data, clip, test, out / "test_without_gap_fill", device, amp_dtype(cfg.run.amp, device)
    )
    if report is not None:
        log.info("without gap filling: val %s", summary_line(report))
    return report


def write_summary(
    out: Path,
    cfg: ExperimentConfig,
    plan: Any,
    train: dict[str, Any],
    pictures: dict[str, str],
    synth_seconds: float,
    elapsed: float,
    plain: dict[str, Any] | None = None,
    control: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``plain``: the ``plain_boxes_report``, shown beside the headline when given; ``control``:
    ``demo_control.train_control``'s result, compared with the final model."""
    final = train["stages"][-1]["val"]
    summary = {
        "elapsed_seconds": round(elapsed, 1),
        "budget_minutes": plan.minutes,
        "synth": {**dataclasses.asdict(plan.dataset()), "seconds": round(synth_seconds, 1)},
        "stages": [{k: v for k, v in s.items() if k != "val"} | _val_line(s["val"]) for s in train["stages"]],
        "test": final,
        "test_without_gap_fill": plain,
        "control": control,
        "pictures": pictures,
    }
    atomic_write_json(out / "summary.json", summary)
    lines = [
        "# cmpose demo",
        "",
        f"Wall time {elapsed / 60:.1f} min of a {plan.minutes:g}-minute budget "
        f"(data generation {synth_seconds:.0f} s).",
        "",
        "| stage | kind | steps | seconds | val mAP | hard-frame mAP |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for s in summary["stages"]:
        row = [s["name"], s["kind"], str(s["steps"]), f"{s['seconds']:.0f}"]
        row += [f"{s['mAP']:.1f}", f"{s['mAP_hard']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
    if final:
        lines += ["", f"Synthetic val, {boxes_label(final)}, all labelled frames:", "", "```"]
        lines += [format_table(final["all"]), "```"]
        if final.get("hard"):
            lines += ["", "Hard frames only:", "", "```", format_table(final["hard"]), "```"]
        lines += class_markdown(final.get("joint_classes"))
    if final and control and control.get("val"):
        lines += control_lines(train, final, control)
    if plain:
        lines += ["", f"The detector's boxes as given (no gap filling): {summary_line(plain)}."]
    lines += ["", "Pictures: " + ", ".join(f"[{k}]({v})" for k, v in pictures.items())]
    lines += ["", SYNTHETIC_NOTE]
    atomic_write_bytes(out / "summary.md", ("\n".join(lines) + "\n").encode())
    log.warning(SYNTHETIC_NOTE)
    return summary


def control_lines(train: dict[str, Any], final: dict[str, Any], control: dict[str, Any]) -> list[str]:
    """The summary's comparison of the final model with the time-matched single-frame control:
    Total mAP on all frames, hard frames and each joint class (one val set, one seed: a single
    run's difference, not a measured effect; docs/results.md has the ablation)."""
    temporal = " + ".join(s["name"] for s in train["stages"][1:])
    rows = [
        (f"CM-Pose ({temporal} after the pretraining)", final),
        (f"single frame (pretraining continued for {control['matched_seconds']:.0f} s)", control["val"]),
    ]
    classes = list((final.get("joint_classes") or {}).get("classes", {}))
    window = (final.get("joint_classes") or {}).get("window")
    names = {
        "visible": "visible",
        "hidden_here_visible_in_window": f"hidden here, visible within +-{window}",
        "hidden_throughout": "hidden throughout",
    }
    head = ["model", "all frames", "hard frames", *(names.get(c, c) for c in classes)]
    lines = [
        "",
        "What the temporal stages bought: the final model against the pretraining continued on single "
        "frames for the temporal stages' training time (mAP, Total; one run, one seed):",
        "",
        "| " + " | ".join(head) + " |",
        "|" + " --- |" * len(head),
    ]

    def cell(report: dict[str, Any] | None) -> str:
        return "-" if not report else f"{report['Total']:.1f}"

    for label, rep in rows:
        by_class = (rep.get("joint_classes") or {}).get("classes", {})
        cells = [cell(rep["all"]), cell(rep.get("hard")), *(cell(by_class.get(c)) for c in classes)]
        lines.append("| " + " | ".join([label, *cells]) + " |")
    return lines


def _val_line(val: dict[str, Any] | None) -> dict[str, float]:
    nan = float("nan")
    if not val:
        return {"mAP": nan, "mAP_hard": nan}
    return {"mAP": val["all"]["Total"], "mAP_hard": val["hard"]["Total"] if val.get("hard") else nan}
