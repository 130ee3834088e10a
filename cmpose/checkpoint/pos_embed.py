"""The ViT position embedding: its token grid, its class-token slot, bicubic resampling."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor

from cmpose.checkpoint.common import CheckpointError, Grid


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
