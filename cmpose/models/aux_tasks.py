"""Stage-1 auxiliary tasks of Multitask Coarse Learning (MCL), on backbone tokens.

- Masked token reconstruction: a share of the visual tokens is replaced by a learnable mask token
  (simulated occlusion); a light decoder regresses the original backbone tokens (stop-gradient)
  at the masked positions.
- Token denoising: Gaussian noise scaled by the tokens' spread is added to a share of the tokens
  (simulated defocus); a light decoder regresses the clean tokens.
Which tokens: per token, or contiguous blocks / tubes on the (T, Hp, Wp) grid, as the branch's
:class:`~cmpose.models.masking.RegionSampler` says (none: per token).
Both branches also predict the keyframe heatmaps through the shared encoder and head (done in
``CMPose``), so hidden keypoints must be inferred from the visible ones. Training only.
Shapes: B batch, L = T*N visual tokens, C channels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from cmpose.models.masking import RegionSampler, random_token_mask

__all__ = ["DenoisingBranch", "MaskedTokenBranch", "TokenDecoder", "random_token_mask"]


def _draw(
    sampler: RegionSampler | None,
    B: int,
    L: int,
    ratio: float,
    generator: torch.Generator | None,
    device: torch.device,
) -> Tensor:
    """(B, L) bool: the sampler's mask, or per-token without one."""
    if sampler is None:
        return random_token_mask(B, L, ratio, generator, device)
    return sampler.sample(B, L, ratio, generator, device)


class TokenDecoder(nn.Module):
    """The light decoder: LayerNorm + 2-layer MLP, (B, L, C) -> (B, L, C)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(self.norm(x))))


class MaskedTokenBranch(nn.Module):
    """Owns the mask token and the reconstruction decoder.

    Args:
        dim: C; hidden: decoder width; ratio: r_m, share of visual tokens masked;
        sampler: where the masks fall (tubes, blocks); None = per token.
    """

    def __init__(self, dim: int, hidden: int, ratio: float, sampler: RegionSampler | None = None) -> None:
        super().__init__()
        self.ratio = ratio
        self.sampler = sampler
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.trunc_normal_(self.mask_token, std=0.02)
        self.decoder = TokenDecoder(dim, hidden)

    def corrupt(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """tokens (B, L, C) -> (masked tokens (B, L, C), mask (B, L) bool)."""
        B, L, _ = tokens.shape
        mask = _draw(self.sampler, B, L, self.ratio, generator, tokens.device)
        return torch.where(mask[..., None], self.mask_token.to(tokens.dtype), tokens), mask


class DenoisingBranch(nn.Module):
    """Adds N(0, std^2 * Var(tokens)) to a share of the tokens; owns the denoising decoder.

    Var is per sample and channel over the L tokens, so the noise is on the tokens' own scale
    whatever the backbone's feature magnitude.

    Args:
        dim: C; hidden: decoder width; ratio: r_n; std: sigma_n;
        sampler: where the noise falls (blocks, tubes); None = per token.
    """

    def __init__(
        self, dim: int, hidden: int, ratio: float, std: float, sampler: RegionSampler | None = None
    ) -> None:
        super().__init__()
        self.ratio = ratio
        self.sampler = sampler
        self.std = std
        self.decoder = TokenDecoder(dim, hidden)

    def corrupt(self, tokens: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        """tokens (B, L, C) -> (noisy tokens (B, L, C), noised (B, L) bool)."""
        B, L, C = tokens.shape
        mask = _draw(self.sampler, B, L, self.ratio, generator, tokens.device)
        spread = tokens.detach().float().std(dim=1, keepdim=True)  # (B, 1, C)
        noise = torch.randn(B, L, C, generator=generator, device=tokens.device) * spread * self.std
        return tokens + noise.to(tokens.dtype) * mask[..., None], mask
