"""How well TCIS keeps the body: the share of GT keypoints whose keyframe token is among the
kept (causal) tokens, over a split. With a keep ratio of 0.5 a random choice scores 0.5; a
useful importance must score far above it (method.md: "the interpretability claim in numbers")."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from cmpose.models.tcis import keep_count, keypoint_hits, keypoint_token_index
from cmpose.ops.geometry import apply_affine, invert_affine


@torch.no_grad()
def keypoints_in_crop(meta: dict, crop_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The keyframe's GT keypoints of a test batch in crop pixels, (B, J, 2), and which of them
    count for a recall, (B, J) bool: annotated and inside the crop of size ``crop_size`` (W, H)."""
    W, H = crop_size
    kps = meta["keypoints"].numpy()  # (B, J, 3) image pixels
    m = meta["crop_to_image"].numpy()  # (B, 2, 3)
    crop_xy = np.stack([apply_affine(kps[b, :, :2], invert_affine(m[b])) for b in range(len(kps))])
    inside = (crop_xy[..., 0] >= 0) & (crop_xy[..., 0] <= W - 1) & (crop_xy[..., 1] >= 0)
    inside &= crop_xy[..., 1] <= H - 1
    return torch.from_numpy(crop_xy), torch.from_numpy((kps[..., 2] > 0) & inside)


def tcis_keypoint_recall(
    model: Any, dataset: Any, keep_ratio: float, batch_size: int = 64, max_samples: int | None = None
) -> dict[str, float]:
    """Recall of GT keypoints (annotated and inside the crop) by the top-``keep_ratio`` tokens.

    Returns {"recall", "keep_ratio", "keypoints", "tokens_kept", "tokens"}: ``tokens_kept`` =
    K of the T*N visual tokens, i.e. what enters refinement besides the J keypoint tokens and
    the M merged tokens.
    """
    model.eval()
    n = len(dataset) if max_samples is None else min(max_samples, len(dataset))
    loader = DataLoader(torch.utils.data.Subset(dataset, range(n)), batch_size=batch_size)
    W, H = dataset.crop.image_size
    hits = total = 0
    K = L = 0
    for batch in loader:
        out = model(batch["clip"])
        if "importance" not in out:
            raise ValueError("the model has no keypoint-token attention (single-frame baseline)")
        imp = out["importance"]  # (B, T, Hp, Wp)
        B, T, Hp, Wp = imp.shape
        L = T * Hp * Wp
        K = keep_count(L, keep_ratio)
        kept = imp.flatten(1).topk(K, dim=1).indices  # (B, K)
        xy, valid = keypoints_in_crop(batch["meta"], (W, H))
        idx = keypoint_token_index(xy, (W, H), (Hp, Wp), T // 2, Hp * Wp)
        hit = keypoint_hits(kept, idx)  # (B, J)
        hits += int((hit & valid).sum())
        total += int(valid.sum())
    return {
        "recall": hits / total if total else float("nan"),
        "keep_ratio": keep_ratio,
        "keypoints": total,
        "tokens_kept": K,
        "tokens": L,
    }
