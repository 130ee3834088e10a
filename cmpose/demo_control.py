"""The demo's time-matched control: the single-frame pretraining continued, on single frames, for
as long as the temporal stages trained, so the summary can show what those stages bought
(issue 15, part 5).

Same data, seed, learning rate and schedule shape as the pretraining; it starts from the
pretraining's final weights, as MCL does. Its per-joint-class mAP is computed with the temporal
model's clip window, so "hidden here, visible within +-w" names the same GT joints in both rows.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path
from typing import Any

from cmpose.engine.config import ExperimentConfig, StageConfig

log = logging.getLogger(__name__)


def has_control(cfg: ExperimentConfig) -> bool:
    """A control makes sense when a single-frame stage comes first and temporal stages follow."""
    return (
        len(cfg.stages) > 1
        and cfg.stages[0].kind == "single"
        and any(s.kind != "single" for s in cfg.stages[1:])
    )


def temporal_training_seconds(stages: list[dict[str, Any]]) -> float:
    """Training time of the stages after the first, without their final validations."""
    return sum(max(0.0, s["seconds"] - s.get("val_seconds", 0.0)) for s in stages[1:])


def control_config(cfg: ExperimentConfig, pretrain_final: Path, seconds: float) -> ExperimentConfig:
    """One single-frame stage of ``seconds`` (at least 0.01 min) from ``pretrain_final``."""
    first = cfg.stages[0]
    stage = StageConfig(
        name="control",
        kind="single",
        epochs=first.epochs,
        minutes=max(0.01, round(seconds / 60.0, 3)),
        lr=first.lr,
        batch_size=first.batch_size,
    )
    run = dataclasses.replace(cfg.run, init=str(pretrain_final))
    return dataclasses.replace(cfg, stages=[stage], run=run)


def train_control(cfg: ExperimentConfig, run_dir: Path, train: dict[str, Any], out: Path) -> dict[str, Any]:
    """Train and test the control in ``out``; returns {matched_seconds, steps, seconds, val}."""
    from cmpose.engine.run import run_training
    from cmpose.engine.testing import split_paths
    from cmpose.eval.joint_classes import clip_window, evaluate_by_class

    seconds = temporal_training_seconds(train["stages"])
    ccfg = control_config(cfg, Path(run_dir) / cfg.stages[0].name / "final.pt", seconds)
    if out.exists():
        shutil.rmtree(out)
    log.info("single-frame control: %.0f s of training, as long as the temporal stages", seconds)
    summary = run_training(ccfg, out)
    stage = summary["stages"][0]
    val = stage["val"]
    if val is not None:
        ann, _ = split_paths(cfg.data, "val")
        gt_dir = ann if ann.is_dir() else ann.parent
        pred_dir = out / "control" / f"val_epoch{stage['epochs']}" / "predictions"
        window = clip_window(cfg.data.clip.num_frames, cfg.data.clip.test_step)
        by_class = evaluate_by_class(gt_dir, pred_dir, window) if pred_dir.is_dir() else None
        val = {**val, "joint_classes": by_class} if by_class is not None else val
    return {
        "matched_seconds": round(seconds, 1),
        "steps": stage["steps"],
        "seconds": stage["seconds"],
        "val": val,
    }
