"""Loading a state dict in our layout into a model (shapes asserted), and the one-call loader."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from cmpose.checkpoint.common import CheckpointError, Format, Grid, HeadMode, _listing
from cmpose.checkpoint.files import read_metadata, read_state_dict
from cmpose.checkpoint.formats import MapNotes, map_vitpose_state_dict

log = logging.getLogger(__name__)


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


def fit_problems(
    own: Mapping[str, Tensor],
    sd: Mapping[str, Tensor],
    *,
    allow_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
) -> list[str]:
    """One line per key of ``sd`` that cannot load into a model whose state dict is ``own``:
    a shape mismatch (key, checkpoint shape, model shape), then missing keys outside the
    ``allow_missing`` prefixes and unexpected keys outside ``ignore_unexpected``. A missing
    BatchNorm ``num_batches_tracked`` is always allowed (old checkpoints lack it; it only matters
    with ``momentum=None``). Only shapes are read: ``own`` may live on the meta device."""
    out = [
        f"{k}: checkpoint {tuple(v.shape)}, model {tuple(own[k].shape)}"
        for k, v in sd.items()
        if k in own and v.shape != own[k].shape
    ]
    out += [
        f"{k}: missing from the checkpoint"
        for k in sorted(set(own) - set(sd))
        if not k.startswith(allow_missing) and not k.endswith(".num_batches_tracked")
    ]
    out += [
        f"{k}: unexpected, the model has no such tensor"
        for k in sorted(set(sd) - set(own))
        if not k.startswith(ignore_unexpected)
    ]
    return out


def format_allowances(own: Mapping[str, Tensor], notes: MapNotes) -> tuple[str, ...]:
    """Prefixes a format can never hold, so may be missing: what it ``lacks`` and every top-level
    module of the model outside what it ``provides`` (e.g. all but ``backbone.`` for MAE)."""
    allow = tuple(notes.lacks)
    if notes.provides is not None:
        # a module's prefix ends with a dot; a tensor of the model itself (a buffer) is its name
        tops = {k.split(".", 1)[0] + "." if "." in k else k for k in own}
        allow += tuple(sorted(t for t in tops if not t.startswith(notes.provides)))
    return allow


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
            outside ``ignore_unexpected`` (see ``fit_problems``).
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
    expert: int = 0,
    strict: bool = True,
    allow_missing: tuple[str, ...] = (),
    ignore_unexpected: tuple[str, ...] = (),
    sd: Mapping[str, Tensor] | None = None,
) -> LoadReport:
    """Read, detect, map to ``model.backbone.grid`` and load a checkpoint; log the summary.

    Keys a format can never hold may be missing (``format_allowances``): everything outside
    ``backbone.`` for MAE (and ``last_norm``), outside ``backbone.``/``keypoint_head.`` for ViTPose
    and mmpretrain, so ViTPose COCO weights load into CM-Pose in one call; a ``cmpose convert``
    output of such a file gets the same allowances (its metadata). Our own format gets none:
    stage 2 loading stage 1 passes ``allow_missing=("fte.",)`` for its new modules. ``sd``: the
    file's state dict when the caller has read it already (``read_state_dict(path)``).

    Raises:
        CheckpointError: naming ``path`` (see ``read_state_dict``, ``detect_format``, ``load_into``).
    """
    grid = getattr(getattr(model, "backbone", None), "grid", None)
    try:
        sd, notes = map_vitpose_state_dict(
            read_state_dict(path) if sd is None else sd,
            grid,
            fmt=fmt,
            source_grid=source_grid,
            head=head,
            expert=expert,
            metadata=read_metadata(path),
        )
        allow = tuple(allow_missing) + format_allowances(model.state_dict(), notes)
        report = load_into(
            model, sd, strict=strict, allow_missing=allow, ignore_unexpected=ignore_unexpected, notes=notes
        )
    except CheckpointError as err:
        if str(path) in str(err):
            raise
        raise CheckpointError(f"{path}: {err}") from err
    log.info("%s: %s", path, report.summary())
    return report
