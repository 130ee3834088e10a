"""TCIS keypoint recall at several keep ratios, beside the recall of a centre prior.

A recall means little on its own: when the person fills the crop, any choice of the tokens near
the crop centre keeps most keypoints (docs/results.md, "Ablation": at keep ratio 0.5 such a
prior kept 100 % on the synthetic benchmark). The prior here keeps, in every frame, the
``keep_count(N, ratio)`` tokens whose cell centres lie nearest the crop centre (the same share
of tokens as TCIS, which takes its K over all T*N tokens); only a recall above the prior's shows
that the keypoint-token attention finds the body rather than the middle of the box.

One pass of the model serves every keep ratio (the importance does not depend on it).
Shapes: B batch, T frames, N = Hp*Wp tokens per frame, J keypoints, K kept tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import DataLoader, Subset

from cmpose.engine.tcis_recall import keypoints_in_crop
from cmpose.models.tcis import keep_count, keypoint_hits, keypoint_token_index


def centre_prior_tokens(
    grid: tuple[int, int], image_size: tuple[int, int], keep_ratio: float
) -> torch.Tensor:
    """(k,) indices (row-major within one frame) of the ``keep_count(Hp*Wp, keep_ratio)`` cells
    whose centres are nearest the crop centre, in pixels of a (W, H) crop; ties by index."""
    Hp, Wp = grid
    W, H = image_size
    # Cell centres in crop pixels, relative to the crop centre (pixel i covers [i-0.5, i+0.5]).
    y = (torch.arange(Hp, dtype=torch.float64) + 0.5) * H / Hp - H / 2
    x = (torch.arange(Wp, dtype=torch.float64) + 0.5) * W / Wp - W / 2
    d = (y[:, None] ** 2 + x[None, :] ** 2).flatten()
    order = torch.sort(d, stable=True).indices
    return order[: keep_count(Hp * Wp, keep_ratio)]


@torch.no_grad()
def tcis_recall_curve(
    model: Any,
    dataset: Any,
    keep_ratios: Sequence[float],
    batch_size: int = 64,
    max_samples: int | None = None,
) -> dict[str, Any]:
    """Recall of the GT keyframe keypoints (labelled, inside the crop) by TCIS's top-K tokens and
    by the centre prior, for each keep ratio.

    Returns {"keypoints": count, "ratios": {"0.2": {"tcis", "centre", "tokens_kept", "tokens"}}}.
    """
    model.eval()
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    loader = DataLoader(Subset(dataset, range(n)), batch_size=batch_size)
    W, H = dataset.crop.image_size
    hits = dict.fromkeys(keep_ratios, 0)
    prior_hits = dict.fromkeys(keep_ratios, 0)
    total = 0
    L = N = 0
    for batch in loader:
        out = model(batch["clip"])
        if "importance" not in out:
            raise ValueError("the model has no keypoint-token attention (single-frame baseline)")
        imp = out["importance"]  # (B, T, Hp, Wp)
        B, T, Hp, Wp = imp.shape
        N, L = Hp * Wp, T * Hp * Wp
        xy, valid = keypoints_in_crop(batch["meta"], (W, H))  # (B, J, 2), (B, J)
        idx = keypoint_token_index(xy, (W, H), (Hp, Wp), T // 2, N)  # (B, J) into T*N
        local = keypoint_token_index(xy, (W, H), (Hp, Wp), 0, N)  # (B, J) within the keyframe
        order = imp.flatten(1).topk(L, dim=1).indices  # (B, L) by importance
        total += int(valid.sum())
        for r in keep_ratios:
            hit = keypoint_hits(order[:, : keep_count(L, r)], idx)
            hits[r] += int((hit & valid).sum())
            prior = centre_prior_tokens((Hp, Wp), (W, H), r)[None].expand(B, -1)
            prior_hits[r] += int((keypoint_hits(prior, local) & valid).sum())
    nan = float("nan")
    return {
        "keypoints": total,
        "ratios": {
            f"{r:g}": {
                "tcis": hits[r] / total if total else nan,
                "centre": prior_hits[r] / total if total else nan,
                "tokens_kept": keep_count(L, r),
                "tokens": L,
            }
            for r in keep_ratios
        },
    }
