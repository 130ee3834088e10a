"""A training run: the configured stages in order, each initialised from the previous one's
final weights (the first from ``run.init`` when set), with one TensorBoard log and a PNG of the
training curves at the end."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from torch.utils.tensorboard import SummaryWriter

from cmpose.config import from_dict, to_dict
from cmpose.engine import dist
from cmpose.engine.checkpointing import read_checkpoint
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.trainer import StageTrainer
from cmpose.errors import CmposeError, ConfigError
from cmpose.utils.io import atomic_write_bytes, atomic_write_json, remove_stale_temporaries

log = logging.getLogger(__name__)


# Called before each stage that still has to train, with its index, its config and the summary
# rows of the stages before it; returns the stage to train (e.g. with a new wall-time budget). Under
# DDP every rank must get the same answer (``cmpose demo``, its one user, is single-process).
Replan = Callable[[int, StageConfig, list[dict[str, Any]]], StageConfig]


def run_training(
    cfg: ExperimentConfig, out_dir: Path, resume: bool = False, replan: Replan | None = None
) -> dict[str, Any]:
    """Train every stage; returns (on every rank) a summary with each stage's steps, time and
    validation report. Rank 0 writes ``config.yaml``, ``tb/``, ``summary.json`` and ``curves.png``.

    ``replan`` may change a stage's settings just before it trains, from what the earlier stages
    took (``cmpose demo`` fits the later stages' budgets to the time actually left); the
    ``config.yaml`` written is the one planned before the first stage."""
    out_dir = Path(out_dir)
    device = dist.setup(cfg.run.device)
    problem = None
    if dist.is_main():
        if out_dir.exists() and not out_dir.is_dir():
            problem = f"--out {out_dir}: is a file; a run is a folder"
        elif not resume and any(out_dir.glob("*/last.pt")):
            problem = f"{out_dir} already holds a run: pass --resume to continue it, or another --out"
        elif resume:
            problem = resume_mismatch(cfg, out_dir)
        if problem is None:
            out_dir.mkdir(parents=True, exist_ok=True)
            remove_stale_temporaries(out_dir, depth=1)  # run folder and stage folders
    # Every rank raises, not only rank 0 (the others would wait for it at the next collective).
    problem = dist.broadcast_object(problem)
    if problem is not None:
        raise ConfigError(problem)
    config_written = resume and (out_dir / "config.yaml").is_file()
    writer = SummaryWriter(str(out_dir / "tb")) if dist.is_main() else None
    init = Path(cfg.run.init) if cfg.run.init else None
    external = init is not None
    summary: dict[str, Any] = {"stages": []}
    try:
        for index, stage in enumerate(cfg.stages):
            final = out_dir / stage.name / "final.pt"
            if resume and final.is_file():
                log.info("stage '%s' already finished: %s", stage.name, final)
                summary["stages"].append(_finished_stage(stage, final))
                init, external = final, False
                continue
            if replan is not None:
                stage = replan(index, stage, summary["stages"])
            length = f"{stage.steps} steps" if stage.steps else f"{stage.epochs} epochs"
            log.info("stage '%s' (%s): %s%s", stage.name, stage.kind, length,
                     f", at most {stage.minutes:g} min" if stage.minutes else "")  # fmt: skip
            with dist.peers_alive(f"stage '{stage.name}'"):
                trainer = StageTrainer(
                    cfg, stage, out_dir / stage.name, init, device, writer, resume, external
                )
            if not config_written and dist.is_main():
                # Only now that the first stage is built (data read, model made, weights loaded) is
                # the run known to start: a run refused earlier leaves the folder as it was.
                atomic_write_bytes(
                    out_dir / "config.yaml", yaml.safe_dump(to_dict(cfg), sort_keys=False).encode()
                )
            config_written = True
            with dist.peers_alive(f"stage '{stage.name}'"):
                result = trainer.run()
            summary["stages"].append(
                {
                    "name": stage.name,
                    "kind": stage.kind,
                    "steps": result.steps,
                    "epochs": result.epochs_done,
                    "seconds": round(result.seconds, 1),
                    "val_seconds": round(result.val_seconds, 1),
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


# Settings that say where and how fast a run computes, not what: a resume may change them (e.g. to
# continue on another machine). The loader's pixels do not depend on the number of workers.
RESUMABLE_CHANGES = ("data.workers", "test.workers", "run.device")


def _flatten(obj: Any, prefix: str = "") -> dict[str, Any]:
    """{'a.b.c': value} of a nested config dict; list entries by index (``stages.0.lr``)."""
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) for x in obj):
        items = ((str(i), x) for i, x in enumerate(obj))
    else:
        return {prefix: obj}
    out: dict[str, Any] = {}
    for k, v in items:
        out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def config_differences(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """The keys whose values differ between two resolved configs, as ``key: old -> new``."""
    a, b = _flatten(old), _flatten(new)
    out = []
    for key in sorted(set(a) | set(b)):
        if key in RESUMABLE_CHANGES:
            continue
        va, vb = a.get(key, "<absent>"), b.get(key, "<absent>")
        if va != vb:
            out.append(f"{key}: {va!r} -> {vb!r}")
    return out


def resume_mismatch(cfg: ExperimentConfig, out_dir: Path) -> str | None:
    """Why ``--resume`` must not continue the run in ``out_dir`` with ``cfg`` (None: it may).

    The run's config is its ``config.yaml`` (or, without one, a stage checkpoint's). A resume with
    other settings would mix two runs: the optimizer and schedule come from the checkpoint, so a
    new learning rate or model width would be recorded but not used (or crash mid-load).
    """
    saved_path = out_dir / "config.yaml"
    if saved_path.is_file():
        try:
            saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            return f"{saved_path}: cannot read the run's config ({err})"
    else:
        ckpts = sorted(out_dir.glob("*/last.pt")) + sorted(out_dir.glob("*/final.pt"))
        if not ckpts:
            return None  # nothing to resume: a fresh run
        try:
            saved = read_checkpoint(ckpts[0]).get("config")
        except CmposeError as err:
            return str(err)
        saved_path = ckpts[0]
    if not isinstance(saved, dict):
        return f"{saved_path}: not a cmpose run config"
    try:
        # Through the dataclasses: a key added to cmpose since the run started gets its default
        # rather than counting as a change.
        resolved = to_dict(from_dict(ExperimentConfig, saved))
    except CmposeError as err:
        return f"{saved_path}: the run's config no longer loads ({err})"
    diffs = config_differences(resolved, to_dict(cfg))
    if not diffs:
        return None
    shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
    return (
        f"--resume: the config differs from the run's ({saved_path}): {shown}. Resume with the run's "
        f"settings, or start a new run (another --out) from its checkpoint with --set run.init=CHECKPOINT"
    )


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
