"""Stage-2 Fine Token Enhancement (FTE): TCIS keeps the keypoint-relevant ("causal") tokens,
non-causal tokens are clustered (DPC-KNN) and merged, L2 refinement blocks run over
[J keypoint tokens ; K causal ; M merged], and the keyframe grid is restored from them.

Shapes: B batch, L = T*N visual tokens, N per frame, C channels, J joints, K kept, M clusters.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from cmpose.models.tcis import keep_count, select_topk
from cmpose.models.token_cluster import cluster_count, cluster_dpc_knn, merge_tokens, unmerge_tokens
from cmpose.models.vit import Block


@dataclass
class FTEOutput:
    """delta: (B, N, C) correction added to the keyframe's coarse tokens; kept_idx (B, K);
    cluster_ids (B, L) long: the cluster of each non-causal token; -1 for kept tokens and, when
    clustering is off, for the dropped ones too (``kept_idx`` tells them apart)."""

    delta: Tensor
    kept_idx: Tensor
    cluster_ids: Tensor


class FineTokenEnhancement(nn.Module):
    """Args:
    dim: C; depth: L2 refinement blocks; num_heads: heads; num_joints: J;
    keep_ratio: K = ceil(keep_ratio * L); cluster: merge the non-causal tokens (else drop them);
    cluster_ratio: M = ceil(cluster_ratio * (L - K)); knn: DPC-KNN's k.
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        num_heads: int,
        num_joints: int,
        keep_ratio: float = 0.5,
        cluster: bool = True,
        cluster_ratio: float = 0.25,
        knn: int = 5,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.num_joints = num_joints
        self.keep_ratio = keep_ratio
        self.cluster = cluster
        self.cluster_ratio = cluster_ratio
        self.knn = knn
        # Merge weight of each non-causal token (TCFormer's CTM score head: LN + Linear). Built only
        # when some token is clustered: an unused trainable parameter breaks DDP.
        self.merge_score = (
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 1)) if cluster and keep_ratio < 1.0 else None
        )
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        # Zero-initialised output projection: stage 2 starts exactly at the stage-1 prediction
        # and learns a correction, instead of first having to undo a random perturbation.
        self.out_proj = nn.Linear(dim, dim)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def forward(
        self, keypoints: Tensor, visual: Tensor, importance: Tensor, key_frame: int, tokens_per_frame: int
    ) -> FTEOutput:
        """keypoints (B, J, C), visual (B, L, C), importance (B, L) -> ``FTEOutput``."""
        B, L, C = visual.shape
        K = keep_count(L, self.keep_ratio)
        sel = select_topk(visual, importance, K)  # kept (B, K, C), rest (B, L-K, C)
        cluster_ids = visual.new_full((B, L), -1, dtype=torch.long)
        parts = [keypoints, sel.kept]
        M = 0
        if self.merge_score is not None and L > K:
            M = cluster_count(L - K, self.cluster_ratio)
            ids = cluster_dpc_knn(sel.rest.detach(), M, self.knn)  # (B, L-K), no gradient
            logits = self.merge_score(sel.rest).squeeze(-1)  # (B, L-K)
            parts.append(merge_tokens(sel.rest, ids, logits, M))  # (B, M, C)
            cluster_ids.scatter_(1, sel.rest_idx, ids)
        x = torch.cat(parts, dim=1)  # (B, J + K + M, C)
        for block in self.blocks:
            x, _ = block(x)
        x = self.out_proj(self.norm(x))
        J = self.num_joints
        # Restore all L positions: a kept token takes its refined token, a non-causal one its
        # cluster's refined token (zero when clustering is off: those tokens were dropped).
        restored = x.new_zeros(B, L, C)
        restored.scatter_(1, sel.kept_idx[..., None].expand(-1, -1, C), x[:, J : J + K])
        if M:
            rest = unmerge_tokens(x[:, J + K :], cluster_ids.gather(1, sel.rest_idx))  # (B, L-K, C)
            restored.scatter_(1, sel.rest_idx[..., None].expand(-1, -1, C), rest.to(x.dtype))
        start = key_frame * tokens_per_frame
        return FTEOutput(
            delta=restored[:, start : start + tokens_per_frame],
            kept_idx=sel.kept_idx,
            cluster_ids=cluster_ids,
        )
