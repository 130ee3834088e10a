"""Plain ViT backbone with ViTPose's attribute names, so its checkpoints load by a near-identity
key map: ``patch_embed.proj``, ``pos_embed``, ``blocks.{i}.norm1``, ``blocks.{i}.attn.qkv``,
``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1``, ``blocks.{i}.mlp.fc2``,
``last_norm``.

Shapes: B images (B*T when frames of clips are stacked), N = Hp*Wp tokens, C channels.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

# Training on the CPU under bf16 autocast computes attention as a plain product (see
# Attention.forward); ``cmpose bench step`` turns this off to time SDPA side by side.
CPU_BF16_MATH = True


def drop_path(x: Tensor, prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero a whole residual branch per sample with probability ``prob``."""
    if prob == 0.0 or not training:
        return x
    keep = 1.0 - prob
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, prob: float = 0.0) -> None:
        super().__init__()
        self.prob = prob

    def forward(self, x: Tensor) -> Tensor:
        return drop_path(x, self.prob, self.training)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    """Multi-head self-attention; can also return some rows of its attention weights (TCIS reads
    the keypoint queries' rows)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor, attn_rows: int = 0) -> tuple[Tensor, Tensor | None]:
        """x (B, L, C) -> (out (B, L, C), the first ``attn_rows`` rows of the attention
        (B, heads, attn_rows, L) in float32, or None when ``attn_rows`` is 0)."""
        B, L, C = x.shape
        qkv = self.qkv(x).reshape(B, L, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, L, C/heads) each
        if CPU_BF16_MATH and q.device.type == "cpu" and q.dtype == torch.bfloat16 and q.requires_grad:
            # PyTorch's CPU SDPA backward in bf16 is 2-8x slower than the plain product for
            # these sizes (fp32 and the forward are not); docs/benchmarks.md, "Training step on the CPU".
            out = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        else:
            out = F.scaled_dot_product_attention(q, k, v)
        attn = None
        if attn_rows:
            # Only the rows that are read (TCIS: the J keypoint queries), and in float32: under
            # bf16 autocast many importance scores would tie, and the top-K would be decided by
            # token index instead of attention.
            with torch.autocast(x.device.type, enabled=False):
                logits = (q[:, :, :attn_rows].float() * self.scale) @ k.float().transpose(-2, -1)
                attn = logits.softmax(dim=-1)
        out = out.transpose(1, 2).reshape(B, L, C)
        return self.proj(out), attn


class Block(nn.Module):
    """Pre-norm transformer block (LayerNorm eps 1e-6, as ViTPose)."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path_prob: float = 0.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.drop_path = DropPath(drop_path_prob)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: Tensor, attn_rows: int = 0) -> tuple[Tensor, Tensor | None]:
        """x (B, L, C) -> (x (B, L, C), attention rows (B, heads, attn_rows, L) or None)."""
        out, attn = self.attn(self.norm1(x), attn_rows)
        x = x + self.drop_path(out)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x, attn


class PatchEmbed(nn.Module):
    """Image -> token grid.

    Without a stem: ViTPose's Conv2d(kernel=stride=patch, padding=2); keep padding 2 or
    ViTPose weights see a grid shifted by 2 px (256x192 -> 16x12 either way). With a stem
    (``stem_channels`` > 0): two 3x3 stride-2 conv+BN+GELU layers, then a (patch/4) projection.
    """

    def __init__(
        self, img_size: tuple[int, int], patch_size: int, padding: int, embed_dim: int, stem_channels: int = 0
    ) -> None:
        super().__init__()
        H, W = img_size
        if stem_channels:
            self.stem = nn.Sequential(
                nn.Conv2d(3, stem_channels, 3, 2, 1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.GELU(),
                nn.Conv2d(stem_channels, stem_channels, 3, 2, 1, bias=False),
                nn.BatchNorm2d(stem_channels),
                nn.GELU(),
            )
            in_chans, kernel, padding = stem_channels, patch_size // 4, 0
            H, W = math.ceil(H / 4), math.ceil(W / 4)
        else:
            self.stem = None
            in_chans, kernel = 3, patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel, kernel, padding)
        self.grid = ((H + 2 * padding - kernel) // kernel + 1, (W + 2 * padding - kernel) // kernel + 1)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) -> (B, N, C) with N = Hp*Wp."""
        if self.stem is not None:
            x = self.stem(x)
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """ViTPose-style backbone (no class token): (B, 3, H, W) -> (B, N, C).

    ``pos_embed`` is stored as (1, N, C): ViTPose's (1, 1+N, C) has a class-token slot that is
    broadcast-added to every patch; ``cmpose.checkpoint`` folds it in when loading.

    Args:
        img_size: input (H, W).
        patch_size, patch_padding, stem_channels: see ``PatchEmbed``.
        embed_dim, depth, num_heads, mlp_ratio: transformer size (C, blocks, heads, MLP ratio).
        drop_path_rate: stochastic depth, increasing linearly to this value at the last block.
        grad_checkpointing: recompute each block in backward (saves activation memory).
    """

    def __init__(
        self,
        img_size: tuple[int, int] = (256, 192),
        patch_size: int = 16,
        patch_padding: int = 2,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        drop_path_rate: float = 0.0,
        stem_channels: int = 0,
        grad_checkpointing: bool = False,
    ) -> None:
        super().__init__()
        self.patch_embed = PatchEmbed(img_size, patch_size, patch_padding, embed_dim, stem_channels)
        self.grid = self.patch_embed.grid
        self.embed_dim = embed_dim
        self.num_tokens = self.grid[0] * self.grid[1]
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_tokens, embed_dim))
        rates = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads, mlp_ratio, r) for r in rates)
        self.last_norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.grad_checkpointing = grad_checkpointing
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x (B, 3, H, W) -> tokens (B, N, C)."""
        x = self.patch_embed(x) + self.pos_embed
        for block in self.blocks:
            if self.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(lambda y, b=block: b(y)[0], x, use_reentrant=False)
            else:
                x, _ = block(x)
        return self.last_norm(x)
