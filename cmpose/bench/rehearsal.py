"""Training rehearsal at real size (``cmpose bench train``): an experiment config's stages run for
a few steps through the real trainer on a synthetic 1280x720 JPEG set in the PoseTrack18 layout.

Each stage is built by ``StageTrainer`` itself (model, optimizer with layer decay, schedule, AMP
and grad scaler, EMA, DDP when a process group is up, dataset, sampler and the epoch's
DataLoader from ``StageTrainer.epoch_loader``) and stepped with its own ``_train_step``; only
validation and checkpoints are left out. The weights are the seed's random initialisation (no
``run.init``, no previous stage): a step costs the same.

Per timed step (after ``warmup`` untimed ones, which take the compilation and cuDNN autotuning
when there are any): ``data_wait`` is the time blocked in ``next()`` on the loader iterator (a
new epoch's worker start-up included when the set runs out), ``compute`` the time of
``_train_step`` (host-to-device copy, forward, backward, clipping, optimizer, scheduler, EMA;
on CUDA the clock is read after ``torch.cuda.synchronize``). ``step_s`` is the timed loop's wall
time per step, so data_wait + compute <= step_s (the rest is the memory sampling).
``clips_per_s`` = batch size x steps / wall time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import logging
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cmpose.bench.rehearsal_data import RehearsalData, point_at
from cmpose.bench.rehearsal_sys import MemoryProbe, cpu_model, device_name, load_average
from cmpose.config import to_dict
from cmpose.engine import dist
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.trainer import StageTrainer, amp_dtype
from cmpose.errors import ConfigError

log = logging.getLogger(__name__)


@dataclass
class RehearsalOptions:
    """What to run; None keeps the config's value.

    Args:
        steps / warmup: timed steps, after untimed ones.
        stages: stage names to run (None: all configured stages).
        batch_size: per process, for every stage (stage batch sizes are overridden).
        workers: loader processes (``data.workers``); amp: ``run.amp``; device: ``run.device``.
        compile: ``torch.compile`` the (DDP-wrapped) model. ddp: wrap the model in DDP on a
            process group of one process (when none is up already, e.g. under torchrun).
    """

    steps: int = 3
    warmup: int = 1
    stages: list[str] | None = None
    batch_size: int | None = None
    workers: int | None = None
    amp: str | None = None
    device: str | None = None
    compile: bool = False
    ddp: bool = False

    def __post_init__(self) -> None:
        if self.steps < 1 or self.warmup < 0:
            raise ConfigError(f"--steps must be >= 1 and --warmup >= 0, got {self.steps}, {self.warmup}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be >= 1, got {self.batch_size}")
        if self.workers is not None and self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")


def rehearsal_config(cfg: ExperimentConfig, opts: RehearsalOptions, root: Path) -> ExperimentConfig:
    """The config as rehearsed: data from ``root``, the options applied, the chosen stages."""
    cfg = point_at(cfg, root)
    data, run = cfg.data, cfg.run
    if opts.workers is not None:
        data = dataclasses.replace(data, workers=opts.workers)
    if opts.amp is not None:
        run = dataclasses.replace(run, amp=opts.amp)
    if opts.device is not None:
        run = dataclasses.replace(run, device=opts.device)
    stages = list(cfg.stages)
    if opts.stages:
        names = [s.name for s in stages]
        unknown = [n for n in opts.stages if n not in names]
        if unknown:
            raise ConfigError(f"--stages: no stage named {unknown} in the config (stages: {names})")
        stages = [s for s in stages if s.name in opts.stages]
    if opts.batch_size is not None:
        stages = [dataclasses.replace(s, batch_size=opts.batch_size) for s in stages]
    return dataclasses.replace(cfg, data=data, run=run, stages=stages)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _init_one_process_group(device: torch.device, store_dir: Path) -> bool:
    """A process group of one (DDP on one device); False when one is up already."""
    if dist.is_distributed():
        return False
    backend = "nccl" if device.type == "cuda" else "gloo"
    torch.distributed.init_process_group(
        backend, init_method=f"file://{store_dir / 'ddp_store'}", rank=0, world_size=1
    )
    return True


def _compile_settings(enabled: bool) -> contextlib.AbstractContextManager:
    """Dynamo settings while a compiled model runs. The auxiliary tasks draw their masks with NumPy
    on the host (cmpose.models.masking); by default Dynamo rewrites NumPy calls as torch ops, and
    it turned NumPy's cumsum of a bool array into a torch cumsum with dtype bool, which the CPU
    has no kernel for ("cumsum_out_cpu" not implemented for 'Bool', torch 2.13). Without NumPy
    tracing the masks are drawn by NumPy itself, as in eager mode (a graph break)."""
    if not enabled:
        return contextlib.nullcontext()
    import torch._dynamo

    return torch._dynamo.config.patch(trace_numpy=False)


def time_stage(
    cfg: ExperimentConfig, stage: StageConfig, device: torch.device, opts: RehearsalOptions, work: Path
) -> dict[str, Any]:
    """Build the stage through ``StageTrainer`` and time ``opts.steps`` steps after the warm-up."""
    memory = MemoryProbe(device)
    t0 = time.perf_counter()
    trainer = StageTrainer(cfg, stage, work / stage.name, None, device, None, resume=False)
    if opts.compile:
        trainer.ddp = torch.compile(trainer.ddp)
    setup_s = time.perf_counter() - t0
    epochs = 1
    it = iter(trainer.epoch_loader())

    def next_batch() -> dict[str, Any]:
        nonlocal it, epochs
        try:
            return next(it)
        except StopIteration:  # the set is shorter than the rehearsal: a new epoch, as training does
            trainer.epoch, trainer.batch_in_epoch = trainer.epoch + 1, 0
            epochs += 1
            it = iter(trainer.epoch_loader())
            return next(it)

    waits: list[float] = []
    computes: list[float] = []
    losses: dict[str, list[float]] = {}
    t_warm = time.perf_counter()
    wall0 = t_warm
    for i in range(opts.warmup + opts.steps):
        if i == opts.warmup:
            _sync(device)
            wall0 = time.perf_counter()
        a = time.perf_counter()
        batch = next_batch()
        b = time.perf_counter()
        step_losses = trainer._train_step(batch)
        _sync(device)
        c = time.perf_counter()
        trainer.step += 1
        trainer.batch_in_epoch += 1
        if i >= opts.warmup:
            waits.append(b - a)
            computes.append(c - b)
            for k, v in step_losses.items():
                losses.setdefault(k, []).append(float(v))
            memory.sample()
    wall = time.perf_counter() - wall0
    warmup_s = wall0 - t_warm
    mem = memory.report()
    result = {
        "name": stage.name,
        "kind": stage.kind,
        "batch_size": trainer.batch_size,
        "clip_frames": trainer.clip_cfg.num_frames,
        "amp": str(trainer.amp).replace("torch.", "") if trainer.amp else "off",
        "workers": cfg.data.workers,
        "compile": opts.compile,
        "ddp": dist.is_distributed(),
        "train_clips": len(trainer.dataset),
        "steps_per_epoch": trainer.steps_per_epoch,
        "epochs_started": epochs,
        "warmup": opts.warmup,
        "steps": opts.steps,
        "setup_s": round(setup_s, 3),
        "warmup_s": round(warmup_s, 3),
        "wall_s": wall,
        "step_s": wall / opts.steps,
        "data_wait_s": statistics.fmean(waits),
        "compute_s": statistics.fmean(computes),
        "compute_median_s": statistics.median(computes),
        "data_wait_fraction": sum(waits) / wall,
        "clips_per_s": trainer.batch_size * opts.steps / wall,
        "per_step": {"data_wait_s": waits, "compute_s": computes},
        "losses": {k: statistics.fmean(v) for k, v in losses.items()},
        "memory": mem,
    }
    return result


def run_rehearsal(
    cfg: ExperimentConfig,
    opts: RehearsalOptions,
    data: RehearsalData,
    config_label: str = "",
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """Rehearse every chosen stage of ``cfg`` on ``data``; returns the report (module docstring)."""
    cfg = rehearsal_config(cfg, opts, data.root)
    load_start = load_average()
    device = dist.setup(cfg.run.device)
    stages = []
    with tempfile.TemporaryDirectory(prefix="cmpose-rehearsal-") as tmp:
        started_group = _init_one_process_group(device, Path(tmp)) if opts.ddp else False
        try:
            for stage in cfg.stages:
                log.info("rehearsing stage '%s' (%s)", stage.name, stage.kind)
                with _compile_settings(opts.compile):
                    stages.append(time_stage(cfg, stage, device, opts, Path(tmp)))
                gc.collect()  # the stage's trainer (DDP keeps its model in a reference cycle)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        finally:
            if started_group:
                dist.cleanup()
    return {
        "benchmark": "train_rehearsal",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "device": {
            "type": device.type,
            "name": device_name(device),
            "amp_dtype": str(amp_dtype(cfg.run.amp, device) or "off").replace("torch.", ""),
        },
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cpu": {"model": cpu_model(), "count": _cpu_count(), "torch_threads": torch.get_num_threads()},
        "load_start": load_start,
        "load_end": load_average(),
        "config": config_label,
        "overrides": list(overrides or []),
        "options": dataclasses.asdict(opts),
        "data": data.report(),
        "memory_counted": "main_peak_mb: VmHWM of this process (reset per stage where Linux allows); "
        "with_workers_peak_mb: sum of VmRSS of this process and all processes below it (loader "
        "workers, forkserver), sampled after each timed step; shared pages count once per process",
        "stages": stages,
        "resolved_config": to_dict(cfg),
    }


def _cpu_count() -> int | None:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def table(report: dict[str, Any]) -> str:
    """A markdown table of the stages' numbers."""
    head = (
        "| stage | batch | amp | workers | compile | ddp | clips/s | step s | data wait s | compute s "
        "| peak RSS MB (main / +workers) | GPU max alloc MB | losses |"
    )
    rows = [head, "|" + " --- |" * 13]
    for s in report["stages"]:
        m = s["memory"]
        loss = ", ".join(f"{k} {v:.4g}" for k, v in s["losses"].items())
        gpu = m.get("gpu_max_allocated_mb")
        rows.append(
            f"| {s['name']} ({s['kind']}) | {s['batch_size']} | {s['amp']} | {s['workers']} | "
            f"{s['compile']} | {s['ddp']} | {s['clips_per_s']:.2f} | {s['step_s']:.3f} | "
            f"{s['data_wait_s']:.3f} | {s['compute_s']:.3f} | {m['main_peak_mb']:.0f} / "
            f"{m['with_workers_peak_mb'] or float('nan'):.0f} | "
            f"{'-' if gpu is None else f'{gpu:.0f}'} | {loss} |"
        )
    dev = report["device"]
    rows.append(
        f"\n{dev['name']} ({dev['type']}), torch {report['torch']}, load {report['load_start']} -> "
        f"{report['load_end']}"
    )
    return "\n".join(rows)
