"""One training stage: data, optimizer, schedule, AMP, EMA, DDP, checkpoints, validation.

Checkpoints go to ``RUN/<stage>/last.pt`` every epoch (and every ``checkpoint_steps``) and
``RUN/<stage>/final.pt`` at the end; ``resume`` continues from ``last.pt`` at the exact batch
(the sampler order and the augmentation are functions of (seed, epoch, index), so skipping the
batches already done reproduces the rest of the epoch).
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Sampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from cmpose.data.build import build_clip_dataset, make_loader
from cmpose.data.sampler import KeyframeGroupedSampler
from cmpose.engine import dist
from cmpose.engine.budget import StepTimer
from cmpose.engine.checkpointing import read_checkpoint, rng_state, save_checkpoint, set_rng_state
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.ema import ModelEma
from cmpose.engine.optim import build_optimizer, lr_factor
from cmpose.engine.stages import (
    build_stage_model,
    freeze,
    frozen_norms,
    load_init,
    load_previous_stage,
    stage_clip,
)
from cmpose.engine.testing import resolve_path, run_test, summary_line
from cmpose.errors import ConfigError

log = logging.getLogger(__name__)


class SkipSampler(Sampler[int]):
    """The base sampler's order without its first ``skip`` indices (resuming mid-epoch)."""

    def __init__(self, base: Sampler[int], skip: int = 0) -> None:
        self.base, self.skip = base, skip

    def set_epoch(self, epoch: int) -> None:
        self.base.set_epoch(epoch)  # type: ignore[attr-defined]

    def __iter__(self):  # noqa: ANN204
        it = iter(self.base)
        for _ in range(self.skip):
            next(it, None)
        return it

    def __len__(self) -> int:
        return max(0, len(self.base) - self.skip)  # type: ignore[arg-type]


def _json_safe(obj: Any) -> Any:
    """A report as plain JSON text: a checkpoint loaded with weights_only holds no arbitrary
    objects (and NaN survives as a JSON token)."""
    import json

    return None if obj is None else json.dumps(obj)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AVX512-BF16 or AMX). Without it PyTorch
    emulates bf16 matrix products: on a 2-core AVX2 EPYC a (1152x768)x(768x3072) product took
    1.13 s in bf16 against 0.18 s in float32, so autocast would slow training about 6x."""
    cpu = getattr(torch, "cpu", None)
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(bool(getattr(cpu, name, lambda: False)()) for name in checks)


def amp_dtype(setting: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``run.amp``: ``auto`` = bf16 where the device computes it natively
    (Ampere+ GPUs; CPUs with AVX512-BF16 or AMX), fp16 with a grad scaler on older GPUs, float32
    (no autocast) on other CPUs; ``bf16`` / ``fp16`` force a dtype, ``off`` none."""
    if setting == "off":
        return None
    if setting == "fp16":
        return torch.float16
    if setting == "bf16":
        return torch.bfloat16
    if device.type == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16


@dataclass
class StageResult:
    steps: int
    epochs_done: int
    seconds: float
    final: Path
    report: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    val_seconds: float = 0.0  # the final validation's share of ``seconds``


class StageTrainer:
    """Trains one stage; ``run()`` returns a ``StageResult``."""

    def __init__(
        self,
        cfg: ExperimentConfig,
        stage: StageConfig,
        stage_dir: Path,
        init: Path | None,
        device: torch.device,
        writer: SummaryWriter | None,
        resume: bool,
        init_external: bool = False,
    ) -> None:
        self.cfg, self.stage, self.dir, self.device, self.writer = cfg, stage, Path(stage_dir), device, writer
        self.clip_cfg = stage_clip(cfg, stage)
        # The initial weights come from the seed, whatever ran before in this process.
        torch.manual_seed(cfg.run.seed)
        model = build_stage_model(cfg, stage)
        if init is not None and init_external:
            load_init(model, str(init))  # run.init: ViTPose / MAE / cmpose weights
        elif init is not None:  # the previous stage (its EMA weights when it kept them)
            state = read_checkpoint(init)
            load_previous_stage(model, state.get("ema") or state["model"], str(init))
        freeze(model, stage.freeze)
        self.frozen_norms = frozen_norms(model, stage.freeze)
        self.model = model.to(device)
        self.ddp = (
            DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
            if dist.is_distributed()
            else model
        )
        data = cfg.data
        self.dataset = build_clip_dataset(
            resolve_path(data.root, data.train),
            train=True,
            clip=self.clip_cfg,
            crop=data.crop,
            augment=data.augment,
            loader=data.loader,
            image_root=resolve_path(data.root, data.image_root),
            pt17_layout=data.pt17_layout,
            seed=cfg.run.seed,
        )
        self._set_supervised_joints(data.augment.flip_prob > 0)
        self.batch_size = stage.batch_size or data.batch_size
        if data.sampler == "grouped":
            self.base_sampler: Sampler[int] = KeyframeGroupedSampler(
                self.dataset.samples, seed=cfg.run.seed, rank=dist.rank(), world_size=dist.world_size()
            )
        else:
            self.base_sampler = torch.utils.data.DistributedSampler(
                self.dataset, dist.world_size(), dist.rank(), shuffle=True, seed=cfg.run.seed
            )
        self.steps_per_epoch = len(self.base_sampler) // self.batch_size
        if self.steps_per_epoch == 0:
            raise ConfigError(
                f"stage '{stage.name}': {len(self.dataset)} training samples give no full batch of "
                f"{self.batch_size} per process (data.batch_size / stages.N.batch_size)"
            )
        o = cfg.optim
        self.optimizer = build_optimizer(
            self.model,
            lr=stage.lr if stage.lr is not None else o.lr,
            weight_decay=o.weight_decay,
            betas=o.betas,
            layer_decay=o.layer_decay,
        )
        # A step-counted stage (stage.steps) has no epoch cap: its length is the same on any
        # machine and for any step cost.
        self.planned_steps = stage.steps or stage.epochs * self.steps_per_epoch
        self.total_steps = self.planned_steps
        self.milestones = tuple(m * self.steps_per_epoch for m in o.milestones)
        # The factor reads self.total_steps at each step: a wall-time budget shortens it.
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self._factor)
        self.amp = amp_dtype(cfg.run.amp, device)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.amp == torch.float16)
        self.ema = ModelEma(self.model, cfg.run.ema) if cfg.run.ema > 0 else None
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.history: list[dict[str, Any]] = []
        self._finite: torch.Tensor | None = None  # all losses finite since the last check (device)
        self.seconds_before = 0.0
        if resume and (self.dir / "last.pt").is_file():
            self._load(self.dir / "last.pt")

    # --- schedule ------------------------------------------------------------------------------------
    def _factor(self, step: int) -> float:
        o = self.cfg.optim
        return lr_factor(
            step,
            total_steps=max(1, self.total_steps),
            warmup_steps=min(o.warmup_steps, max(0, self.total_steps // 5)),
            schedule=o.schedule,
            milestones=self.milestones,
            gamma=o.gamma,
            min_factor=o.min_lr_factor,
        )

    # --- checkpoints ---------------------------------------------------------------------------------
    def _train_data(self) -> dict[str, Any]:
        """The training-data record of every checkpoint: read from the annotation files once per
        stage, not at every save (a merged PoseTrack17 file is tens of MB of JSON)."""
        if getattr(self, "_train_data_record", None) is None:
            from cmpose.engine.checkpointing import train_data_record

            self._train_data_record = train_data_record(self.cfg.data)
        return self._train_data_record

    def _state(self) -> dict[str, Any]:
        from cmpose.config import to_dict

        return {
            "model": self.model.state_dict(),
            "ema": self.ema.state_dict() if self.ema else None,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "total_steps": self.total_steps,
            "seconds": self.seconds_before + (time.perf_counter() - self.t0),
            "history": self.history,
            "rng": rng_state(),
            "config": to_dict(self.cfg),
            "train_data": self._train_data(),  # cmpose infer warns on synthetic-only
            "stage": self.stage.name,
            "report": _json_safe(getattr(self, "report", None)),
        }

    def _save(self, name: str) -> None:
        self._check_finite()  # never overwrite a checkpoint with weights a non-finite loss moved
        if dist.is_main():
            save_checkpoint(self.dir / name, self._state())

    def _load(self, path: Path) -> None:
        state = read_checkpoint(path)
        self.model.load_state_dict(state["model"])
        if self.ema and state.get("ema"):
            self.ema.load_state_dict(state["ema"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.total_steps = state["batch_in_epoch"], state["total_steps"]
        self.seconds_before, self.history = state["seconds"], list(state["history"])
        set_rng_state(state["rng"])
        log.info("resumed stage '%s' at epoch %d, step %d", self.stage.name, self.epoch, self.step)

    # --- the loop ------------------------------------------------------------------------------------
    def epoch_loader(self) -> DataLoader:
        """The loader of the current epoch from the batch it is at (``cmpose bench train`` times
        the same loader)."""
        self.dataset.set_epoch(self.epoch)
        self.base_sampler.set_epoch(self.epoch)  # type: ignore[attr-defined]
        sampler = SkipSampler(self.base_sampler, self.batch_in_epoch * self.batch_size)
        return make_loader(
            self.dataset, self.batch_size, self.cfg.data.workers, sampler=sampler, drop_last=True
        )

    def run(self) -> StageResult:
        self.t0 = time.perf_counter()
        budget = self.stage.minutes * 60.0
        stop = False
        timer = StepTimer()
        while (
            (self.stage.steps > 0 or self.epoch < self.stage.epochs)  # a step budget has no epoch cap
            and not stop
            and self.step < self.total_steps
        ):
            loader = self.epoch_loader()
            bar = tqdm(
                loader,
                desc=f"{self.stage.name} epoch {self.epoch + 1}"
                + (f" ({self.total_steps} steps)" if self.stage.steps else f"/{self.stage.epochs}"),
                disable=not dist.is_main(),
                unit="batch",
                leave=False,
            )
            for batch in bar:
                losses = self._train_step(batch)
                self.step += 1
                self.batch_in_epoch += 1
                if self.step % self.cfg.run.log_every == 0 or self.step == 1:
                    self._log(losses, bar)
                if self.cfg.run.checkpoint_steps and self.step % self.cfg.run.checkpoint_steps == 0:
                    self._save("last.pt")
                if budget > 0:
                    elapsed = self.seconds_before + time.perf_counter() - self.t0
                    per_step = timer.observe(self.step, elapsed)
                    if per_step is not None:
                        self._fit_budget(budget, elapsed, per_step)
                    stop = bool(dist.broadcast_object(elapsed >= budget)) if self.step % 5 == 0 else stop
                if stop or self.step >= self.total_steps:
                    break
            bar.close()
            finished_epoch = self.batch_in_epoch >= self.steps_per_epoch
            if finished_epoch:
                self.epoch += 1
                self.batch_in_epoch = 0
            self._save("last.pt")
            val = self.cfg.run.val_every
            if finished_epoch and val and self.epoch % val == 0 and self.step < self.total_steps and not stop:
                self._validate()
        t_val = time.perf_counter()
        self.report = self._validate()
        val_seconds = time.perf_counter() - t_val
        self._save("final.pt")
        report = self.report
        dist.barrier()
        seconds = self.seconds_before + time.perf_counter() - self.t0
        return StageResult(
            self.step, self.epoch, seconds, self.dir / "final.pt", report, self.history, val_seconds
        )

    def _fit_budget(self, budget: float, elapsed: float, per_step: float) -> None:
        """Fit the schedule's length to the steps that fit in the wall-time budget at
        ``per_step`` seconds per step (``StepTimer``'s estimate)."""
        planned = self.planned_steps
        # Rank 0's estimate for all ranks: they must stop at the same step.
        fit = dist.broadcast_object(self.step + int((budget - elapsed) / per_step))
        total = max(self.step + 1, min(fit, planned))
        if total != self.total_steps:
            log.info(
                "stage '%s': %.3f s/step, %d of %d planned steps fit in %.1f min",
                self.stage.name, per_step, total, planned, self.stage.minutes,
            )  # fmt: skip
            self.total_steps = total

    def _train_step(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        self.ddp.train()
        for m in self.frozen_norms:
            m.eval()
        clip = batch["clip"].to(self.device, non_blocking=True)
        targets = {
            "target": batch["target"].to(self.device, non_blocking=True),
            "target_weight": batch["target_weight"].to(self.device, non_blocking=True),
        }
        # Every random draw of the step (auxiliary masks, noise, drop-path) is a function of
        # (seed, rank, step), so a resumed run draws exactly what the uninterrupted one did, even
        # though creating a loader iterator consumes the global generator.
        step_seed = (self.cfg.run.seed * 1_000_003 + dist.rank() * 7919 + self.step) % (2**63)
        torch.manual_seed(step_seed)
        gen = torch.Generator(self.device).manual_seed(step_seed)
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            out = self.ddp(clip, targets, gen)
        loss = out["loss"]["total"]
        # Checked on the host only when logging or saving (``_check_finite``): reading a device
        # value every step would make the host wait for the device at every step.
        finite = torch.isfinite(loss.detach())
        self._finite = finite if self._finite is None else self._finite & finite
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.optim.clip_grad > 0:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for p in self.model.parameters() if p.requires_grad], self.cfg.optim.clip_grad
            )
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        if self.ema:
            self.ema.update(self.model, self.step)
        # Detached device tensors: ``_log`` converts them only on the steps it logs.
        # The auxiliary terms are balanced against the pose term (cmpose.models.balance): their raw
        # values, logged as loss/raw/<term>, show whether the auxiliary tasks themselves learn.
        raw = {f"raw/{k}": v for k, v in out.get("raw_losses", {}).items()}
        return {**{k: v.detach() for k, v in out["loss"].items()}, **raw}

    def _check_finite(self) -> None:
        """Raise if a loss since the last check was not finite (one host sync per check)."""
        finite, self._finite = self._finite, None
        if finite is not None and not bool(finite):
            raise FloatingPointError(
                f"stage '{self.stage.name}': a loss up to step {self.step} was not finite"
            )

    def _set_supervised_joints(self, flip: bool) -> None:
        """TCIS sums over the joints the training samples label (with flips, also their mirrors)."""
        from cmpose.keypoints import FLIP_INDEX, PT18_NAMES
        from cmpose.models.tcis import supervised_joints

        J = self.model.cfg.num_joints
        joints = supervised_joints(
            (p.keypoints for p in self.dataset.samples),
            J,
            FLIP_INDEX if flip and J == len(FLIP_INDEX) else None,
        )
        if not joints.any():
            raise ConfigError(f"stage '{self.stage.name}': the training samples label no joint")
        self.model.supervised_joints.copy_(joints)
        names = PT18_NAMES if J == len(PT18_NAMES) else [str(j) for j in range(J)]
        excluded = [names[j] for j in range(J) if not joints[j]]
        if excluded:
            log.info("stage '%s': TCIS leaves out joints no training sample labels: %s", self.stage.name,
                     ", ".join(excluded))  # fmt: skip

    def _log(self, losses: dict[str, torch.Tensor], bar: tqdm) -> None:
        self._check_finite()
        losses = {k: float(v) for k, v in losses.items()}  # the one host sync of a logged step
        lr = self.optimizer.param_groups[-1]["lr"]
        entry = {"step": self.step, "lr": lr, **{f"loss/{k}": v for k, v in losses.items()}}
        self.history.append(entry)
        bar.set_postfix(loss=f"{losses['total']:.4f}", lr=f"{lr:.2e}")
        if self.writer is not None:
            tag = self.stage.name
            for k, v in losses.items():
                self.writer.add_scalar(f"{tag}/loss/{k}", v, self.step)
            self.writer.add_scalar(f"{tag}/lr", lr, self.step)

    def _validate(self) -> dict[str, Any] | None:
        model = self.model
        ctx = self.ema.swapped(model) if self.ema else contextlib.nullcontext()
        with ctx:
            report = run_test(
                model,
                self.cfg.data,
                self.clip_cfg,
                self.cfg.test,
                self.dir / f"val_epoch{self.epoch}",
                self.device,
                self.amp,
            )
        if report is not None:
            log.info("stage '%s' epoch %d: val %s", self.stage.name, self.epoch, summary_line(report))
            self.history.append({"step": self.step, "val/mAP": report["all"]["Total"]})
            if self.writer is not None:
                self.writer.add_scalar(f"{self.stage.name}/val/mAP", report["all"]["Total"], self.step)
                if report.get("hard"):
                    self.writer.add_scalar(
                        f"{self.stage.name}/val/mAP_hard", report["hard"]["Total"], self.step
                    )
        return report
