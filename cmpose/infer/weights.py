"""Which model a ``cmpose infer --checkpoint FILE`` runs, and what it was trained on.

Two kinds of file:

* a ``cmpose train`` checkpoint (a dict with ``model`` and ``config``): the model it was trained
  as (``load_trained_model``), its joints in PoseTrack18's order, and the training-data record
  the trainer writes (``cmpose.engine.checkpointing.read_train_data``);
* an outside file, anything ``cmpose convert`` / ``cmpose.api.init_model`` import (ViTPose
  classic or simple head, ViTPose+ / coco_aic_mpii, mmpose 1.x, a ``cmpose convert`` output):
  the single-frame model (backbone + keypoint head, T = 1) of a config, whose architecture is
  read off the weights (ViT width and depth, head kind and deconv widths, joint count), loaded
  through ``init_model``. Its 17 joints are COCO's (the names an mmpose file's ``dataset_meta``
  records, when it does), not PoseTrack's: see ``COCO17_NAMES``.

The joint convention travels with the model as two attributes the video code reads:
``model.joint_names`` and ``model.flip_index`` (the left/right swap of the flip test).
"""

from __future__ import annotations

import dataclasses
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from cmpose.checkpoint import CheckpointError
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.keypoints import PT18_NAMES
from cmpose.models.config import VIT_SIZES

log = logging.getLogger(__name__)

# COCO's 17 keypoints in their order (COCO person category; ViTPose / mmpose COCO heads). The
# same slots as PoseTrack18 except 1 and 2: COCO's eyes, PoseTrack18's head_bottom / head_top.
COCO17_NAMES: tuple[str, ...] = (
    "nose",
    "left_eye",
    "right_eye",
    *PT18_NAMES[3:],
)
DEFAULT_CONFIG = "posetrack18_vitb"
# Formats whose pose heads are COCO-trained as released (ViTPose, mmpose 1.x model zoos).
_COCO_FORMATS = ("vitpose", "mmpretrain")


def flip_index(names: tuple[str, ...] | list[str]) -> tuple[int, ...]:
    """flip_index[j] = the joint ``j`` becomes in a mirrored image, from ``left_`` / ``right_``
    names (so COCO's eyes swap, PoseTrack18's head_bottom / head_top do not)."""
    out = []
    for name in names:
        side = re.match(r"^(left|right)_(.+)$", name)
        twin = f"{'right' if side.group(1) == 'left' else 'left'}_{side.group(2)}" if side else name
        out.append(names.index(twin) if twin in names else names.index(name))
    return tuple(out)


def set_joint_convention(model: torch.nn.Module, names: tuple[str, ...]) -> None:
    """Record the order of ``model``'s output joints (and their flip pairs) on the model."""
    model.joint_names = tuple(names)
    model.flip_index = flip_index(tuple(names))


@dataclass
class InferenceModel:
    """A model ready for ``cmpose.infer``: ``model`` (eval mode, on its device), the experiment
    ``cfg`` whose crop / clip / test settings go with it, its ``joint_names``, ``train_data``
    (``{"synthetic": True | False | None, "source": str, ...}``), the ``checkpoint`` path and
    ``kind`` ("cmpose" for a training checkpoint, else the outside file's format)."""

    model: Any
    cfg: ExperimentConfig
    joint_names: tuple[str, ...]
    train_data: dict[str, Any]
    checkpoint: Path
    kind: str


def load_inference_model(
    checkpoint: str | Path,
    config: str | Path | ExperimentConfig | None = None,
    *,
    overrides: list[str] | None = None,
    device: str | torch.device = "cpu",
) -> InferenceModel:
    """Load any supported checkpoint for video inference (see the module docstring).

    Args:
        checkpoint: a cmpose training checkpoint or an outside weights file.
        config: outside files only: the config giving crop size, clip step, flip test and amp
            (a packaged name or a YAML path; default ``posetrack18_vitb``). Its model section is
            fitted to the weights. A training checkpoint carries its own (``config`` is ignored,
            with a warning).
        overrides: ``--set`` strings applied to ``config``.
        device: where the model runs.

    Raises:
        CheckpointError: unreadable file, a file without a keypoint head, or weights that do not
            fit (naming the file). ConfigError: an unknown config or override.
    """
    from cmpose.checkpoint import read_file

    path = Path(checkpoint)
    obj = read_file(path)
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict) and "config" in obj:
        return _training_checkpoint(path, obj, device, given_config=config is not None or bool(overrides))
    return _outside_file(path, obj, config, overrides, device)


def _training_checkpoint(path: Path, state: dict, device: Any, given_config: bool) -> InferenceModel:
    from cmpose.engine.checkpointing import read_train_data
    from cmpose.engine.testing import load_trained_model

    if given_config:
        log.warning(
            "%s is a cmpose training checkpoint: its own config is used, --config/--set are not", path
        )
    model, cfg = load_trained_model(path, device)
    set_joint_convention(model, PT18_NAMES)
    return InferenceModel(model, cfg, PT18_NAMES, read_train_data(state, cfg), path, "cmpose")


def _outside_file(
    path: Path, obj: object, config: Any, overrides: list[str] | None, device: Any
) -> InferenceModel:
    from cmpose.api import find_stage, init_model, resolve_config
    from cmpose.checkpoint import map_vitpose_state_dict, read_metadata, state_dict_of

    sd, notes = map_vitpose_state_dict(state_dict_of(obj, path), None, metadata=read_metadata(path))
    arch = architecture(sd, path)
    base = resolve_config(config or DEFAULT_CONFIG, overrides)
    cfg = fit_config(base, arch, path)
    kind = stage_kind(sd)
    try:
        stage = find_stage(cfg, next(s.name for s in cfg.stages if s.kind == kind))
    except StopIteration:
        stage = StageConfig(name=kind, kind=kind, epochs=1)  # the config has no stage of that kind
    cfg = dataclasses.replace(cfg, stages=[stage])
    model = init_model(cfg, path, device=device)
    outside = notes.format in _COCO_FORMATS
    names, dataset = meta_joint_names(obj) if outside else (None, None)
    if outside and names is None:
        names, dataset = COCO17_NAMES, "coco"  # as ViTPose and the mmpose model zoo release them
    names = names or PT18_NAMES
    if len(names) != arch["num_joints"]:
        raise CheckpointError(
            f"{path}: a head with {arch['num_joints']} joints; cmpose infer runs 17-joint models "
            f"(COCO's or PoseTrack18's order)"
        )
    set_joint_convention(model, names)
    if outside:
        train = {"synthetic": False, "source": f"{notes.format} weights ({dataset} keypoints, as released)"}
    else:
        train = {"synthetic": None, "source": "unknown (a state dict without the training record)"}
    log.info(
        "%s: %s weights, built as ViT C=%d x %d blocks, %s head, joints %s, ... (T=%d)",
        path, notes.format, arch["embed_dim"], arch["depth"], arch["head"], ", ".join(names[:3]),
        model.num_frames,
    )  # fmt: skip
    return InferenceModel(model, cfg, names, train, path, notes.format)


def meta_joint_names(obj: object) -> tuple[tuple[str, ...] | None, str | None]:
    """The joint names and dataset an mmengine checkpoint records (``meta.dataset_meta``:
    ``keypoint_id2name``, ``dataset_name``); (None, None) when it records none. mmpose spells
    COCO's and PoseTrack18's joints as cmpose does (``left_eye``, ``head_bottom``, ...)."""
    meta = obj.get("meta") if isinstance(obj, dict) else None
    dm = meta.get("dataset_meta") if isinstance(meta, dict) else None
    if not isinstance(dm, dict):
        return None, None
    dataset = str(dm.get("dataset_name", "unknown dataset"))
    id2name = dm.get("keypoint_id2name")
    if isinstance(id2name, dict) and sorted(id2name) == list(range(len(id2name))):
        return tuple(str(id2name[i]) for i in range(len(id2name))), dataset
    known = {"coco": COCO17_NAMES, "posetrack18": PT18_NAMES}
    return known.get(dataset), dataset


def architecture(sd: dict[str, torch.Tensor], path: Path) -> dict[str, Any]:
    """What a state dict in our names says about the model: embed_dim, depth, stem_channels,
    head ("classic" / "simple"), deconv_channels, num_joints.

    Raises:
        CheckpointError: no backbone blocks, or no keypoint head (a pretraining-only file).
    """
    depth = len({k.split(".")[2] for k in sd if k.startswith("backbone.blocks.")})
    final = sd.get("keypoint_head.final_layer.weight")
    if not depth:
        raise CheckpointError(f"{path}: no ViT blocks (backbone.blocks.*) found")
    if final is None:
        raise CheckpointError(
            f"{path}: has no keypoint head (keypoint_head.final_layer): a backbone-only pretraining file "
            "(MAE, ImageNet) cannot predict poses; use pose weights (e.g. ViTPose COCO)"
        )
    deconvs = sorted(
        (int(k.split(".")[2]), v)
        for k, v in sd.items()
        if k.startswith("keypoint_head.deconv_layers.") and k.endswith(".weight") and v.ndim == 4
    )
    stem = [v for k, v in sorted(sd.items()) if k.startswith("backbone.patch_embed.stem.") and v.ndim == 4]
    return {
        "embed_dim": int(sd["backbone.blocks.0.norm1.weight"].shape[0]),
        "depth": depth,
        "stem_channels": int(stem[0].shape[0]) if stem else 0,
        # ViTPose's simple decoder is one 3x3 conv; the classic head ends in a 1x1 conv.
        "head": "simple" if final.shape[-1] == 3 and not deconvs else "classic",
        "deconv_channels": tuple(int(v.shape[1]) for _, v in deconvs),  # ConvTranspose2d: (in, out, k, k)
        "num_joints": int(final.shape[0]),
    }


def fit_config(cfg: ExperimentConfig, arch: dict[str, Any], path: Path) -> ExperimentConfig:
    """``cfg`` with its model section set to the file's architecture: the ViT size preset of
    that width (its heads) and the file's depth, the head, the joint count. Logs what changed.

    Raises:
        CheckpointError: a width that is no ViT preset (the number of attention heads cannot be
            read off the weights), naming the widths cmpose knows.
    """
    m = cfg.model
    sizes = {int(v["embed_dim"]): name for name, v in VIT_SIZES.items()}
    c = arch["embed_dim"]
    if c == m.backbone.embed_dim:
        size = m.backbone.size
        heads = m.backbone.num_heads
    elif c in sizes:
        size, heads = sizes[c], int(VIT_SIZES[sizes[c]]["num_heads"])
    else:
        raise CheckpointError(
            f"{path}: a ViT of width {c}; cmpose knows widths {sorted(sizes)} (sizes {sorted(VIT_SIZES)}). "
            "Pass a --config whose model.backbone has embed_dim and num_heads of this file"
        )
    backbone = dataclasses.replace(
        m.backbone,
        size=size,
        embed_dim=c,
        depth=arch["depth"],
        num_heads=heads,
        stem_channels=arch["stem_channels"],
    )
    head = dataclasses.replace(
        m.head, kind=arch["head"], deconv_channels=arch["deconv_channels"] or m.head.deconv_channels
    )
    new = dataclasses.replace(m, backbone=backbone, head=head, num_joints=arch["num_joints"])
    if new != m:
        log.info(
            "%s: model built to fit the weights: ViT-%s C=%d, %d blocks, %s head %s (the config had ViT-%s "
            "C=%d, %d blocks, %s head)",
            path, size, c, arch["depth"], arch["head"], list(arch["deconv_channels"]), m.backbone.size,
            m.backbone.embed_dim, m.backbone.depth, m.head.kind,
        )  # fmt: skip
    return dataclasses.replace(cfg, model=new)


def stage_kind(sd: dict[str, torch.Tensor]) -> str:
    """The stage a state dict in our names was trained as: fte (has FTE), mcl (has the
    spatio-temporal encoder), else single (backbone + head: every outside format)."""
    tops = {k.split(".", 1)[0] for k in sd}
    if "fte" in tops:
        return "fte"
    return "mcl" if "encoder" in tops else "single"


def warn_training_data(loaded: InferenceModel) -> None:
    """One warning when the model was trained on synthetic data only (its poses on real footage
    mean nothing), a note when nobody recorded what it was trained on."""
    synthetic = loaded.train_data.get("synthetic")
    if synthetic:
        log.warning(
            "%s was trained only on synthetic data (%s): its poses on real footage are not meaningful. "
            "For real videos use weights trained on real people, e.g. --checkpoint vitpose-b.pth "
            "(ViTPose COCO; docs/inference.md, 'Real weights')",
            loaded.checkpoint,
            loaded.train_data.get("source", "cmpose synth"),
        )
    elif synthetic is None:
        log.info("%s: what it was trained on is not recorded (%s)", loaded.checkpoint, loaded.train_data)
