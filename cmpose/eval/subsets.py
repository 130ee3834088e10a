"""Evaluating on a subset of frames (e.g. only frames with a hard case) with the same evaluator.

poseval drops GT frames that list nobody, together with their predictions. So removing the
people of every frame outside the subset from a copy of the GT restricts the mAP to the
subset without touching the prediction files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cmpose.data.jsonio import load_json
from cmpose.utils.io import atomic_write_json


def frame_subset(gt: dict, keep_annotation: Callable[[dict], bool]) -> tuple[dict, int]:
    """A PoseTrack18/21 GT dict whose people are kept only in frames where at least one
    annotation satisfies ``keep_annotation``; returns (new dict, number of frames kept)."""
    anns = gt.get("annotations", [])
    frames = {a.get("image_id") for a in anns if keep_annotation(a)}
    out = dict(gt)
    out["annotations"] = [a for a in anns if a.get("image_id") in frames]
    return out, len(frames)


def write_frame_subset(gt_dir: Path, out_dir: Path, keep_annotation: Callable[[dict], bool]) -> bool:
    """Write the subset of every GT file of ``gt_dir`` into ``out_dir`` (same names).

    Returns False, writing nothing, when no frame of any file is in the subset (for example
    annotations without hard-case labels, or PoseTrack17 annolist files)."""
    subsets = []
    total = 0
    for path in sorted(Path(gt_dir).glob("*.json")):
        gt = load_json(path)
        if "annolist" in gt:
            return False
        sub, kept = frame_subset(gt, keep_annotation)
        subsets.append((path.name, sub))
        total += kept
    if not total:
        return False
    for name, sub in subsets:
        atomic_write_json(Path(out_dir) / name, sub, indent=None)
    return True
