"""What each stage kind means for the model and the clips, and how a stage starts from the
previous stage's weights."""

from __future__ import annotations

import dataclasses
import logging

import torch
from torch import nn

from cmpose.data.config import ClipConfig
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.errors import ConfigError
from cmpose.models.cmpose import CMPose, build_model

log = logging.getLogger(__name__)


def stage_clip(cfg: ExperimentConfig, stage: StageConfig) -> ClipConfig:
    """``single`` sees the keyframe alone (T = 1); the temporal stages see ``data.clip``."""
    if stage.kind == "single":
        return dataclasses.replace(cfg.data.clip, num_frames=1)
    return cfg.data.clip


def build_stage_model(cfg: ExperimentConfig, stage: StageConfig) -> CMPose:
    """single: no encoder, T = 1; mcl: CM-Pose stage 1; fte: CM-Pose stage 2."""
    m = cfg.model
    if stage.kind == "single":
        m = dataclasses.replace(m, stage=1, encoder=dataclasses.replace(m.encoder, enabled=False))
    elif stage.kind == "mcl":
        m = dataclasses.replace(m, stage=1)
    else:
        m = dataclasses.replace(m, stage=2)
    crop = cfg.data.crop
    try:
        return build_model(
            m, crop.image_size, crop.heatmap_size, stage_clip(cfg, stage).num_frames, crop.sigma
        )
    except ValueError as err:
        raise ConfigError(f"stage '{stage.name}': {err}") from err


def load_previous_stage(model: nn.Module, weights: dict[str, torch.Tensor], source: str) -> list[str]:
    """Load the previous stage's weights strictly, except for whole modules it did not have.

    Every top-level module present in ``weights`` must match key for key and shape for shape;
    a top-level module absent from ``weights`` is new in this stage (the encoder after the
    single-frame stage, FTE after stage 1) and keeps its initialisation. Returns the new modules.
    """
    own = model.state_dict()
    present = {k.split(".", 1)[0] for k in weights}
    new_modules = sorted({k.split(".", 1)[0] for k in own} - present)
    unexpected = sorted(set(weights) - set(own))
    missing = sorted(k for k in own if k.split(".", 1)[0] in present and k not in weights)
    if unexpected or missing:
        raise ConfigError(
            f"{source}: weights do not fit this stage's model: missing {missing[:5]} "
            f"({len(missing)}), unexpected {unexpected[:5]} ({len(unexpected)})"
        )
    for k, v in weights.items():
        if v.shape != own[k].shape:
            raise ConfigError(
                f"{source}: {k} has shape {tuple(v.shape)}, the model needs {tuple(own[k].shape)}"
            )
    model.load_state_dict(weights, strict=False)
    if new_modules:
        log.info("initialised from %s; new in this stage: %s", source, ", ".join(new_modules))
    return new_modules


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> int:
    """Turn off gradients for parameters whose name starts with a prefix; returns how many.
    (BatchNorms under a frozen prefix are also kept in eval mode by ``frozen_norms``.)"""
    count = 0
    for name, p in model.named_parameters():
        if any(name.startswith(pre) for pre in prefixes):
            p.requires_grad_(False)
            count += p.numel()
    if prefixes and not count:
        raise ConfigError(f"freeze: no parameter name starts with any of {list(prefixes)}")
    return count


def load_init(model: nn.Module, path: str, sd: dict[str, torch.Tensor] | None = None) -> None:
    """Start a run from outside weights: a cmpose checkpoint (by the rule of
    ``load_previous_stage``) or ViTPose / MAE / mmpretrain weights (``cmpose.checkpoint``),
    also after ``cmpose convert`` (its metadata names the source format, which decides).
    ``sd``: the file's state dict when the caller has read it already."""
    from cmpose.checkpoint import detect_format, load_pretrained, read_metadata, read_state_dict

    sd = read_state_dict(path) if sd is None else sd
    converted = read_metadata(path).get("source_format", "cmpose") != "cmpose"
    if not converted and detect_format(sd, model.backbone.grid) == "cmpose":
        load_previous_stage(model, sd, path)
    else:
        report = load_pretrained(model, path, sd=sd)
        log.info("initialised from %s: %s", path, report.summary())


def frozen_norms(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.Module]:
    """BatchNorm layers under a frozen prefix: the trainer keeps them in eval mode, or their
    running statistics would still change (e.g. the tiny config's conv stem) in a frozen part."""
    return [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and any(f"{name}.".startswith(p) for p in prefixes)
    ]
