"""A training run: the configured stages in order, each initialised from the previous one's
final weights (the first from ``run.init`` when set), with one TensorBoard log and a PNG of the
training curves at the end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import yaml
from torch.utils.tensorboard import SummaryWriter

from cmpose.config import to_dict
from cmpose.engine import dist
from cmpose.engine.checkpointing import read_checkpoint
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.trainer import StageTrainer
from cmpose.errors import ConfigError
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)


def run_training(cfg: ExperimentConfig, out_dir: Path, resume: bool = False) -> dict[str, Any]:
    """Train every stage; returns (on every rank) a summary with each stage's steps, time and
    validation report. Rank 0 writes ``config.yaml``, ``tb/``, ``summary.json`` and ``curves.png``."""
    out_dir = Path(out_dir)
    device = dist.setup(cfg.run.device)
    if dist.is_main():
        if not resume and any(out_dir.glob("*/last.pt")):
            raise ConfigError(
                f"{out_dir} already holds a run: pass --resume to continue it, or another --out"
            )
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode())
    dist.barrier()
    writer = SummaryWriter(str(out_dir / "tb")) if dist.is_main() else None
    init = Path(cfg.run.init) if cfg.run.init else None
    external = init is not None
    summary: dict[str, Any] = {"stages": []}
    try:
        for stage in cfg.stages:
            final = out_dir / stage.name / "final.pt"
            if resume and final.is_file():
                log.info("stage '%s' already finished: %s", stage.name, final)
                summary["stages"].append(_finished_stage(stage, final))
                init, external = final, False
                continue
            log.info("stage '%s' (%s): %d epochs%s", stage.name, stage.kind, stage.epochs,
                     f", at most {stage.minutes:g} min" if stage.minutes else "")  # fmt: skip
            trainer = StageTrainer(cfg, stage, out_dir / stage.name, init, device, writer, resume, external)
            result = trainer.run()
            summary["stages"].append(
                {
                    "name": stage.name,
                    "kind": stage.kind,
                    "steps": result.steps,
                    "epochs": result.epochs_done,
                    "seconds": round(result.seconds, 1),
                    "val": result.report,
                }
            )
            init, external = result.final, False
    finally:
        if writer is not None:
            writer.close()
    summary["final_checkpoint"] = str(init) if init else None
    if dist.is_main():
        atomic_write_json(out_dir / "summary.json", summary)
        _plot(out_dir)
    return summary


def _finished_stage(stage: StageConfig, final: Path) -> dict[str, Any]:
    """The summary entry of a stage that finished in an earlier run (from its final checkpoint)."""
    state = read_checkpoint(final)
    report = json.loads(state["report"]) if state.get("report") else None
    return {
        "name": stage.name,
        "kind": stage.kind,
        "steps": state["step"],
        "epochs": state["epoch"],
        "seconds": round(state["seconds"], 1),
        "val": report,
    }


def _plot(out_dir: Path) -> None:
    """Training curves from the TensorBoard log (a picture people can look at without TB)."""
    try:
        from cmpose.viz.curves import plot_curves, read_tensorboard_scalars

        plot_curves(
            read_tensorboard_scalars(out_dir / "tb"), out_dir / "curves.png", title=out_dir.name, staged=True
        )
    except Exception as err:  # noqa: BLE001 - a missing picture must not fail a finished run
        log.warning("could not draw the training curves: %s", err)
