"""Non-causal token clustering for CM-Pose stage 2: DPC-KNN clustering, weighted merge, un-merge.

The clustering follows TCFormer's ``cluster_dpc_knn`` (Zeng et al., "Not All Tokens Are Equal:
Human-centric Visual Analysis via Token Clustering Transformer", CVPR 2022), which is density-peak
clustering (Rodriguez & Laio, Science 2014) with a k-nearest-neighbour density. Merging follows
TCFormer's ``merge_tokens``: a weighted mean per cluster whose weights come from a learned score.

Shapes: B batch, N tokens, C channels, M clusters. Everything is batched; there is no Python loop
over samples or tokens. Only :func:`merge_tokens` and :func:`unmerge_tokens` carry gradient; the
cluster assignment is a hard choice and is computed under ``torch.no_grad()``.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    "cluster_count",
    "cluster_dpc_knn",
    "dpc_knn_centers",
    "merge_tokens",
    "pairwise_sq_dist",
    "unmerge_tokens",
]


def cluster_count(num_tokens: int, ratio: float) -> int:
    """Number of clusters ``M = ceil(ratio * num_tokens)``, at least 1 when ``num_tokens > 0``.

    Args:
        num_tokens: Number of tokens N to cluster (>= 0).
        ratio: Share of tokens that survive as clusters, in (0, 1] (TCFormer and CM-Pose use 0.25).

    Returns:
        M in [1, N] for N > 0, and 0 for N == 0.
    """
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"cluster ratio must be in (0, 1], got {ratio}")
    if num_tokens == 0:
        return 0
    # Round first so that float noise (0.7 * 10 = 7.000000000000001) does not add a cluster.
    return min(num_tokens, max(1, math.ceil(round(ratio * num_tokens, 9))))


def pairwise_sq_dist(x: Tensor) -> Tensor:
    """(B, N, C) -> (B, N, N) squared Euclidean distances by the matmul form, in float32 or better.

    ``|a|^2 + |b|^2 - 2 a.b`` is one batched matmul (about 12x faster on the CPU than cdist's direct
    mode at B=32, N=288, C=768). Its error is a cancellation, relative to the tokens' squared norm,
    so the tokens are first centred per sample (distances do not change; norms shrink to the
    spread). The squared norms are the Gram matrix's own diagonal, so the diagonal is exactly 0 and
    duplicate tokens (identical rows) get exactly 0 too; the result is clamped at 0 and symmetrised.
    Autocast is off: a bf16 matmul would lose the small distances that the density depends on.
    """
    with torch.autocast(x.device.type, enabled=False):
        x = x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
        x = x - x.mean(dim=1, keepdim=True)
        gram = x @ x.transpose(1, 2)  # (B, N, N)
        sq = gram.diagonal(dim1=1, dim2=2)  # (B, N)
        d2 = (sq[:, :, None] + sq[:, None, :] - 2.0 * gram).clamp_min(0.0)
        return 0.5 * (d2 + d2.transpose(1, 2))


@torch.no_grad()
def _dpc_knn(x: Tensor, num_clusters: int, k: int) -> tuple[Tensor, Tensor]:
    """Shared body of :func:`cluster_dpc_knn` and :func:`dpc_knn_centers`; returns (ids, centers)."""
    if x.ndim != 3:
        raise ValueError(f"x must be (B, N, C), got shape {tuple(x.shape)}")
    B, N, C = x.shape
    if N == 0:
        raise ValueError("cannot cluster an empty token set (N == 0)")
    if num_clusters < 1:
        raise ValueError(f"num_clusters must be >= 1, got {num_clusters}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    M = min(num_clusters, N)
    k = min(k, N)  # with fewer than k tokens, the whole sample is every token's neighbourhood

    # Squared pairwise distances scaled by 1/C, i.e. (distance / sqrt(C))^2 as in TCFormer. Every
    # step below needs only their order, or their square, except delta's log, which halves it.
    dist2 = pairwise_sq_dist(x) / max(C, 1)  # (B, N, N)

    # Local density rho_i = exp(-mean of the k smallest squared distances in row i), the row's own
    # zero included (TCFormer). We keep log(rho) = -mean: exp is monotonic, so the density order and
    # the ranking by rho * delta are unchanged, and the log cannot underflow to 0 for far tokens.
    knn = dist2.topk(k, dim=-1, largest=False).values  # (B, N, k)
    log_rho = -knn.mean(dim=-1)  # (B, N)

    # Deterministic tie-break instead of TCFormer's random noise: token j is "denser" than token i
    # when rho_j > rho_i, or rho_j == rho_i and j < i. This is a strict total order, so exactly one
    # token (the first of the densest) has no denser token.
    idx = torch.arange(N, device=x.device)
    denser = (log_rho[:, None, :] > log_rho[:, :, None]) | (
        (log_rho[:, None, :] == log_rho[:, :, None]) & (idx[None, :] < idx[:, None])
    )  # (B, N, N): denser[b, i, j] = token j is denser than token i
    # delta_i = distance to the nearest denser token; for the densest token, the sample's largest
    # distance (TCFormer fills the masked entries with dist_max and takes the row minimum).
    dist2_max = dist2.flatten(1).amax(dim=-1)[:, None, None]  # (B, 1, 1)
    delta2 = torch.where(denser, dist2, dist2_max).amin(dim=-1)  # (B, N), delta squared

    # Centres: the M largest rho * delta, ranked in log space (log delta = log(delta^2) / 2);
    # log(0) = -inf for duplicate tokens is fine. A stable sort breaks score ties by the lower
    # token index, so the result is deterministic.
    log_score = log_rho + 0.5 * torch.log(delta2)  # (B, N)
    order = torch.sort(log_score, dim=-1, descending=True, stable=True).indices
    centers = order[:, :M]  # (B, M): cluster m is the m-th best centre

    # Assign each token to its nearest centre (argmin picks the lower cluster id on ties), then force
    # every centre into its own cluster, which a distance tie with another centre could break.
    center_dist2 = dist2.gather(1, centers[:, :, None].expand(B, M, N))  # (B, M, N)
    ids = center_dist2.argmin(dim=1)  # (B, N)
    ids.scatter_(1, centers, torch.arange(M, device=x.device).expand(B, M))
    return ids, centers


def cluster_dpc_knn(x: Tensor, num_clusters: int, k: int = 5) -> Tensor:
    """Cluster tokens by DPC-KNN (TCFormer's ``cluster_dpc_knn``), without gradient.

    Args:
        x: (B, N, C) tokens, N >= 1.
        num_clusters: M >= 1. With M >= N every token becomes its own centre; the ids are then a
            permutation of range(N) (ranked by score) and ids >= N are never used.
        k: Neighbours for the local density (TCFormer: 5), clamped to N.

    Returns:
        (B, N) long cluster ids in [0, min(M, N)). Cluster m is the centre with the m-th largest
        score rho * delta, so the labelling is deterministic; every one of the min(M, N) ids is used.

    Raises:
        ValueError: if N == 0, num_clusters < 1, k < 1 or x is not 3-D.
    """
    return _dpc_knn(x, num_clusters, k)[0]


def dpc_knn_centers(x: Tensor, num_clusters: int, k: int = 5) -> tuple[Tensor, Tensor]:
    """Like :func:`cluster_dpc_knn`, but also return the centre token of every cluster.

    Args:
        x: (B, N, C) tokens, N >= 1.
        num_clusters: M >= 1 (clamped to N).
        k: Neighbours for the local density, clamped to N.

    Returns:
        ``(cluster_ids, centers)``: (B, N) long ids in [0, min(M, N)) and (B, min(M, N)) long token
        indices, ``centers[b, m]`` being the centre of cluster m (so ``cluster_ids[b, centers[b, m]]
        == m``), in descending score order.
    """
    return _dpc_knn(x, num_clusters, k)


def merge_tokens(x: Tensor, cluster_ids: Tensor, weight_logits: Tensor, num_clusters: int) -> Tensor:
    """Merge the tokens of each cluster into their softmax-weighted mean (TCFormer ``merge_tokens``).

    Within cluster c, ``merged_c = sum_{i in c} softmax_c(weight_logits)_i * x_i``. TCFormer writes
    the weights as ``exp(s_i) / sum_j exp(s_j)``; we subtract the per-cluster max first, which leaves
    the weights unchanged and keeps exp from overflowing. Gradients reach ``x`` and
    ``weight_logits``; ``cluster_ids`` is a hard (integer) input.

    Args:
        x: (B, N, C) tokens.
        cluster_ids: (B, N) long cluster ids in [0, M).
        weight_logits: (B, N) or (B, N, 1) unnormalised log-weights, e.g. a learned Linear(LN(x)).
        num_clusters: M >= 1.

    Returns:
        (B, M, C) merged tokens in x's dtype; an empty cluster gives a zero token.
    """
    if x.ndim != 3:
        raise ValueError(f"x must be (B, N, C), got shape {tuple(x.shape)}")
    B, N, C = x.shape
    M = num_clusters
    if M < 1:
        raise ValueError(f"num_clusters must be >= 1, got {M}")
    if weight_logits.ndim == 3 and weight_logits.shape[-1] == 1:
        weight_logits = weight_logits.squeeze(-1)
    if cluster_ids.shape != (B, N) or weight_logits.shape != (B, N):
        raise ValueError(
            f"cluster_ids {tuple(cluster_ids.shape)} and weight_logits {tuple(weight_logits.shape)} "
            f"must be (B, N) = {(B, N)}"
        )
    _check_ids(cluster_ids, M)

    # The weights, their exp and sums run in float32 at least, whatever autocast made of the logits:
    # in bf16 (8 bits of mantissa) a softmax over a cluster is visibly off. The output is x's dtype.
    work = torch.promote_types(torch.promote_types(x.dtype, weight_logits.dtype), torch.float32)
    # One flat index over (B*M) clusters, as in TCFormer, so a single scatter serves the batch.
    offset = torch.arange(B, device=x.device)[:, None] * M
    flat = (cluster_ids.long() + offset).reshape(-1)  # (B*N,)
    logits = weight_logits.reshape(-1).to(work)  # (B*N,)
    # The max is a constant shift of each cluster's softmax, so it needs no gradient.
    cmax = torch.full((B * M,), -math.inf, dtype=work, device=x.device)
    cmax = cmax.scatter_reduce(0, flat, logits.detach(), reduce="amax", include_self=True)
    w = torch.exp(logits - cmax[flat])  # (B*N,), the largest member of each cluster has w == 1
    denom = torch.zeros(B * M, dtype=work, device=x.device).index_add(0, flat, w)  # >= 1 if non-empty
    norm = w / denom[flat]  # (B*N,) softmax weights within each cluster
    merged = torch.zeros(B * M, C, dtype=work, device=x.device)
    merged = merged.index_add(0, flat, x.reshape(B * N, C).to(work) * norm[:, None])  # (B*M, C)
    return merged.reshape(B, M, C).to(x.dtype)


def _check_ids(cluster_ids: Tensor, num_clusters: int) -> None:
    """Out-of-range ids would silently land in a neighbouring sample's cluster: reject them.

    On the CPU the check is a plain ValueError. On an accelerator reading the ids would make the
    host wait for the device, so the check is an asynchronous device assert instead (it fails the
    run at the next sync, with the message below); under torch.compile it is left out (it would
    break the graph, and the ids come from ``cluster_dpc_knn``, in range by construction).
    """
    if cluster_ids.numel() == 0 or torch.compiler.is_compiling():
        return
    ok = (cluster_ids.min() >= 0) & (cluster_ids.max() < num_clusters)
    if cluster_ids.device.type == "cpu":
        if not bool(ok):
            raise ValueError(f"cluster_ids must lie in [0, {num_clusters})")
    else:
        torch._assert_async(ok, f"cluster_ids must lie in [0, {num_clusters})")


def unmerge_tokens(merged: Tensor, cluster_ids: Tensor) -> Tensor:
    """Broadcast each merged token back to the positions of its members (inverse of the merge layout).

    Args:
        merged: (B, M, C) one token per cluster.
        cluster_ids: (B, N) long ids in [0, M).

    Returns:
        (B, N, C) where position i holds ``merged[b, cluster_ids[b, i]]``; gradient flows to merged.
    """
    if merged.ndim != 3 or cluster_ids.ndim != 2 or cluster_ids.shape[0] != merged.shape[0]:
        raise ValueError(
            f"expected merged (B, M, C) and cluster_ids (B, N), got {tuple(merged.shape)} "
            f"and {tuple(cluster_ids.shape)}"
        )
    B, N = cluster_ids.shape
    C = merged.shape[-1]
    return merged.gather(1, cluster_ids.long()[:, :, None].expand(B, N, C))
