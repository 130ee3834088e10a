"""Checkpoints in, our key layout out: official ViTPose, MAE (timm names), mmpretrain / mmpose 1.x, ours.

The pattern is timm's ``checkpoint_filter_fn`` (a pure dict -> dict map) plus nanoGPT's
``from_pretrained`` (explicit names, asserted shapes, nothing dropped silently):
``read_state_dict`` -> ``map_vitpose_state_dict`` (detects the format) -> ``load_into``;
``load_pretrained`` does all three. Our layout: ``backbone.*`` (``cmpose.models.vit.ViT``, whose
``pos_embed`` is (1, N, C) without a class-token slot), ``keypoint_head.*`` (``HeatmapHead``), plus
the CM-Pose-only modules.

``head="keep"`` is the default because ViTPose predicts the 17 COCO joints and PoseTrack has 17
too, but with head_bottom / head_top instead of the eyes, so no row permutation is exact; video
pose work (e.g. DCPose starting from COCO-trained weights) keeps the 17-channel final layer as a
warm start and fine-tunes it. ``head="drop"`` re-initialises ``keypoint_head.final_layer``.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from cmpose.errors import CmposeError

log = logging.getLogger(__name__)

Format = Literal["vitpose", "mae", "cmpose", "mmpretrain"]
HeadMode = Literal["keep", "drop"]
Grid = tuple[int, int]
FORMATS: tuple[str, ...] = ("vitpose", "mae", "cmpose", "mmpretrain")
TORCH_SUFFIXES = (".pth", ".pt", ".bin", ".ckpt")
_WRAPPERS = ("state_dict", "model", "module")  # unwrapped in ViTPose's load_checkpoint order
_POS = "backbone.pos_embed"
_FINAL = "keypoint_head.final_layer."
_VITPOSE = ("backbone.", "keypoint_head.")  # an mmpose 0.x TopDown holds nothing else
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


class CheckpointError(CmposeError):
    """A checkpoint file cannot be read, or its tensors do not fit the model."""


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


@dataclass
class LoadReport:
    """Outcome of ``load_into``; key lists are sorted, ``notes`` are ``MapNotes.lines()``."""

    loaded: int
    missing: list[str]
    unexpected: list[str]
    resampled: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [
            f"loaded {self.loaded} tensors; {len(self.missing)} missing, {len(self.unexpected)} unexpected, "
            f"{len(self.resampled)} resampled",
            *(f"  {n}" for n in self.notes),
        ]
        for name, keys in (("missing", self.missing), ("unexpected", self.unexpected)):
            if keys:
                counts: dict[str, int] = {}
                for k in keys:
                    counts[k.split(".", 1)[0]] = counts.get(k.split(".", 1)[0], 0) + 1
                lines.append(f"  {name}: " + ", ".join(f"{top}.* ({n})" for top, n in counts.items()))
        return "\n".join(lines)


def _listing(keys: list[str], limit: int = 10) -> str:
    return ", ".join(keys[:limit]) + (f" ... ({len(keys)} in all)" if len(keys) > limit else "")


def _torch_load(path: Path) -> object:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\n|$)", str(err), re.DOTALL)
        detail = (found.group(1) if found else str(err)).strip().splitlines()[0]
        if "Unsupported global" not in detail:
            raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({detail})") from err
        raise CheckpointError(
            f"{path}: refused by torch.load(weights_only=True), it pickles Python objects besides tensors "
            f"({detail}). If you trust the file, re-save its state dict alone, e.g. "
            "torch.save(torch.load(p, weights_only=False)['state_dict'], 'weights.pth')"
        ) from err
    except Exception as err:  # truncated zip, EOF, foreign format: all mean "cannot read it"
        raise CheckpointError(
            f"{path}: not a readable PyTorch checkpoint ({type(err).__name__}: {err})"
        ) from err


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (``.pth/.pt/.bin/.ckpt``).

    Torch files are read with ``weights_only=True``: a file pickling other Python objects is
    refused, never executed. ``state_dict`` / ``model`` / ``module`` wrappers are unwrapped (our
    training checkpoints keep the weights under ``model``), then a ``module.`` (DDP) or
    ``_orig_mod.`` (torch.compile) prefix shared by every key is stripped.

    Raises:
        CheckpointError: missing or unreadable file, unknown suffix, or no state dict inside.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(path), device="cpu")
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    elif suffix in TORCH_SUFFIXES:
        obj = _torch_load(path)
    else:
        raise CheckpointError(
            f"{path}: unknown suffix '{suffix}'; expected .safetensors, {', '.join(TORCH_SUFFIXES)}"
        )
    while isinstance(obj, Mapping):
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), Mapping)), None)
        if inner is None:
            break
        obj = inner
    expected = "expected a state dict (names -> tensors), optionally under 'state_dict', 'model' or 'module'"
    if not isinstance(obj, Mapping) or not obj:
        raise CheckpointError(f"{path}: {expected}; found an empty {type(obj).__name__}")
    for k, v in obj.items():
        if not isinstance(v, Tensor):
            raise CheckpointError(f"{path}: entry '{k}' is a {type(v).__name__}, not a tensor; {expected}")
    sd = dict(obj)
    for prefix in ("module.", "_orig_mod."):
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def save_state_dict(
    path: str | Path, sd: Mapping[str, Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write ``sd`` as safetensors atomically (a temporary file in the same folder, then ``os.replace``)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, set()
    for k, v in sd.items():
        v = v.detach().cpu().contiguous()
        ptr = v.untyped_storage().data_ptr()
        tensors[k] = v.clone() if ptr in seen and v.numel() else v  # safetensors refuses shared storage
        seen.add(ptr)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def infer_grid(n: int, source_grid: Grid | None = None) -> Grid:
    """Token grid of ``n`` patch tokens: ``source_grid`` if given, else square (MAE at 224: 14x14)
    or 4:3 portrait (ViTPose crops: 256x192 -> 16x12, 384x288 -> 24x18); no count is both."""
    if source_grid is not None:
        if source_grid[0] * source_grid[1] != n:
            raise CheckpointError(f"source grid {source_grid[0]}x{source_grid[1]} does not hold {n} tokens")
        return int(source_grid[0]), int(source_grid[1])
    side, k = math.isqrt(n), math.isqrt(n // 12)
    if side * side == n:
        return side, side
    if 12 * k * k == n:
        return 4 * k, 3 * k
    raise CheckpointError(
        f"cannot infer the grid of a {n}-token pos_embed; pass its source grid (--source-grid)"
    )


def resample_pos_embed(pos: Tensor, src_grid: Grid, dst_grid: Grid) -> Tensor:
    """Bicubic resampling of a slot-free position embedding, as timm's ``resample_abs_pos_embed``
    and ViTPose's ``load_checkpoint`` (``F.interpolate``, ``align_corners=False``; no antialias,
    as ViTPose: timm's default ``antialias=True`` differs only when shrinking).

    Args:
        pos: (1, Hs*Ws, C). src_grid: (Hs, Ws). dst_grid: (Hd, Wd).

    Returns:
        (1, Hd*Wd, C) in ``pos``'s dtype; ``pos`` itself when the grids are equal.
    """
    (Hs, Ws), (Hd, Wd) = src_grid, dst_grid
    if pos.ndim != 3 or pos.shape[0] != 1 or pos.shape[1] != Hs * Ws:
        raise ValueError(f"pos_embed of shape {tuple(pos.shape)} is not (1, {Hs}*{Ws}, C)")
    if (Hs, Ws) == (Hd, Wd):
        return pos
    C = pos.shape[2]
    grid = pos.reshape(1, Hs, Ws, C).permute(0, 3, 1, 2).float()  # (1, C, Hs, Ws); CPU bicubic needs float32
    out = F.interpolate(grid, size=(Hd, Wd), mode="bicubic", align_corners=False)
    return out.permute(0, 2, 3, 1).reshape(1, Hd * Wd, C).to(pos.dtype)


def _is_grid_count(n: int) -> bool:
    """Whether ``n`` tokens can form a grid with both sides >= 2 and an aspect ratio <= 3."""
    return any(n % h == 0 and h <= n // h <= 3 * h for h in range(2, math.isqrt(n) + 1))


def _has_class_slot(n: int, grid: Grid | None = None) -> bool | None:
    """Whether an ``n``-token pos_embed carries a class-token slot (1 + Hp*Wp); None: can't tell."""
    if grid is not None and n in (grid[0] * grid[1], grid[0] * grid[1] + 1):
        return n == grid[0] * grid[1] + 1
    plain, slot = _is_grid_count(n), _is_grid_count(n - 1)
    return slot if plain != slot else None


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


def _rename(sd: Mapping[str, Tensor], fmt: str, notes: MapNotes) -> tuple[dict[str, Tensor], str]:
    """Our names for a ``fmt`` state dict, and what to do with a pos-embed class slot."""
    if fmt == "cmpose":
        return dict(sd), "none"
    if fmt == "vitpose":  # names already ours; other top-level modules (ViTPose+ extra heads) go
        notes.provides = _provided(sd)
        notes.dropped += [k for k in sd if not k.startswith(_VITPOSE)]
        return {k: v for k, v in sd.items() if k.startswith(_VITPOSE)}, "fold"
    if fmt == "mae":
        # ViTPose loads MAE with strict=False: its last_norm does not take MAE's norm and starts
        # from init, so we drop norm.* too and let backbone.last_norm be missing.
        notes.provides, notes.lacks = ("backbone.",), ("backbone.last_norm.",)
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
    # mmpretrain's pos_embed has a slot iff with_cls_token; its own loader drops the slot when
    # loading into a model without one (VisionTransformer._prepare_pos_embed), so we do too.
    return out, "drop" if "backbone.cls_token" in sd else "none"


def map_vitpose_state_dict(
    sd: Mapping[str, Tensor],
    grid: Grid | None,
    *,
    fmt: Format | Literal["auto"] = "auto",
    source_grid: Grid | None = None,
    head: HeadMode = "keep",
) -> tuple[dict[str, Tensor], MapNotes]:
    """Map a ViTPose / MAE / mmpretrain / cmpose state dict to our layout at token grid ``grid``.

    Args:
        sd: the checkpoint's state dict (see ``read_state_dict``); not modified.
        grid: target (Hp, Wp), e.g. ``model.backbone.grid``; None keeps the checkpoint's grid.
        fmt: the source format, or "auto" (``detect_format``).
        source_grid: the checkpoint's grid when its token count is neither square nor 4:3.
        head: "keep" or "drop" ``keypoint_head.final_layer`` (see the module docstring).

    Returns:
        (state dict in our names, ``MapNotes`` with what was renamed, folded, resampled, dropped).
    """
    if head not in ("keep", "drop"):
        raise ValueError(f"head must be 'keep' or 'drop', got {head!r}")
    fmt = detect_format(sd, grid) if fmt == "auto" else fmt
    notes = MapNotes(fmt)
    out, slot = _rename(sd, fmt, notes)
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


def load_into(
    model: nn.Module,
    sd: Mapping[str, Tensor],
    *,
    strict: bool = True,
    allow_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
    notes: MapNotes | None = None,
) -> LoadReport:
    """Load a state dict already in our layout, asserting shapes.

    Args:
        model: target module.
        sd: name -> tensor, in our names.
        strict: raise on a missing key outside the ``allow_missing`` prefixes or an unexpected key
            outside ``ignore_unexpected``. A missing BatchNorm ``num_batches_tracked`` is always
            allowed (old checkpoints lack it; it only matters with ``momentum=None``).
        notes: the mapper's notes, copied into the report.

    Raises:
        CheckpointError: a shape mismatch (key, checkpoint shape, model shape) or, with ``strict``,
            disallowed missing / unexpected keys (the first 10 and the count).
    """
    own = model.state_dict()
    wrong = [k for k, v in sd.items() if k in own and v.shape != own[k].shape]
    bad = [f"{k}: checkpoint {tuple(sd[k].shape)}, model {tuple(own[k].shape)}" for k in wrong]
    if bad:
        raise CheckpointError(f"shape mismatch in {len(bad)} tensors: " + "; ".join(bad[:10]))
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if strict:
        lost = [
            k for k in missing if not k.startswith(allow_missing) and not k.endswith(".num_batches_tracked")
        ]
        extra = [k for k in unexpected if not k.startswith(ignore_unexpected)]
        problems = [f"missing {_listing(lost)}"] if lost else []
        problems += [f"unexpected {_listing(extra)}"] if extra else []
        if problems:
            raise CheckpointError("strict load failed: " + "; ".join(problems))
    with torch.no_grad():
        model.load_state_dict({k: v for k, v in sd.items() if k in own}, strict=False)
    return LoadReport(
        loaded=len(sd) - len(unexpected),
        missing=missing,
        unexpected=unexpected,
        resampled=list(notes.resampled) if notes else [],
        notes=notes.lines() if notes else [],
    )


def load_pretrained(
    model: nn.Module,
    path: str | Path,
    *,
    fmt: Format | Literal["auto"] = "auto",
    source_grid: Grid | None = None,
    head: HeadMode = "keep",
    strict: bool = True,
    allow_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> LoadReport:
    """Read, detect, map to ``model.backbone.grid`` and load a checkpoint; log the summary.

    Keys a format can never hold may be missing: everything outside ``backbone.`` for MAE (and
    ``last_norm``), outside ``backbone.``/``keypoint_head.`` for ViTPose and mmpretrain, so ViTPose
    COCO weights load into CM-Pose in one call. Our own format gets no such allowance: stage 2
    loading stage 1 passes ``allow_missing=("fte.",)`` for its new modules.

    Raises:
        CheckpointError: naming ``path`` (see ``read_state_dict``, ``detect_format``, ``load_into``).
    """
    grid = getattr(getattr(model, "backbone", None), "grid", None)
    try:
        sd, notes = map_vitpose_state_dict(
            read_state_dict(path), grid, fmt=fmt, source_grid=source_grid, head=head
        )
        allow = tuple(allow_missing) + notes.lacks
        if notes.provides is not None:
            tops = {k.split(".", 1)[0] + "." for k in model.state_dict()}
            allow += tuple(sorted(t for t in tops if not t.startswith(notes.provides)))
        report = load_into(
            model, sd, strict=strict, allow_missing=allow, ignore_unexpected=ignore_unexpected, notes=notes
        )
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    log.info("%s: %s", path, report.summary())
    return report
