"""Where the stage-1 auxiliary tasks corrupt tokens: per token, or in occluder-like blocks and tubes.

The visual tokens of a clip are L = T*N, frame-major, each frame's N = Hp*Wp cells row-major (the
layout of ``tokens.flatten(1, 2)`` in ``CMPose``). Three shapes:

- ``token``: any round(ratio*L) tokens at random (:func:`random_token_mask`, the original form).
  With T = 3 and ratio 0.3 most masked tokens have the same cell visible in a neighbouring, nearly
  identical frame, so reconstructing them is mostly a copy across time.
- ``tube``: rectangles on the Hp x Wp grid hidden in every frame (an occluder that stays for the
  clip), plus keyframe-only rectangles for a ``keyframe_share`` of the budget (:func:`tube_mask`).
  A tube cell is hidden everywhere: the model must infer it from the spatial context and the body
  it can see, which is what occlusion asks of it. A keyframe-only cell is hidden in the keyframe and
  visible in the neighbours: it teaches the temporal path, to fill the keyframe's gap from the
  frames around it (a transient occlusion or blur). The keyframe is always masked at least as much
  as each neighbour.
- ``block``: rectangles drawn independently in each frame (defocus or blur that differs from frame
  to frame), the keyframe getting the remainder of the budget (:func:`frame_block_mask`).

Rectangles (:func:`block_masks`) follow BEiT's blockwise masking (Bao et al., "BEiT: BERT
Pre-Training of Image Transformers", ICLR 2022: random area, log-uniform aspect ratio, random
position, repeat until the budget is spent) with two changes: a rectangle never overlaps or touches
(4-neighbourhood) an earlier one, so every connected component of a mask is one rectangle; and its
area is capped by what is left of the budget, so the count is exact, like the per-token form.

The block sampler draws its randomness from a numpy generator seeded by one draw from the passed
torch generator and builds the masks on the host (numpy, vectorised over the batch: a few rounds
of placing one rectangle per sample), then copies them to the device without blocking. For a
generator on an accelerator the seed comes from the generator's host-side state, so drawing a
mask does not wait for the device (see :func:`host_generator`).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "MaskShape",
    "RegionSampler",
    "block_mask_2d",
    "block_masks",
    "frame_block_mask",
    "host_generator",
    "mask_count",
    "random_token_mask",
    "tube_mask",
]

MaskShape = Literal["tube", "block", "token"]
MASK_SHAPES: tuple[str, ...] = ("tube", "block", "token")


def mask_count(length: int, ratio: float) -> int:
    """round(ratio * L), at least 1 and at most L: the exact number of tokens every shape corrupts."""
    return min(length, max(1, round(ratio * length)))


def random_token_mask(
    batch: int,
    length: int,
    ratio: float,
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> Tensor:
    """(B, L) bool with exactly round(ratio * L) (at least 1) True entries per row, drawn uniformly."""
    count = mask_count(length, ratio)
    noise = torch.rand(batch, length, generator=generator, device=device)
    ranks = noise.argsort(dim=1).argsort(dim=1)  # rank of each position in a random order
    return ranks < count


def host_generator(generator: torch.Generator | None) -> np.random.Generator:
    """A numpy generator determined by ``generator`` (None: by torch's global CPU generator).

    A CPU generator gives one 63-bit draw. An accelerator's generator is not read on the device
    (``.item()`` would wait for all queued work): its state (seed and offset, kept on the host) is
    hashed, and one value is drawn on the device without reading it, which advances the offset so
    that the next call gets a different seed.
    """
    if generator is None or generator.device.type == "cpu":
        seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    state = generator.get_state().numpy().tobytes()
    torch.empty(1, device=generator.device).uniform_(generator=generator)
    return np.random.default_rng(int.from_bytes(hashlib.blake2b(state, digest_size=8).digest(), "little"))


def _dilate4(mask: np.ndarray) -> np.ndarray:
    """(..., Hp, Wp) bool: the mask and its 4-neighbours."""
    out = mask.copy()
    out[..., 1:, :] |= mask[..., :-1, :]
    out[..., :-1, :] |= mask[..., 1:, :]
    out[..., :, 1:] |= mask[..., :, :-1]
    out[..., :, :-1] |= mask[..., :, 1:]
    return out


def block_masks(
    grid: tuple[int, int],
    counts: Sequence[int] | np.ndarray,
    rng: np.random.Generator,
    occupied: np.ndarray | None = None,
    min_cells: int = 4,
    max_aspect: float = 3.0,
    tries: int = 10,
) -> np.ndarray:
    """For each of B grids, exactly ``counts[b]`` new cells of the Hp x Wp grid, as separate rectangles.

    Rectangles are placed one per round in every grid that still has cells to place (the rounds
    are vectorised over the batch). Each gets an area drawn uniformly from
    [min(min_cells, left), left] (``left`` = cells still to place) and an aspect ratio h/w
    log-uniform in [1/max_aspect, max_aspect] (h rounded, then w = round(area / h), both clipped to
    the grid and to h*w <= left), and a position drawn uniformly among those where it neither
    overlaps nor 4-touches ``occupied`` or an earlier rectangle. After ``tries`` rounds in a row
    without such a position it may touch (not overlap) earlier cells, and after ``tries`` more a
    single free cell is taken: the count stays exact whenever the grid has room, at the cost of
    merged components on an almost full grid.

    Args:
        grid: (Hp, Wp).
        counts: (B,) cells to add per grid, 0 <= counts[b] <= free cells of grid b.
        rng: numpy generator (see :func:`host_generator`).
        occupied: (B, Hp, Wp) bool cells already taken (not returned, not touched), or None.
        min_cells: smallest rectangle drawn while the budget allows (BEiT: 16 of 196 patches).
        max_aspect: largest h/w or w/h (BEiT: 1/0.3).
        tries: rounds before the no-touching rule is relaxed.

    Returns:
        (B, Hp, Wp) bool with exactly ``counts[b]`` True cells in grid b, none in ``occupied``.
    """
    H, W = grid
    left = np.asarray(counts, dtype=np.int64).copy()
    B = len(left)
    taken = np.zeros((B, H, W), dtype=bool) if occupied is None else occupied.astype(bool).copy()
    free = H * W - taken.reshape(B, -1).sum(1)
    if (left < 0).any() or (left > free).any():
        raise ValueError(
            f"cannot place {left.tolist()} cells on {H}x{W} grids with {free.tolist()} free cells"
        )
    new = np.zeros((B, H, W), dtype=bool)
    failures = np.zeros(B, dtype=np.int64)
    rows, cols, bi = np.arange(H)[None, :, None], np.arange(W)[None, None, :], np.arange(B)[:, None, None]
    log_aspect = math.log(max_aspect)
    while (left > 0).any():
        active = left > 0
        area = rng.integers(np.minimum(min_cells, left), left + 1)  # (B,), 0 where done
        aspect = np.exp(rng.uniform(-log_aspect, log_aspect, size=B))
        h = np.minimum(np.clip(np.rint(np.sqrt(area * aspect)), 1, H).astype(np.int64), np.maximum(left, 1))
        w = np.clip(np.rint(area / h), 1, W).astype(np.int64)
        w = np.minimum(w, np.maximum(left // h, 1))
        single = failures >= 2 * tries
        h, w = np.where(single, 1, h), np.where(single, 1, w)
        blocked = np.where((failures < tries)[:, None, None], _dilate4(taken), taken)
        integral = np.zeros((B, H + 1, W + 1), dtype=np.int32)
        integral[:, 1:, 1:] = blocked.cumsum(1).cumsum(2)
        # Blocked cells in the h x w window of every top-left corner (r, c), clipped at the border.
        r2, c2 = np.minimum(rows + h[:, None, None], H), np.minimum(cols + w[:, None, None], W)
        sums = (
            integral[bi, r2, c2] - integral[bi, rows, c2] - integral[bi, r2, cols] + integral[bi, rows, cols]
        )
        fits = (rows + h[:, None, None] <= H) & (cols + w[:, None, None] <= W)
        ok = fits & (sums == 0) & active[:, None, None]  # (B, Hp, Wp)
        # A uniform choice among the valid corners: the largest of iid uniforms.
        pick = np.where(ok, rng.random((B, H, W)), -1.0).reshape(B, -1).argmax(1)
        placed = ok.reshape(B, -1).any(1)
        r, c = (pick // W)[:, None, None], (pick % W)[:, None, None]
        rect = (rows >= r) & (rows < r + h[:, None, None]) & (cols >= c) & (cols < c + w[:, None, None])
        rect &= placed[:, None, None]
        taken |= rect
        new |= rect
        left -= np.where(placed, h * w, 0)
        failures = np.where(placed, 0, failures + active)
    return new


def block_mask_2d(
    grid: tuple[int, int],
    count: int,
    rng: np.random.Generator,
    occupied: np.ndarray | None = None,
    min_cells: int = 4,
    max_aspect: float = 3.0,
    tries: int = 10,
) -> np.ndarray:
    """One grid of :func:`block_masks`: (Hp, Wp) bool with exactly ``count`` new cells."""
    occ = None if occupied is None else occupied[None]
    return block_masks(grid, [count], rng, occ, min_cells, max_aspect, tries)[0]


def _spread(count: int, room: list[int], key: int) -> list[int]:
    """Split ``count`` over frames with the given room, the keyframe first, then in frame order."""
    out = [0] * len(room)
    for t in [key, *(t for t in range(len(room)) if t != key)]:
        out[t] = min(count, room[t])
        count -= out[t]
    return out


def tube_mask(
    batch: int,
    frames: int,
    grid: tuple[int, int],
    ratio: float,
    rng: np.random.Generator,
    key_frame: int | None = None,
    keyframe_share: float = 0.0,
    min_cells: int = 4,
    max_aspect: float = 3.0,
) -> Tensor:
    """Tube masking: the same rectangles in every frame, plus keyframe-only rectangles.

    Of the c = round(ratio * T*N) tokens, S cells are tubes (masked in all T frames) and the other
    c - T*S are keyframe-only, with S = floor((1 - keyframe_share) * c / T) (raised where the keyframe
    has no room for the rest, which happens only for ratios near 1; the overflow then goes to the
    other frames, keyframe first). The keyframe is masked at least as much as every neighbour, and
    with a share of 0 it has fewer than T extra cells. Extra rectangles keep clear of the tubes, so
    every frame's connected components are rectangles.

    Args:
        batch: B; frames: T; grid: (Hp, Wp); ratio: share of the T*N tokens, in (0, 1).
        rng: numpy generator (see :func:`host_generator`).
        key_frame: index of the keyframe (default T // 2, CM-Pose's middle frame).
        keyframe_share: share of the masked tokens that are keyframe-only, in [0, 1).
        min_cells, max_aspect: rectangle sizes (:func:`block_mask_2d`).

    Returns:
        (B, T*N) bool, exactly c True per row, in the layout of ``tokens.flatten(1, 2)``.
    """
    H, W = grid
    N, T = H * W, frames
    key = T // 2 if key_frame is None else key_frame
    count = mask_count(T * N, ratio)
    if T == 1:
        tube = count
    else:
        tube = max(math.floor((1.0 - keyframe_share) * count / T), math.ceil((count - N) / (T - 1)))
        tube = min(tube, count // T)
    extra = _spread(count - T * tube, [N - tube] * T, key)  # cells per frame beyond the tube
    cells = block_masks(grid, [tube] * batch, rng, None, min_cells, max_aspect)  # (B, Hp, Wp)
    out = np.repeat(cells[:, None], T, axis=1)  # (B, T, Hp, Wp)
    for t in range(T):
        if extra[t]:
            out[:, t] |= block_masks(grid, [extra[t]] * batch, rng, cells, min_cells, max_aspect)
    return torch.from_numpy(out.reshape(batch, T * N))


def frame_block_mask(
    batch: int,
    frames: int,
    grid: tuple[int, int],
    ratio: float,
    rng: np.random.Generator,
    key_frame: int | None = None,
    min_cells: int = 4,
    max_aspect: float = 3.0,
) -> Tensor:
    """Rectangles drawn independently in every frame; c // T cells per frame, the keyframe taking the
    remainder first (so it is covered at least as much as each other frame).

    Args and returns as :func:`tube_mask` (without ``keyframe_share``).
    """
    H, W = grid
    N, T = H * W, frames
    key = T // 2 if key_frame is None else key_frame
    count = mask_count(T * N, ratio)
    base = count // T
    per_frame = [base + e for e in _spread(count - T * base, [N - base] * T, key)]
    out = block_masks(grid, per_frame * batch, rng, None, min_cells, max_aspect)  # (B*T, Hp, Wp)
    return torch.from_numpy(out.reshape(batch, T * N))


@dataclass(frozen=True)
class RegionSampler:
    """Draws the (B, L) corruption masks of one auxiliary branch for clips of a fixed layout.

    Args:
        shape: ``tube``, ``block`` or ``token`` (see the module docstring).
        frames: T; grid: (Hp, Wp); key_frame: default T // 2.
        keyframe_share: ``tube`` only: share of the masked tokens that are keyframe-only.
        min_cells, max_aspect: rectangle sizes (:func:`block_mask_2d`).
    """

    shape: MaskShape
    frames: int
    grid: tuple[int, int]
    key_frame: int | None = None
    keyframe_share: float = 0.0
    min_cells: int = 4
    max_aspect: float = 3.0

    def __post_init__(self) -> None:
        if self.shape not in MASK_SHAPES:
            raise ValueError(f"mask shape must be one of {MASK_SHAPES}, got {self.shape!r}")
        if self.frames < 1 or min(self.grid) < 1:
            raise ValueError(f"bad layout: frames={self.frames}, grid={tuple(self.grid)}")
        if not 0.0 <= self.keyframe_share < 1.0:
            raise ValueError(f"keyframe_share must be in [0, 1), got {self.keyframe_share}")
        if self.min_cells < 1 or self.max_aspect < 1.0:
            raise ValueError(
                f"need min_cells >= 1 and max_aspect >= 1, got {self.min_cells}, {self.max_aspect}"
            )

    @property
    def length(self) -> int:
        """L = T * Hp * Wp."""
        return self.frames * self.grid[0] * self.grid[1]

    def sample(
        self,
        batch: int,
        length: int,
        ratio: float,
        generator: torch.Generator | None = None,
        device: torch.device | str = "cpu",
    ) -> Tensor:
        """(B, L) bool with exactly round(ratio * L) (at least 1) True per row, on ``device``."""
        if length != self.length:
            raise ValueError(
                f"{length} tokens do not fit the sampler's layout of {self.frames} frames x "
                f"{self.grid[0]}x{self.grid[1]} = {self.length}"
            )
        if self.shape == "token":
            return random_token_mask(batch, length, ratio, generator, device)
        return self._host_mask(batch, ratio, generator, device)

    # Host code (numpy): torch.compile runs it as one opaque call instead of splitting the graph
    # at every numpy step.
    @torch.compiler.disable
    def _host_mask(
        self, batch: int, ratio: float, generator: torch.Generator | None, device: torch.device | str
    ) -> Tensor:
        rng = host_generator(generator)
        if self.shape == "tube":
            mask = tube_mask(
                batch,
                self.frames,
                self.grid,
                ratio,
                rng,
                self.key_frame,
                self.keyframe_share,
                self.min_cells,
                self.max_aspect,
            )
        else:
            mask = frame_block_mask(
                batch, self.frames, self.grid, ratio, rng, self.key_frame, self.min_cells, self.max_aspect
            )
        return mask.to(device, non_blocking=True)
