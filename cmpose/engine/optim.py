"""AdamW with ViTPose's layer-wise LR decay, and the mmcv-style warmup + step/cosine schedule.

Layer-wise decay (BEiT, used by ViTPose's ``LayerDecayOptimizerConstructor``): with L backbone
blocks, layer id 0 is the patch embedding and position embedding, id i+1 is block i, id L+1 is
everything else (``last_norm``, heads, CM-Pose modules); a parameter's LR is
``lr * layer_decay ** (L + 1 - layer_id)``, so the head trains at the full LR and the patch
embedding at ``layer_decay ** (L + 1)`` of it.
"""

from __future__ import annotations

import functools
import math
import re
from typing import Any, Literal

import torch
from torch import nn
from torch.nn.parallel import DataParallel, DistributedDataParallel

_BLOCK_ID = re.compile(r"blocks\.(\d+)\.")
# Parameters named like a token or an embedding (keypoint tokens, mask token, position / frame
# embeddings) are learned vectors, not weight matrices: decaying them towards 0 only biases them.
_NO_DECAY_NAME = re.compile(r"token|embed")


def _unwrap(model: nn.Module) -> nn.Module:
    """The module whose parameter names we want: DDP/DP's ``.module``, torch.compile's original."""
    if isinstance(model, (DistributedDataParallel, DataParallel)):
        model = model.module
    return getattr(model, "_orig_mod", model)


def layer_id(name: str, num_layers: int, backbone_prefix: str = "backbone.") -> int:
    """ViTPose/BEiT layer id of a parameter name: 0 embeddings, i+1 block i, num_layers+1 the rest.

    Args:
        name: parameter name as in ``model.named_parameters()`` (no ``module.`` prefix).
        num_layers: L, the number of backbone blocks.
        backbone_prefix: where the ViT lives in the model.
    """
    if not name.startswith(backbone_prefix):
        return num_layers + 1
    rest = name[len(backbone_prefix) :]
    if rest.startswith("patch_embed.") or rest == "pos_embed":
        return 0
    match = _BLOCK_ID.match(rest)
    if match:
        block = int(match.group(1))
        if block >= num_layers:
            raise ValueError(f"{name}: block {block} but num_layers={num_layers}")
        return block + 1
    return num_layers + 1


def _count_blocks(names: list[str], backbone_prefix: str) -> int:
    """1 + the highest ``{backbone_prefix}blocks.{i}`` index among parameter names."""
    found = [_BLOCK_ID.match(n[len(backbone_prefix) :]) for n in names if n.startswith(backbone_prefix)]
    blocks = [int(m.group(1)) for m in found if m]
    if not blocks:
        raise ValueError(f"layer_decay needs num_layers: no '{backbone_prefix}blocks.<i>.' parameters")
    return max(blocks) + 1


def no_weight_decay(name: str, param: nn.Parameter, module: nn.Module | None = None) -> bool:
    """ViTPose's no-decay rule: 1-D params (norm weights, biases), position embeddings, and any
    parameter whose own name contains ``token`` or ``embed`` (or an ``nn.Embedding`` table).

    Only the last name component is matched, so ``patch_embed.proj.weight`` (a conv kernel) is
    still decayed, as in ViTPose.
    """
    leaf = name.rsplit(".", 1)[-1]
    return param.ndim <= 1 or bool(_NO_DECAY_NAME.search(leaf)) or isinstance(module, nn.Embedding)


def param_groups(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    layer_decay: float | None,
    num_layers: int | None,
    backbone_prefix: str = "backbone.",
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with layer-wise LR decay and ViTPose's no-decay rules.

    Args:
        model: the model (a DDP/DataParallel/compiled wrapper is unwrapped so names match).
        lr: base LR (the head's LR under layer decay).
        weight_decay: decay of the decayed parameters.
        layer_decay: per-layer LR factor (ViTPose-B 0.75, S/L 0.8, H 0.85); None = same LR everywhere.
        num_layers: L backbone blocks; None = the number of ``{backbone_prefix}blocks.{i}`` found.
        backbone_prefix: where the ViT lives in the model.

    Returns:
        Groups sorted by (lr_scale, decayed first), each ``{"params", "lr" = lr * lr_scale,
        "weight_decay", "lr_scale", "name"}``; parameters with equal (lr_scale, weight decay) share
        one group; frozen parameters (``requires_grad=False``) are left out.
    """
    model = _unwrap(model)
    owner = {
        f"{mod_name}.{p_name}" if mod_name else p_name: module
        for mod_name, module in model.named_modules()
        for p_name, _ in module.named_parameters(recurse=False)
    }
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if layer_decay is not None and num_layers is None:
        num_layers = _count_blocks([n for n, _ in model.named_parameters()], backbone_prefix)

    groups: dict[tuple[float, float], dict[str, Any]] = {}
    for name, param in named:
        if layer_decay is None:
            lid, scale = None, 1.0
        else:
            assert num_layers is not None
            lid = layer_id(name, num_layers, backbone_prefix)
            scale = layer_decay ** (num_layers + 1 - lid)
        wd = 0.0 if no_weight_decay(name, param, owner.get(name)) else weight_decay
        group = groups.setdefault(
            (scale, wd),
            {"params": [], "lr": lr * scale, "weight_decay": wd, "lr_scale": scale, "layer_ids": set()},
        )
        group["params"].append(param)
        if lid is not None:
            group["layer_ids"].add(lid)

    out = []
    for (_, wd), group in sorted(groups.items(), key=lambda kv: (kv[0][0], -kv[0][1])):
        ids = sorted(group.pop("layer_ids"))
        where = "all" if not ids else f"layer_{ids[0]}" if len(ids) == 1 else f"layers_{ids[0]}-{ids[-1]}"
        group["name"] = f"{where}.{'decay' if wd else 'no_decay'}"
        out.append(group)
    return out


def build_optimizer(
    model: nn.Module,
    *,
    lr: float,
    weight_decay: float,
    betas: tuple[float, float] = (0.9, 0.999),
    layer_decay: float | None = None,
    num_layers: int | None = None,
) -> torch.optim.AdamW:
    """AdamW over ``param_groups`` (ViTPose: lr 5e-4, wd 0.1, betas (0.9, 0.999))."""
    groups = param_groups(
        model, lr=lr, weight_decay=weight_decay, layer_decay=layer_decay, num_layers=num_layers
    )
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)


def lr_factor(
    step: int,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: Literal["step", "cosine"],
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    warmup_ratio: float = 0.001,
    min_factor: float = 0.0,
) -> float:
    """LR multiplier at optimizer step ``step`` (0-based).

    mmcv's convention (ViTPose's ``lr_config``): the regular schedule is a function of the global
    step, and during warmup it is multiplied by a linear ramp from ``warmup_ratio`` (step 0) to 1
    (step ``warmup_steps``, where the warmup ends).

    Args:
        step: optimizer steps done so far.
        total_steps: length of training; cosine reaches ``min_factor`` here (and stays).
        warmup_steps: linear warmup length (ViTPose: 500); 0 = none.
        schedule: "step": multiply by ``gamma`` at each milestone reached (``step >= m``, as
            mmcv and ``MultiStepLR``); "cosine": half cosine from 1 to ``min_factor``.
        milestones: steps of the step schedule (ViTPose: epochs 170 and 200 of 210, in steps).
        gamma: step decay factor.
        warmup_ratio: factor at step 0.
        min_factor: final factor of the cosine schedule.
    """
    if step < 0 or total_steps <= 0 or warmup_steps < 0:
        raise ValueError(f"bad schedule: step={step}, total_steps={total_steps}, warmup_steps={warmup_steps}")
    if schedule == "step":
        factor = gamma ** sum(step >= m for m in milestones)
    elif schedule == "cosine":
        progress = min(step, total_steps) / total_steps
        factor = min_factor + (1.0 - min_factor) * 0.5 * (1.0 + math.cos(math.pi * progress))
    else:
        raise ValueError(f"unknown schedule {schedule!r} (expected 'step' or 'cosine')")
    if step < warmup_steps:
        # mmcv 'linear' warmup: k = (1 - step / warmup) * (1 - ratio); lr = regular * (1 - k).
        factor *= 1.0 - (1.0 - step / warmup_steps) * (1.0 - warmup_ratio)
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    schedule: Literal["step", "cosine"],
    milestones: tuple[int, ...] = (),
    gamma: float = 0.1,
    warmup_ratio: float = 0.001,
    min_factor: float = 0.0,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step ``LambdaLR`` with ``lr_factor``: each group's LR = its initial LR * factor.

    A group's initial LR already includes its ``lr_scale`` (``param_groups`` sets
    ``lr = base * lr_scale``), so one lambda serves every group. Call ``scheduler.step()`` after
    every optimizer step, not every epoch.
    """
    # functools.partial, not a lambda: the scheduler stays picklable.
    fn = functools.partial(
        lr_factor,
        total_steps=total_steps,
        warmup_steps=warmup_steps,
        schedule=schedule,
        milestones=tuple(milestones),
        gamma=gamma,
        warmup_ratio=warmup_ratio,
        min_factor=min_factor,
    )
    fn(0)  # fail on bad arguments here, not at the first step
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)
