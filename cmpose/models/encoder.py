"""Spatio-temporal encoder: L1 transformer blocks over [J keypoint tokens ; T*N visual tokens].

Keypoint tokens are learnable (TokenPose); a learnable frame embedding (T, C) and a spatial
embedding (N, C) tell the encoder where and when each visual token comes from (the backbone's
position embedding is shared by all frames, so it cannot say which frame a token is from).

The visual output is residual: input tokens + a zero-initialised projection of the blocks'
(normalised) output. A stage-1 model built on a ViTPose backbone and head therefore starts at
exactly ViTPose's single-frame prediction of the keyframe, and the temporal path learns a
correction (ControlNet's zero convolution, FTE's ``out_proj``), instead of the head first seeing
LayerNorm-rescaled tokens it was never trained on.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cmpose.models.vit import Block


@dataclass
class EncoderOutput:
    """keypoints (B, J, C) normalised keypoint tokens; visual (B, T*N, C) the input tokens plus the
    temporal correction (equal to the input at initialisation); attn (B, heads, J, J + T*N): the
    keypoint-query rows of the last block's attention (what TCIS reads)."""

    keypoints: Tensor
    visual: Tensor
    attn: Tensor


class SpatioTemporalEncoder(nn.Module):
    """Args:
    dim: C; depth: L1 blocks; num_heads: heads; num_frames: T; tokens_per_frame: N;
    num_joints: J; mlp_ratio: MLP width ratio.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        num_frames: int,
        tokens_per_frame: int,
        num_joints: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if depth < 1:
            raise ValueError(f"encoder depth must be >= 1, got {depth}")
        self.num_joints = num_joints
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, num_joints, dim))
        self.frame_embed = nn.Parameter(torch.zeros(1, num_frames, 1, dim))
        self.spatial_embed = nn.Parameter(torch.zeros(1, 1, tokens_per_frame, dim))
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Zero-initialised: the visual output starts equal to the input tokens (module docstring).
        self.out_proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)
        for p in (self.keypoint_tokens, self.frame_embed, self.spatial_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def embed(self, tokens: Tensor) -> Tensor:
        """tokens (B, T, N, C) -> (B, T*N, C) with frame and spatial embeddings added.

        Masked tokens are substituted before this (dinov2 substitutes its mask token before the
        position embedding, so a masked token still says where it is)."""
        x = tokens + self.frame_embed + self.spatial_embed
        return x.flatten(1, 2)

    def forward(self, tokens: Tensor, need_attn: bool = True) -> EncoderOutput:
        """tokens (B, T, N, C) backbone tokens (corrupted ones in the auxiliary branches) ->
        ``EncoderOutput`` (``attn`` None unless ``need_attn``: the auxiliary branches do not read it)."""
        B = tokens.shape[0]
        J = self.num_joints
        x = torch.cat([self.keypoint_tokens.expand(B, -1, -1), self.embed(tokens)], dim=1)  # (B, J+L, C)
        last = len(self.blocks) - 1
        attn = None
        for i, block in enumerate(self.blocks):
            x, a = block(x, attn_rows=J if need_attn and i == last else 0)
            if a is not None:
                attn = a  # (B, heads, J, J+L): keypoint queries only, float32
        x = self.norm(x)
        visual = tokens.flatten(1, 2) + self.out_proj(x[:, J:])  # (B, L, C), residual
        return EncoderOutput(keypoints=x[:, :J], visual=visual, attn=attn)
