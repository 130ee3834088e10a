"""Corruption robustness of a trained model on a split: ``run_test`` once on the clean frames and
once per (corruption, severity) with a ``ClipCorruption`` on the test dataset, then mPC and rPC.

Writes under ``out_dir``: ``clean/`` and ``runs/<corruption>_s<severity>/`` (each ``run_test``'s
predictions and report), ``robustness.json``, ``robustness.md`` and ``robustness.png``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from cmpose.data.config import ClipConfig
from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.engine import dist
from cmpose.engine.config import DataConfig, TestConfig
from cmpose.engine.testing import resolve_path, run_test, split_paths
from cmpose.robustness import CORRUPTIONS, SEVERITIES
from cmpose.robustness.hook import ClipCorruption, GTPeople, gt_people_by_frame
from cmpose.robustness.report import Results, map_table, mpc_rpc, plot_robustness, robustness_markdown
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

FRAME_DROP_IDENTITY = (
    "frame_drop is the identity for a single-frame model (T = 1): its rows are the clean numbers "
    "(not rerun) and count in mPC as such."
)


def gt_people_of_split(data: DataConfig, split: str) -> GTPeople:
    """The GT boxes and joints of every labelled frame of ``split`` (for occluding detector boxes)."""
    ann, _ = split_paths(data, split)
    people = read_annotations(
        ann, resolve_path(data.root, data.image_root), Problems(), pt17_layout=data.pt17_layout
    ).people
    return gt_people_by_frame(people)


def run_robustness(
    model: Any,
    data: DataConfig,
    clip: ClipConfig,
    test: TestConfig,
    out_dir: Path,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    *,
    corruptions: Sequence[str] = CORRUPTIONS,
    severities: Sequence[int] = SEVERITIES,
    frames: str = "all",
    seed: int = 0,
    split: str = "val",
) -> dict[str, Any] | None:
    """Clean and corrupted ``run_test``s; returns (on rank 0) the robustness.json dict.

    Args:
        corruptions: names from ``CORRUPTIONS``, in the order the report lists them.
        severities: from 1 to 5.
        frames: ``key`` corrupts the keyframe's crop only, ``all`` every clip frame.
        seed: base seed of the per-sample corruption generators.
    """
    for name in corruptions:
        ClipCorruption(name, 1)  # validates the name before the (long) clean run
    for s in severities:
        ClipCorruption(CORRUPTIONS[0], s, frames)
    out_dir = Path(out_dir)
    clean = run_test(model, data, clip, test, out_dir / "clean", device, amp_dtype, split=split)
    _, dets = split_paths(data, split)
    detector_boxes = test.boxes == "detections" and dets is not None
    gt_people = gt_people_of_split(data, split) if "occlusion" in corruptions and detector_boxes else {}
    notes = []
    identity = clip.num_frames == 1 and "frame_drop" in corruptions
    if identity:
        notes.append(FRAME_DROP_IDENTITY)
    results: Results = {}
    runs = [(n, s) for n in corruptions for s in severities]
    for name, severity in tqdm(runs, desc="robustness", disable=not dist.is_main()):
        if name == "frame_drop" and identity:
            report = clean
        else:
            corrupt = ClipCorruption(name, severity, frames, seed, gt_people)
            run_dir = out_dir / "runs" / f"{name}_s{severity}"
            report = run_test(
                model, data, clip, test, run_dir, device, amp_dtype, split=split, corrupt=corrupt
            )
        if report is not None:
            results.setdefault(name, {})[str(severity)] = map_table(report["all"])
            log.info("%s severity %d: mAP %.1f", name, severity, report["all"]["Total"])
    if clean is None:  # not rank 0
        return None
    clean_table = map_table(clean["all"])
    mpc, rpc = mpc_rpc(clean_table["Total"], results)
    out = {
        "clean": clean_table,
        "results": results,
        "mPC": mpc,
        "rPC": rpc,
        "settings": {
            "frames": frames,
            "seed": seed,
            "split": split,
            "boxes": clean["boxes"],
            "num_frames": clip.num_frames,
        },
        "notes": notes,
    }
    atomic_write_json(out_dir / "robustness.json", out)
    atomic_write_bytes(out_dir / "robustness.md", robustness_markdown(out).encode())
    plot_robustness(out, out_dir / "robustness.png")
    return out
