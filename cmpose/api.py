"""The Python entry point: ``init_model`` builds the model that ``cmpose train / test / infer``
would build for a config's stage and loads weights into it (the role of mmpose's ``init_model``
and timm's ``create_model``).

    >>> from cmpose.api import init_model
    >>> model = init_model("posetrack18_vitb", "vitpose-b.pth", stage="mcl")  # doctest: +SKIP
    >>> model(clip)["heatmaps"]  # clip (B, T, 3, H, W) -> (B, J, Hh, Wh)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from cmpose.config import apply_overrides, from_dict, load_config, to_dict
from cmpose.demo import CONFIG_DIR
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.errors import ConfigError
from cmpose.export.to_onnx import ExportResult
from cmpose.models.cmpose import CMPose

if TYPE_CHECKING:
    from cmpose.infer.weights import InferenceModel


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


def export_onnx(
    checkpoint: str | Path | None,
    onnx_path: str | Path,
    *,
    config: str | Path | ExperimentConfig | None = None,
    stage: str | None = None,
    overrides: list[str] | None = None,
    batch: int | None = None,
    opset: int | None = None,
    check: bool = False,
    benchmark: bool = False,
) -> ExportResult:
    """Export a model's inference graph (clip (B, T, 3, H, W) -> heatmaps (B, J, Hh, Wh)) as ONNX,
    written atomically; ``cmpose export`` (docs/inference.md, "Export"). Needs ``cmpose[onnx]``.

    Args:
        checkpoint: a cmpose training checkpoint (its config builds the model, as ``cmpose test``);
            with ``config``, anything ``init_model`` loads (a ViTPose ``.pth``, a stage-1
            checkpoint for a stage-2 model, ...) or None for initial weights.
        onnx_path: the ``.onnx`` file to write.
        config, stage, overrides: build the model from this config instead (``init_model``).
        batch: None = dynamic batch axis; else the batch size fixed in the graph.
        opset: ONNX opset (default ``cmpose.export.to_onnx.DEFAULT_OPSET``, 18).
        check: run the file in onnxruntime on random clips (batch 1 and 3, or ``batch``) and put
            the largest heatmap difference to PyTorch in ``max_abs_diff``.
        benchmark: time both on the CPU (batch 1 or ``batch``; median of 5 runs after 2 warm-up
            runs, in this process) into ``latency``.

    Raises:
        ExportError: missing packages, a bad option or a model over 2 GiB. ConfigError /
            CheckpointError: as ``init_model`` / ``cmpose test``.
    """
    from cmpose.engine.testing import load_trained_model
    from cmpose.export.graph import model_kind
    from cmpose.export.to_onnx import (
        DEFAULT_OPSET,
        ExportError,
        clip_shape,
        export_model,
        metadata_props,
        write_onnx,
    )

    path = Path(onnx_path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"{path}: the output must be a .onnx file")
    if config is None:
        if stage is not None or overrides:
            raise ConfigError("a stage or --set overrides need a config (--config)")
        if checkpoint is None:
            raise ConfigError("give a cmpose checkpoint, or a config to build the model from")
        model, cfg = load_trained_model(Path(checkpoint))
    else:
        cfg = resolve_config(config, overrides)
        model = init_model(cfg, checkpoint, stage=stage)
    crop, opset = cfg.data.crop, DEFAULT_OPSET if opset is None else opset
    data = export_model(
        model, crop.image_size, batch=batch, opset=opset, metadata=metadata_props(model, crop)
    )
    write_onnx(path, data)
    b: int | str = batch or "batch"
    Hh, Wh = model.heatmap_size
    result = ExportResult(
        path=path,
        kind=model_kind(model),
        opset=opset,
        batch=batch,
        input_shape=(b, *clip_shape(model, crop.image_size, 1)[1:]),
        output_shape=(b, cfg.model.num_joints, Hh, Wh),
        num_bytes=len(data),
    )
    if check or benchmark:
        from cmpose.export.verify import max_abs_diff, median_latency, ort_session

        session = ort_session(data)
        if check:
            result.max_abs_diff = max_abs_diff(session, model, crop.image_size, [batch] if batch else [1, 3])
        if benchmark:
            result.latency = median_latency(session, model, crop.image_size, batch or 1)
    return result


# --- video inference ------------------------------------------------------------------------------
def load_inference_model(
    checkpoint: str | Path,
    config: str | Path | ExperimentConfig | None = None,
    *,
    overrides: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> InferenceModel:
    """A model for video inference from any supported checkpoint: a ``cmpose train`` checkpoint
    (the model it was trained as, its own config), or an outside file that ``init_model``
    imports (ViTPose classic / simple head, mmpose 1.x, a ``cmpose convert`` output): the
    single-frame model of ``config`` (default ``posetrack18_vitb``) fitted to the file's ViT
    size and head, with COCO's joint order. See ``cmpose.infer.weights``."""
    from cmpose.infer.weights import load_inference_model as load

    return load(checkpoint, config, overrides=overrides, device=device)


def infer_video(
    model: str | Path | InferenceModel,
    video: str | Path,
    out_dir: str | Path = "outputs/infer",
    *,
    config: str | Path | ExperimentConfig | None = None,
    overrides: list[str] | None = None,
    boxes: str = "hog",
    formats: str | tuple[str, ...] = "all",
    device: str | torch.device = "cpu",
    **options: Any,
) -> dict[str, Any]:
    """Pose estimation and tracking on a video (a file or a folder of frames): what
    ``cmpose infer`` does.

    Args:
        model: a checkpoint path (see ``load_inference_model``) or a loaded ``InferenceModel``.
            A model trained only on synthetic data is warned about, once.
        video: the input; out_dir: where the outputs go.
        config, overrides: outside weights only: the config of crop, clip and test settings
            and its ``--set`` strings.
        boxes: ``hog``, ``gt:ANNOTATION.json`` or a detections file (``cmpose.infer.detect``).
        formats: a comma list or tuple of ``mp4, jsonl, posetrack, coco``, or ``"all"``.
        device: where the model runs.
        options: the rest of ``cmpose.infer.pipeline.infer_video``'s keywords (``flip_test``,
            ``amp``, ``max_frames``, ``fps``, ``token_maps_every``, ``batch_size``,
            ``score_threshold``, ``min_score``, ``smooth``: One-Euro ``(min_cutoff, beta)`` or
            None, ``cmpose.infer.smooth``).

    Returns:
        the measured numbers (frames, fps, ...) and ``outputs``: format -> written path.
    """
    from cmpose.infer.outputs import parse_formats
    from cmpose.infer.pipeline import infer_video as run
    from cmpose.infer.weights import InferenceModel, warn_training_data

    wanted = parse_formats(formats) if isinstance(formats, str) else parse_formats(",".join(formats))
    loaded = (
        model
        if isinstance(model, InferenceModel)
        else load_inference_model(model, config, overrides=overrides, device=device)
    )
    warn_training_data(loaded)
    _, stats = run(
        loaded.model,
        loaded.cfg,
        Path(video),
        Path(out_dir),
        boxes=boxes,
        device=str(device),
        formats=wanted,
        **options,
    )
    return stats
