"""Per-term gradient norms on the layers every loss term shares (``cmpose bench grads``).

A multitask loss is balanced when the task that matters, the pose, dominates the gradient of the
layers all terms train. This measures, for one configured stage run through the real trainer
(its data, model, optimizer, schedule, AMP), the gradient norm of each weighted loss term with
respect to the shared parameters: the spatio-temporal encoder and the last backbone block. It
measures at chosen steps (e.g. 0 and 200) on that step's training batch, in float32 and without
gradient clipping, each term by its own ``autograd.grad`` (the optimizer never sees these
gradients; BatchNorm statistics are restored afterwards, so training is not perturbed).
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from cmpose.engine.config import ExperimentConfig
from cmpose.errors import ConfigError


def shared_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The trainable parameters every loss term reaches: ``encoder.*`` and the last backbone block."""
    blocks = getattr(getattr(model, "backbone", None), "blocks", None)
    last = f"backbone.blocks.{len(blocks) - 1}." if blocks is not None and len(blocks) else None
    chosen = [
        (n, p)
        for n, p in model.named_parameters()
        if p.requires_grad and (n.startswith("encoder.") or (last is not None and n.startswith(last)))
    ]
    if not chosen:
        raise ConfigError("no trainable encoder or backbone-block parameters to measure gradients on")
    return chosen


def term_gradient_norms(
    model: nn.Module, clip: Tensor, targets: dict[str, Tensor], seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """The L2 norm of each weighted loss term's gradient on the shared parameters, in all and
    by group (``encoder``: the spatio-temporal encoder; ``last_block``: the last backbone block).

    Args:
        model: a CM-Pose model in training mode.
        clip: (B, T, 3, H, W); targets: {target (B, J, Hh, Wh), target_weight (B, J)}.
        seed: seeds the auxiliary branches' masks and noise.

    Returns:
        ({"all" | "encoder" | "last_block": {term: norm}}, ``total`` included: the norm of the
        summed gradient; {term: loss value}).
    """
    named = shared_parameters(model)
    params = [p for _, p in named]
    groups = ["encoder" if n.startswith("encoder.") else "last_block" for n, _ in named]
    buffers = {k: v.clone() for k, v in model.named_buffers()}
    out = model(clip, targets, torch.Generator(clip.device).manual_seed(seed))
    norms: dict[str, dict[str, float]] = {"all": {}, "encoder": {}, "last_block": {}}
    names = list(out["loss"])
    for i, name in enumerate(names):
        grads = torch.autograd.grad(
            out["loss"][name], params, retain_graph=i < len(names) - 1, allow_unused=True
        )
        sq = {"encoder": 0.0, "last_block": 0.0}
        for g, group in zip(grads, groups, strict=True):
            if g is not None:
                sq[group] += float(g.float().pow(2).sum())
        norms["all"][name] = math.sqrt(sq["encoder"] + sq["last_block"])
        norms["encoder"][name] = math.sqrt(sq["encoder"])
        norms["last_block"][name] = math.sqrt(sq["last_block"])
    with torch.no_grad():  # the measuring forward must not move BatchNorm running statistics
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    return norms, {k: float(v.detach()) for k, v in out["loss"].items()}


def measure_gradient_shares(
    cfg: ExperimentConfig,
    stage_name: str,
    at_steps: list[int],
    device: torch.device,
    work_dir: Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train stage ``stage_name`` of ``cfg`` up to ``max(at_steps)`` steps with the real trainer,
    measuring ``term_gradient_norms`` before the steps listed in ``at_steps``.

    The stage starts as ``cmpose train`` would start it when it is the first stage: from
    ``run.init`` when set, else from the seed's initialisation.

    Returns:
        {"stage", "kind", "shared_parameters", "measurements": [{"step", "norms", "shares",
        "losses"}]}: ``norms`` by group (``term_gradient_norms``), ``shares`` = each term's norm
        on all shared parameters / the pose term's.
    """
    from tqdm import tqdm

    from cmpose.api import find_stage
    from cmpose.engine.trainer import StageTrainer

    stage = find_stage(cfg, stage_name)
    if not at_steps or min(at_steps) < 0:
        raise ConfigError(f"steps to measure at must be >= 0, got {at_steps}")
    cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, ema=0.0))
    init = Path(cfg.run.init) if cfg.run.init else None
    with tempfile.TemporaryDirectory(dir=work_dir) as tmp:
        trainer = StageTrainer(
            cfg, stage, Path(tmp), init, device, None, False, init_external=init is not None
        )
        model = trainer.model
        shared = shared_parameters(model)
        last = max(at_steps)
        results: list[dict[str, Any]] = []
        bar = tqdm(total=last, desc=f"gradient shares, stage {stage.name}", disable=not progress, unit="step")
        while trainer.step <= last:
            loader = trainer.epoch_loader()  # the trainer's own per-epoch loader
            for batch in loader:
                if trainer.step in at_steps:
                    model.train()
                    for m in trainer.frozen_norms:
                        m.eval()
                    clip = batch["clip"].to(device)
                    targets = {k: batch[k].to(device) for k in ("target", "target_weight")}
                    norms, values = term_gradient_norms(
                        model, clip, targets, seed=cfg.run.seed + trainer.step
                    )
                    pose = norms["all"].get("pose") or float("nan")
                    results.append(
                        {
                            "step": trainer.step,
                            "norms": norms,
                            "shares": {k: v / pose for k, v in norms["all"].items()},
                            "losses": values,
                        }
                    )
                if trainer.step >= last:
                    break
                trainer._train_step(batch)
                trainer.step += 1
                bar.update(1)
            if trainer.step >= last:
                break
            trainer.epoch += 1
            trainer.batch_in_epoch = 0
        bar.close()
    return {
        "stage": stage.name,
        "kind": stage.kind,
        "shared_parameters": sum(p.numel() for _, p in shared),
        "measurements": results,
    }
