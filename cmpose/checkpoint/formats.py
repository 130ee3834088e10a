"""Checkpoint families -> our key layout: format detection, renaming, the pos-embed class slot
(folded or dropped, then resampled to the target grid), ``keypoint_head.final_layer`` kept or
dropped, ViTPose+ experts merged. Why ``head="keep"`` is the default: the ``cmpose.checkpoint``
package docstring; which files import and what is dropped: docs/checkpoints.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from cmpose.checkpoint.common import FORMATS, CheckpointError, Format, Grid, HeadMode, _listing
from cmpose.checkpoint.pos_embed import _has_class_slot, infer_grid, resample_pos_embed

_POS = "backbone.pos_embed"
_FINAL = "keypoint_head.final_layer."
_VITPOSE = ("backbone.", "keypoint_head.")  # what our model takes from a ViTPose-like file
# ViTPose keeps a (1, 1, C) class token for MAE compatibility but its forward never reads it
# (ViTPose vit.py: only pos_embed's slot is used); coco_aic_mpii / ViTPose+ files carry it.
_VITPOSE_DROP = ("backbone.cls_token",)
# ViTPose+ (vit_moe.py, MoEMlp): fc2 gives the first C - P channels, experts.{e} the last P.
_EXPERT = re.compile(r"^(backbone\.blocks\.\d+\.mlp\.)experts\.(\d+)\.(weight|bias)$")
# What a format never holds inside the prefixes it provides (may be missing when loading).
_LACKS: dict[str, tuple[str, ...]] = {"mae": ("backbone.last_norm.",)}
# MAE / timm ViT keys that our backbone has no place for (the classifier, MAE's decoder...).
_MAE_DROP = ("cls_token", "mask_token", "dist_token", "norm.", "fc_norm.", "head.", "head_dist.", "decoder")
# mmpretrain VisionTransformer (+ mmcv FFN / PatchEmbed) and mmpose 1.x HeatmapHead names -> ours.
_MMPRETRAIN_RENAMES = (
    (r"^backbone\.layers\.(\d+)\.ln1\.", r"backbone.blocks.\1.norm1."),
    (r"^backbone\.layers\.(\d+)\.ln2\.", r"backbone.blocks.\1.norm2."),
    (r"^backbone\.layers\.(\d+)\.attn\.(qkv|proj)\.", r"backbone.blocks.\1.attn.\2."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.0\.0\.", r"backbone.blocks.\1.mlp.fc1."),
    (r"^backbone\.layers\.(\d+)\.ffn\.layers\.1\.", r"backbone.blocks.\1.mlp.fc2."),
    (r"^backbone\.patch_embed\.projection\.", "backbone.patch_embed.proj."),
    (r"^backbone\.ln1\.", "backbone.last_norm."),  # the final norm (final_norm=True)
    (r"^head\.(deconv_layers|final_layer)\.", r"keypoint_head.\1."),
)
_MMPRETRAIN_KEY = re.compile(r"(^|\.)(layers\.\d+\.ln1\.|patch_embed\.projection\.)")


@dataclass
class MapNotes:
    """What the mapper did. ``provides``: key prefixes the format can hold (None: any);
    ``lacks``: prefixes inside those it never holds. Both may be missing when loading."""

    format: str
    provides: tuple[str, ...] | None = None
    lacks: tuple[str, ...] = ()
    resampled: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        dropped = [f"dropped {len(self.dropped)}: {_listing(self.dropped)}"] if self.dropped else []
        return [f"format: {self.format}", *self.messages, *dropped]


def detect_format(sd: Mapping[str, Tensor], grid: Grid | None = None) -> Format:
    """Checkpoint family from its keys; ``grid`` (the target token grid) helps ViTPose vs ours.

    mmpretrain: ``layers.{i}.ln1`` / ``patch_embed.projection``. MAE: un-prefixed ``blocks.*`` and
    ``patch_embed.proj.weight``. ViTPose and ours both use ``backbone.*``: ViTPose's
    ``backbone.pos_embed`` is (1, 1+N, C), ours (1, N, C); when the token count cannot tell, our
    modules that ViTPose lacks (anything but ``backbone.``/``keypoint_head.``) do.
    """
    keys = list(sd)
    if any(_MMPRETRAIN_KEY.search(k) for k in keys):
        return "mmpretrain"
    if "patch_embed.proj.weight" in sd and any(k.startswith("blocks.") for k in keys):
        return "mae"
    if not any(k.startswith("backbone.blocks.") for k in keys):
        raise CheckpointError(
            f"unknown checkpoint layout (keys: {_listing(keys, 5)}); expected one of {FORMATS}"
        )
    if any(k.startswith("backbone.patch_embed.stem.") for k in keys):
        return "cmpose"  # only our CPU tiny config has a conv stem
    if _POS not in sd:
        raise CheckpointError(f"a ViT checkpoint without '{_POS}' (keys: {_listing(keys, 5)})")
    slot = _has_class_slot(sd[_POS].shape[1], grid)
    if slot is None and any(not k.startswith(_VITPOSE) for k in keys):
        slot = False
    if slot is None:
        raise CheckpointError(
            f"'{_POS}' has {sd[_POS].shape[1]} tokens: cannot tell ViTPose (class-token slot) from cmpose "
            "(none); name the format (--format) or the target grid (--grid)"
        )
    return "vitpose" if slot else "cmpose"


def _provided(sd: Mapping[str, Tensor]) -> tuple[str, ...]:
    """Which of backbone / keypoint_head a ViTPose-like file holds (a pretrain file has no head)."""
    return tuple(p for p in _VITPOSE if any(k.startswith(p) for k in sd))


def _rename(
    sd: Mapping[str, Tensor], fmt: str, notes: MapNotes, grid: Grid | None, expert: int
) -> tuple[dict[str, Tensor], str]:
    """Our names for a ``fmt`` state dict, and what to do with a pos-embed class slot."""
    if fmt == "cmpose":
        return dict(sd), "none"
    if fmt == "vitpose":
        # Names already ours. Other top-level modules go: the extra dataset heads of multi-dataset
        # files (coco_aic_mpii, ViTPose+: associate_keypoint_heads.*), which ViTPose's single-
        # dataset inference never runs; so does the class token it never reads.
        notes.provides = _provided(sd)
        drop = {k for k in sd if not k.startswith(_VITPOSE) or k in _VITPOSE_DROP}
        notes.dropped += [k for k in sd if k in drop]
        out = {k: v for k, v in sd.items() if k not in drop}
        return _merge_experts(out, expert, notes), "fold"
    if fmt == "mae":
        # ViTPose loads MAE with strict=False: its last_norm does not take MAE's norm and starts
        # from init, so we drop norm.* too and let backbone.last_norm be missing.
        notes.provides, notes.lacks = ("backbone.",), _LACKS["mae"]
        notes.dropped += [k for k in sd if k.startswith(_MAE_DROP)]
        out = {f"backbone.{k}": v for k, v in sd.items() if not k.startswith(_MAE_DROP)}
        slot = _has_class_slot(sd["pos_embed"].shape[1]) if "pos_embed" in sd else None
        # timm: a class token implies a slot unless no_embed_class; the count says which when it can
        return out, "fold" if (slot if slot is not None else "cls_token" in sd) else "none"
    if fmt != "mmpretrain":
        raise ValueError(f"unknown format {fmt!r}; expected 'auto' or one of {FORMATS}")
    # mmpretrain VisionTransformer / mmpose 1.x TopdownPoseEstimator. A classifier head, neck,
    # cls_token and the avg_featmap norm ln2 go; names with no equivalent here (pre_norm,
    # layer-scale gamma) are kept so that they surface as unexpected keys.
    if not any(k.startswith("backbone.") for k in sd):  # a bare backbone checkpoint
        sd = {f"backbone.{k}": v for k, v in sd.items()}
    pose_head = any(re.match(r"head\.(deconv_layers|final_layer)\.", k) for k in sd)
    out = {}
    for k, v in sd.items():
        top = k.split(".", 1)[0]
        if k == "backbone.cls_token" or k.startswith("backbone.ln2.") or top in ("neck", "data_preprocessor"):
            notes.dropped.append(k)
        elif top == "head" and not pose_head:
            notes.dropped.append(k)
        else:
            new = k
            for pattern, repl in _MMPRETRAIN_RENAMES:
                new = re.sub(pattern, repl, new)
            out[new] = v
    notes.provides = _provided(out)
    # mmpose 1.x builds ViTPose with with_cls_token=False (a patch-only pos_embed); mmpretrain's
    # loader drops a checkpoint's extra first row when the count is one more than the model's
    # (VisionTransformer._prepare_pos_embed), so we do too, whether or not the file also carries
    # a cls_token. The count decides; only when it cannot does the class token.
    pos = sd.get(_POS)
    slot = _has_class_slot(pos.shape[1], grid) if pos is not None and pos.ndim == 3 else None
    return out, "drop" if (slot if slot is not None else "backbone.cls_token" in sd) else "none"


def _merge_experts(sd: dict[str, Tensor], expert: int, notes: MapNotes) -> dict[str, Tensor]:
    """ViTPose+ (mixture-of-experts MLP) -> a plain ViT whose fc2 is the shared part stacked on
    expert ``expert``'s rows: exact for that expert's dataset, as ViTPose's tools/model_split.py
    (expert 0 is COCO, the dataset of ``keypoint_head``). Files without experts pass through."""
    found: dict[str, dict[int, dict[str, Tensor]]] = {}
    for k, v in sd.items():
        m = _EXPERT.match(k)
        if m:
            found.setdefault(m.group(1), {}).setdefault(int(m.group(2)), {})[m.group(3)] = v
    if not found:
        return sd
    out = {k: v for k, v in sd.items() if not _EXPERT.match(k)}
    notes.dropped += [k for k in sd if k not in out]
    for mlp, experts in found.items():
        if expert not in experts:
            raise CheckpointError(
                f"ViTPose+ file: {mlp}experts has no expert {expert} (it has {sorted(experts)})"
            )
        for part in ("weight", "bias"):
            shared = out.get(f"{mlp}fc2.{part}")
            if shared is None or part not in experts[expert]:
                raise CheckpointError(f"ViTPose+ file: {mlp}fc2.{part} or its expert {expert} is missing")
            out[f"{mlp}fc2.{part}"] = torch.cat([shared, experts[expert][part]], dim=0)
    notes.messages.append(
        f"ViTPose+: merged expert {expert} of {len(next(iter(found.values())))} into mlp.fc2 "
        f"of {len(found)} blocks (exact for that expert's dataset)"
    )
    return out


def map_vitpose_state_dict(
    sd: Mapping[str, Tensor],
    grid: Grid | None,
    *,
    fmt: Format | Literal["auto"] = "auto",
    source_grid: Grid | None = None,
    head: HeadMode = "keep",
    expert: int = 0,
    metadata: Mapping[str, str] | None = None,
) -> tuple[dict[str, Tensor], MapNotes]:
    """Map a ViTPose / MAE / mmpretrain / cmpose state dict to our layout at token grid ``grid``.

    Args:
        sd: the checkpoint's state dict (see ``read_state_dict``); not modified.
        grid: target (Hp, Wp), e.g. ``model.backbone.grid``; None keeps the checkpoint's grid.
        fmt: the source format, or "auto" (``detect_format``).
        source_grid: the checkpoint's grid when its token count is neither square nor 4:3.
        head: "keep" or "drop" ``keypoint_head.final_layer`` (see the module docstring).
        expert: ViTPose+ files only: the expert merged into ``mlp.fc2`` (0 = COCO).
        metadata: the file's safetensors metadata (``read_metadata``). A file that ``cmpose
            convert`` wrote from an outside format is in our names already, and its metadata
            says what that format could not hold, so it loads wherever the original does.

    Returns:
        (state dict in our names, ``MapNotes`` with what was renamed, folded, resampled, dropped).
    """
    if head not in ("keep", "drop"):
        raise ValueError(f"head must be 'keep' or 'drop', got {head!r}")
    converted = _converted_notes(sd, metadata or {})
    if converted is not None and fmt in ("auto", "cmpose"):
        notes, out, slot = converted, dict(sd), "none"
    else:
        fmt = detect_format(sd, grid) if fmt == "auto" else fmt
        notes = MapNotes(fmt)
        out, slot = _rename(sd, fmt, notes, grid, expert)
    if _POS in out:
        pos = out[_POS]
        if pos.ndim != 3 or pos.shape[0] != 1:
            raise CheckpointError(f"'{_POS}' has shape {tuple(pos.shape)}, expected (1, tokens, C)")
        if slot == "fold":
            # ViTPose's forward adds the slot to every patch, x + pos[:, 1:] + pos[:, :1]: folding
            # is exact. (For MAE it is the all-zero sin-cos row, so folding equals dropping.)
            pos = pos[:, 1:] + pos[:, :1]
            notes.messages.append(f"folded the class-token slot of {_POS} into the patch tokens")
        elif slot == "drop":
            pos = pos[:, 1:]
            notes.messages.append(f"dropped the class-token slot of {_POS}")
        if grid is not None and pos.shape[1] != grid[0] * grid[1]:
            src = infer_grid(pos.shape[1], source_grid)
            pos = resample_pos_embed(pos, src, grid)
            notes.resampled.append(_POS)
            notes.messages.append(f"resampled {_POS} {src[0]}x{src[1]} -> {grid[0]}x{grid[1]} (bicubic)")
        out[_POS] = pos
    if head == "drop":
        notes.dropped += [k for k in out if k.startswith(_FINAL)]
        out = {k: v for k, v in out.items() if not k.startswith(_FINAL)}
        notes.lacks += (_FINAL,)
    return out, notes


def file_metadata(notes: MapNotes) -> dict[str, str]:
    """What ``cmpose convert`` records beside the tensors: our layout, the source format, and
    the prefixes the source provides / lacks (``_converted_notes`` reads them back)."""
    meta = {"format": "cmpose", "source_format": notes.format, "lacks": ",".join(notes.lacks)}
    if notes.provides is not None:
        meta["provides"] = ",".join(notes.provides)
    return meta


def _converted_notes(sd: Mapping[str, Tensor], metadata: Mapping[str, str]) -> MapNotes | None:
    """Notes for a file ``cmpose convert`` wrote from an outside format; None for anything else.
    Files converted before ``provides`` / ``lacks`` were recorded get them from the source format."""
    source = metadata.get("source_format")
    if metadata.get("format") != "cmpose" or source in (None, "cmpose"):
        return None
    notes = MapNotes(source)
    if "provides" in metadata:
        notes.provides = tuple(p for p in metadata["provides"].split(",") if p)
    else:
        notes.provides = _provided(sd)
    if "lacks" in metadata:
        notes.lacks = tuple(p for p in metadata["lacks"].split(",") if p)
    else:
        notes.lacks = _LACKS.get(source, ())
    notes.messages.append(f"a cmpose convert output of a {source} file (names ours, no class-token slot)")
    return notes
