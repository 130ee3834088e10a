"""What ``cmpose ablate`` measures of one trained variant, beside its training record:

- where its val predictions are (the final validation of its last stage, ``run_test``), so that
  the report can score them per video in every column (all frames, hard frames, each joint
  class) and bootstrap them (``cmpose.eval.bootstrap``);
- the TCIS keypoint recall at several keep ratios against the centre prior (``ablate_tcis``);
- mPC / rPC under image corruptions when asked (``cmpose.robustness``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from cmpose.engine.config import ExperimentConfig
from cmpose.engine.testing import split_paths
from cmpose.eval.bootstrap import UnitScores, from_video_scores
from cmpose.eval.joint_classes import JOINT_CLASSES, class_scores, clip_window, gt_classes
from cmpose.eval.posetrack import pair_files, score_video

if TYPE_CHECKING:
    from cmpose.engine.ablate import AblationPlan

log = logging.getLogger(__name__)


def val_gt_dir(cfg: ExperimentConfig) -> Path:
    """The folder of the val GT files (``data.val`` is a folder or a merged file in one)."""
    ann, _ = split_paths(cfg.data, "val")
    return ann if ann.is_dir() else ann.parent


def count_people(gt_dir: Path) -> int:
    """Annotated people (person-frames with at least one labelled joint) in the GT files."""
    from cmpose.eval.formats import load_video

    total = 0
    for path in sorted(Path(gt_dir).glob("*.json")):
        people = load_video(path, "gt").people
        total += int(people.present.any(axis=(1, 2)).sum()) if len(people.frame) else 0
    return total


@dataclass
class Columns:
    """The report's columns: the val GT, its hard frames, and the joint classes when the GT carries
    them (``cmpose synth --version 2``'s ``visible_dt``; ``cmpose.eval.joint_classes``)."""

    gt_all: Path
    gt_hard: Path | None
    classes: list[np.ndarray] | None  # (N, J) class per GT joint, one array per GT file
    window: int

    @property
    def names(self) -> list[str]:
        names = ["all"] + (["hard"] if self.gt_hard else [])
        return names + (list(JOINT_CLASSES) if self.classes is not None else [])


def prepare_columns(cfg: ExperimentConfig, out_dir: Path) -> Columns:
    """The columns of the val set of ``cfg``; the hard-frame GT is written under ``out_dir``.

    The joint classes are taken with the temporal variants' clip window (``data.clip``: T // 2 x
    test step) for every variant, the single-frame one included: "hidden in the keyframe, visible
    within the clip" names the same GT joints for all, so the comparison is paired.
    """
    from cmpose.eval.subsets import write_frame_subset

    gt_all = val_gt_dir(cfg)
    hard = out_dir / "hard"
    has_hard = write_frame_subset(gt_all, hard, lambda ann: bool(ann.get("hard")))
    clip = cfg.data.clip
    window = clip_window(clip.num_frames, clip.test_step)
    classes: list[np.ndarray] | None = []
    for path in sorted(p for p in gt_all.glob("*.json") if p.is_file()):  # pair_files' order
        cls = gt_classes(path, window)
        if cls is None:
            classes = None
            break
        classes.append(cls)
    return Columns(gt_all, hard if has_hard else None, classes, window)


def column_scores(cols: Columns, pred_dir: Path) -> dict[str, UnitScores]:
    """Per-video scores of a prediction folder in every column (units = videos)."""
    videos = [score_video(g, p) for g, p in pair_files(cols.gt_all, pred_dir)]
    out = {"all": from_video_scores(videos)}
    if cols.gt_hard is not None:
        out["hard"] = from_video_scores([score_video(g, p) for g, p in pair_files(cols.gt_hard, pred_dir)])
    if cols.classes is not None:
        for c, name in enumerate(JOINT_CLASSES):
            # A joint type without GT joints of the class is left out, as in class_report.
            out[name] = from_video_scores(
                [class_scores(v, cls, c) for v, cls in zip(videos, cols.classes, strict=True)],
                skip_joints_without_gt=True,
            )
    return out


def final_val_dir(folder: Path, summary: dict[str, Any]) -> Path:
    """The final validation of the run's last stage (``StageTrainer._validate``'s folder)."""
    last = summary["stages"][-1]
    return folder / last["name"] / f"val_epoch{last['epochs']}"


def measure_variant(
    cfg: ExperimentConfig, summary: dict[str, Any], folder: Path, plan: AblationPlan
) -> dict[str, Any]:
    """The variant's val results (evaluator's mAP; the folders the report scores), TCIS recall
    curve (temporal variants) and robustness (when ``plan.robustness``)."""
    from cmpose.data.build import build_clip_dataset
    from cmpose.engine.stages import stage_clip
    from cmpose.engine.testing import load_trained_model

    val_dir = final_val_dir(folder, summary)
    report = summary["stages"][-1]["val"]
    row: dict[str, Any] = {
        "val_dir": str(val_dir.relative_to(folder)),
        "mAP": report["all"]["Total"],
        "mAP_hard": report["hard"]["Total"] if report.get("hard") else None,
        "tcis": None,
        "robustness": None,
    }
    last = cfg.stages[-1]
    model = None
    if last.kind != "single":
        model, _ = load_trained_model(Path(summary["final_checkpoint"]), "cpu")
        ann, _ = split_paths(cfg.data, "val")
        # GT boxes: the recall is of the GT keypoints, in crops around the GT people.
        ds = build_clip_dataset(
            ann, train=False, clip=stage_clip(cfg, last), crop=cfg.data.crop,
            augment=cfg.data.augment, loader=cfg.data.loader,
        )  # fmt: skip
        from cmpose.engine.ablate_tcis import tcis_recall_curve

        row["tcis"] = tcis_recall_curve(
            model, ds, plan.tcis_ratios, batch_size=cfg.test.batch_size, max_samples=plan.tcis_samples
        )
    if plan.robustness:
        row["robustness"] = measure_robustness(cfg, Path(summary["final_checkpoint"]), folder, plan, model)
    return row


def measure_robustness(
    cfg: ExperimentConfig, checkpoint: Path, folder: Path, plan: AblationPlan, model: Any = None
) -> dict[str, Any] | None:
    """mPC and rPC of the variant (``cmpose.robustness.run.run_robustness``, on val) whose final
    checkpoint is ``checkpoint`` (or ``model``, when already loaded from it)."""
    from cmpose.engine.stages import stage_clip
    from cmpose.engine.testing import load_trained_model
    from cmpose.engine.trainer import amp_dtype
    from cmpose.robustness.run import run_robustness

    if model is None:
        model, _ = load_trained_model(checkpoint, "cpu")
    device = torch.device("cpu")
    result = run_robustness(
        model, cfg.data, stage_clip(cfg, cfg.stages[-1]), cfg.test, folder / "robustness", device,
        amp_dtype(cfg.run.amp, device), severities=plan.robustness_severities, seed=cfg.run.seed,
    )  # fmt: skip
    if result is None:
        return None
    return {
        "mPC": result["mPC"],
        "rPC": result["rPC"],
        "clean": result["clean"]["Total"],
        "severities": list(plan.robustness_severities),
    }


def robustness_missing(row: dict[str, Any], plan: AblationPlan) -> bool:
    """Whether a finished row lacks the robustness ``plan`` asks for (none yet, or measured at
    other severities), so that adding ``--robustness`` to a finished ablation measures it."""
    if not plan.robustness:
        return False
    rob = row.get("robustness")
    return not rob or rob.get("severities") != list(plan.robustness_severities)


def robustness_available() -> bool:
    try:
        import cmpose.robustness.run  # noqa: F401
    except ImportError:
        return False
    return True
