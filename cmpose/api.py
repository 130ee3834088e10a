"""The Python entry point: ``init_model`` builds the model that ``cmpose train / test / infer``
would build for a config's stage and loads weights into it (the role of mmpose's ``init_model``
and timm's ``create_model``).

    >>> from cmpose.api import init_model
    >>> model = init_model("posetrack18_vitb", "vitpose-b.pth", stage="mcl")  # doctest: +SKIP
    >>> model(clip)["heatmaps"]  # clip (B, T, 3, H, W) -> (B, J, Hh, Wh)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import torch

from cmpose.config import apply_overrides, from_dict, load_config, to_dict
from cmpose.demo import CONFIG_DIR
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.errors import ConfigError
from cmpose.models.cmpose import CMPose


def packaged_configs() -> list[str]:
    """Names of the configs shipped with cmpose (``posetrack18_vitb``, ``demo_cpu``, ...)."""
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def config_path(config: str | Path) -> Path:
    """The YAML of ``config``: a file path, else the packaged config of that name (with or without
    ``.yaml``). Raises ConfigError naming the packaged configs when it is neither."""
    path = Path(config)
    if path.is_file():
        return path
    name = path.name.removesuffix(".yaml")
    if path.parent != Path(".") or name not in packaged_configs():
        raise ConfigError(
            f"{config}: no such config file, and no packaged config of that name (those are: "
            f"{', '.join(packaged_configs())})"
        )
    return CONFIG_DIR / f"{name}.yaml"


def resolve_config(
    config: str | Path | ExperimentConfig, overrides: list[str] | None = None
) -> ExperimentConfig:
    """An experiment config from a YAML path, the name of a packaged config, or a config object,
    with ``--set``-style ``overrides`` (``"model.head.kind=simple"``) applied and checked.

    Raises:
        ConfigError: no such file or packaged config, or a bad key / value.
    """
    if isinstance(config, ExperimentConfig):
        if not overrides:
            return config
        return from_dict(ExperimentConfig, apply_overrides(to_dict(config), list(overrides)))
    return load_config(ExperimentConfig, config_path(config), list(overrides or []))


def find_stage(cfg: ExperimentConfig, stage: str | None) -> StageConfig:
    """The stage named ``stage``, or the first stage when None."""
    if stage is None:
        return cfg.stages[0]
    names = [s.name for s in cfg.stages]
    if stage not in names:
        raise ConfigError(f"stage '{stage}': the config's stages are {names}")
    return cfg.stages[names.index(stage)]


def init_model(
    config: str | Path | ExperimentConfig,
    checkpoint: str | Path | None = None,
    *,
    stage: str | None = None,
    overrides: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> CMPose:
    """Build a config's model for one stage and load weights into it; eval mode, on ``device``.

    The model is ``engine.stages.build_stage_model``'s, as in training and testing, so it keeps
    their contract: ``model(clip)`` with a clip (B, T, 3, H, W) returns a dict whose
    ``"heatmaps"`` is (B, J, Hh, Wh); ``model.backbone(frames)`` maps (B, 3, H, W) to tokens
    (B, N, C).

    Args:
        config: a YAML path, the name of a packaged config (``posetrack18_vitb``) or an
            ``ExperimentConfig``.
        checkpoint: None (initialisation only), a cmpose training checkpoint (its EMA weights when
            it has them, as ``cmpose test``), a ``cmpose convert`` output, or an outside file that
            ``cmpose convert`` reads (ViTPose classic / simple / ViTPose+, mmpose 1.x, MAE,
            mmpretrain). Outside weights go where ``run.init`` puts them, in any stage: backbone
            and keypoint head; the rest keeps its initialisation. cmpose weights follow the rule
            between stages (``load_previous_stage``): every module they hold must fit exactly,
            modules they lack (new in this stage) keep their initialisation.
        stage: a stage name of the config; None = the first stage.
        overrides: ``--set`` strings applied to the config (``["model.head.kind=simple"]``).
        device: where the model is moved after loading.

    Raises:
        ConfigError: unknown config / stage / override, or cmpose weights that do not fit the
            stage. CheckpointError: an unreadable or refused file, or outside weights that do not
            fit (naming the file and the keys).
    """
    from cmpose.engine.stages import build_stage_model

    cfg = resolve_config(config, overrides)
    model = build_stage_model(cfg, find_stage(cfg, stage))
    if checkpoint is not None:
        load_weights(model, checkpoint)
    return model.to(device).eval()


def load_weights(model: CMPose, checkpoint: str | Path) -> None:
    """``init_model``'s loading, the file read once: a cmpose training checkpoint (``model``, maybe
    ``ema``, and ``config``) by the rule between stages, anything else as ``run.init``."""
    from cmpose.checkpoint import read_file, state_dict_of
    from cmpose.engine.stages import load_init, load_previous_stage

    obj = read_file(checkpoint)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "config" in obj:
        load_previous_stage(model, obj.get("ema") or obj["model"], str(checkpoint))  # as cmpose test
    else:
        load_init(model, str(checkpoint), state_dict_of(obj, checkpoint))
