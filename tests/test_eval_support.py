"""Helpers for the evaluation tests (no tests here): build GT / prediction folders in tmp_path from the
PoseTrack18 sample, independently of the code under test."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np

from cmpose.eval.writer import PersonPrediction, write_prediction_dir
from cmpose.keypoints import JOINT_INDEX, PT17_NAMES, SCORED_NAMES

STEMS = ("003418_mpii_test", "009473_mpii_test", "012834_mpii_test")


def load_gt(pt18_sample: Path) -> dict[str, dict]:
    """The three sample GT files, by stem."""
    folder = pt18_sample / "annotations" / "val"
    return {s: json.loads((folder / f"{s}.json").read_text()) for s in STEMS}


def keypoints(ann: dict) -> np.ndarray:
    return np.asarray(ann["keypoints"], dtype=np.float64).reshape(17, 3)


def annotated(ann: dict) -> np.ndarray:
    """(17,) bool: the joint is annotated (PoseTrack18 marks absent joints as 0, 0, 0)."""
    return ~(keypoints(ann) == 0).all(axis=1)


def head_size(ann: dict) -> float:
    _, _, w, h = ann["bbox_head"]
    return 0.6 * math.hypot(w, h)


def count_gt(gts: dict[str, dict], joint: str) -> int:
    """Annotated GT joints of one type over all videos, less the one known to lie in an ignore region
    (the right knee in 003418, see shared/data/README.md)."""
    n = sum(int(annotated(a)[JOINT_INDEX[joint]]) for g in gts.values() for a in g["annotations"])
    return n - (joint == "right_knee")


class Scores:
    """Distinct per-joint scores, decreasing from ``start`` in steps far below any other value used."""

    def __init__(self, start: float = 0.5, step: float = 1e-4):
        self._next = itertools.count()
        self.start, self.step = start, step

    def take(self, n: int = 17) -> np.ndarray:
        return np.array([self.start - self.step * next(self._next) for _ in range(n)])


def person_from_ann(
    ann: dict, scores: np.ndarray, shift: tuple[float, float] = (0.0, 0.0)
) -> PersonPrediction:
    kp = keypoints(ann)
    xy = kp[:, :2] + np.asarray(shift)
    xy[~annotated(ann)] = np.nan
    return PersonPrediction(xy, scores, track_id=None)


def gt_as_predictions(gts: dict[str, dict], scores: Scores | None = None) -> dict[str, dict[int, list]]:
    """Every GT person written back as a prediction, scores distinct, keyed like write_prediction_dir."""
    scores = scores or Scores()
    out: dict[str, dict[int, list]] = {}
    for stem, gt in gts.items():
        frame_of = {im["id"]: f for f, im in enumerate(gt["images"])}
        per_frame: dict[int, list] = {}
        for ann in gt["annotations"]:
            per_frame.setdefault(frame_of[ann["image_id"]], []).append(person_from_ann(ann, scores.take()))
        out[stem] = per_frame
    return out


def write_gt(folder: Path, gts: dict[str, dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for stem, data in gts.items():
        (folder / f"{stem}.json").write_text(json.dumps(data))
    return folder


def setup(tmp_path: Path, gts: dict[str, dict], preds: dict[str, dict[int, list]]) -> tuple[Path, Path]:
    """Write GT and (through the writer) predictions; returns (gt_dir, pred_dir)."""
    gt_dir = write_gt(tmp_path / "gt", gts)
    write_prediction_dir(gt_dir, preds, tmp_path / "pred")
    return gt_dir, tmp_path / "pred"


def to_pt17(gt: dict) -> dict:
    """The same video in PoseTrack2017 annolist form, following PoseTrack's own layout: head box as
    corners x1 = x, x2 = x + w; points with poseval joint ids; ignore regions as point lists."""
    annolist = []
    for im in gt["images"]:
        frame: dict = {"image": [{"name": im["file_name"]}], "annorect": []}
        if im.get("ignore_regions_x"):
            frame["ignore_regions"] = [
                {"point": [{"x": [x], "y": [y]} for x, y in zip(xs, ys, strict=True)]}
                for xs, ys in zip(im["ignore_regions_x"], im["ignore_regions_y"], strict=True)
            ]
        for ann in gt["annotations"]:
            if ann["image_id"] != im["id"]:
                continue
            kp, has = keypoints(ann), annotated(ann)
            x, y, w, h = ann["bbox_head"]
            points = [
                {
                    "id": [pid],
                    "x": [float(kp[JOINT_INDEX[n], 0])],
                    "y": [float(kp[JOINT_INDEX[n], 1])],
                    "is_visible": [1],
                }
                for pid, n in enumerate(PT17_NAMES)
                if has[JOINT_INDEX[n]]
            ]
            frame["annorect"].append(
                {
                    "x1": [x],
                    "y1": [y],
                    "x2": [x + w],
                    "y2": [y + h],
                    "track_id": [ann["track_id"]],
                    "annopoints": [{"point": points}],
                }
            )
        annolist.append(frame)
    return {"annolist": annolist}


def ap_of(report: dict) -> dict[str, float]:
    return {n: report["joints"][n]["ap"] for n in SCORED_NAMES}


def column_means(ap: dict[str, float]) -> dict[str, float]:
    """The table columns from per-joint APs, as defined (Total = mean of the 15 joints)."""
    cols = {
        "Head": ("head_top", "head_bottom", "nose"),
        "Shoulder": ("right_shoulder", "left_shoulder"),
        "Elbow": ("right_elbow", "left_elbow"),
        "Wrist": ("right_wrist", "left_wrist"),
        "Hip": ("right_hip", "left_hip"),
        "Knee": ("right_knee", "left_knee"),
        "Ankle": ("right_ankle", "left_ankle"),
    }
    out = {c: sum(ap[n] for n in names) / len(names) for c, names in cols.items()}
    valid = [v for v in ap.values() if not math.isnan(v)]
    out["Total"] = sum(valid) / len(valid)
    return out
