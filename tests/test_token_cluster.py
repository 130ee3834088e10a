"""Property tests for DPC-KNN clustering and weighted merging (cmpose.models.token_cluster)."""

from __future__ import annotations

import pytest
import torch

from cmpose.models.token_cluster import (
    cluster_count,
    cluster_dpc_knn,
    dpc_knn_centers,
    merge_tokens,
    pairwise_sq_dist,
    unmerge_tokens,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _canonical(ids: torch.Tensor) -> list[int]:
    """Relabel a (N,) id vector by order of first occurrence, so equal partitions compare equal."""
    seen: dict[int, int] = {}
    return [seen.setdefault(int(i), len(seen)) for i in ids]


def _blobs(seed: int, blobs: int = 4, per_blob: int = 10, C: int = 16) -> tuple[torch.Tensor, list[int]]:
    g = _gen(seed)
    centres = torch.randn(blobs, C, generator=g, dtype=torch.float64) * 5.0
    labels = torch.arange(blobs).repeat_interleave(per_blob)[torch.randperm(blobs * per_blob, generator=g)]
    x = centres[labels] + 0.05 * torch.randn(blobs * per_blob, C, generator=g, dtype=torch.float64)
    return x, _canonical(labels)


def test_centres_own_cluster_and_nearest_assignment() -> None:
    x = torch.randn(3, 20, 8, generator=_gen(1), dtype=torch.float64)
    ids, centers = dpc_knn_centers(x, num_clusters=5)
    assert ids.dtype == torch.long and ids.shape == (3, 20) and centers.shape == (3, 5)
    assert torch.equal(ids.gather(1, centers), torch.arange(5).expand(3, 5))
    for b in range(3):
        # Brute-force Euclidean distance (the 1/sqrt(C) scale does not change the argmin).
        d = ((x[b, :, None, :] - x[b, None, :, :]) ** 2).sum(-1).sqrt()  # (N, N)
        to_centres = d[:, centers[b]]  # (N, M)
        own = to_centres.gather(1, ids[b][:, None]).squeeze(1)
        assert torch.allclose(own, to_centres.min(dim=1).values, atol=1e-12)


@pytest.mark.parametrize("M", [1, 2, 7, 19, 20])
def test_all_ids_used_when_m_le_n(M: int) -> None:
    ids = cluster_dpc_knn(torch.randn(2, 20, 4, generator=_gen(2)), num_clusters=M)
    for b in range(2):
        assert sorted(ids[b].unique().tolist()) == list(range(M))


@pytest.mark.parametrize("M", [6, 9])
def test_m_ge_n_gives_singletons(M: int) -> None:
    ids = cluster_dpc_knn(torch.randn(2, 6, 4, generator=_gen(3)), num_clusters=M)
    for b in range(2):
        assert sorted(ids[b].tolist()) == list(range(6))


def test_invalid_and_degenerate_inputs() -> None:
    with pytest.raises(ValueError, match="N == 0"):
        cluster_dpc_knn(torch.zeros(2, 0, 4), num_clusters=1)
    with pytest.raises(ValueError):
        cluster_dpc_knn(torch.zeros(2, 5, 4), num_clusters=0)
    # k larger than N is clamped, not an error.
    assert cluster_dpc_knn(torch.randn(1, 3, 4, generator=_gen(4)), num_clusters=2, k=50).shape == (1, 3)
    # Identical tokens: every score ties; the stable order must still use all ids, reproducibly.
    same = torch.ones(2, 8, 4)
    ids_a, centers_a = dpc_knn_centers(same, num_clusters=3)
    ids_b, _ = dpc_knn_centers(same, num_clusters=3)
    assert torch.equal(ids_a, ids_b)
    assert torch.equal(centers_a, torch.arange(3).expand(2, 3))
    assert sorted(ids_a[0].unique().tolist()) == [0, 1, 2]


def test_clustering_runs_without_grad() -> None:
    x = torch.randn(1, 10, 4, generator=_gen(5), requires_grad=True)
    ids, centers = dpc_knn_centers(x, num_clusters=3)
    assert not ids.requires_grad and not centers.requires_grad


def test_partition_invariant_to_token_permutation() -> None:
    x = torch.randn(2, 30, 8, generator=_gen(6), dtype=torch.float64)
    perm = torch.randperm(30, generator=_gen(7))
    ids = cluster_dpc_knn(x, num_clusters=6)
    ids_perm = cluster_dpc_knn(x[:, perm], num_clusters=6)
    for b in range(2):
        assert _canonical(ids[b, perm]) == _canonical(ids_perm[b])


def test_gaussian_blobs_recovered_exactly() -> None:
    samples = [_blobs(seed) for seed in (10, 11, 12)]
    x = torch.stack([s[0] for s in samples])  # (3, 40, 16), a different layout per sample
    ids = cluster_dpc_knn(x, num_clusters=4)
    for b, (_, truth) in enumerate(samples):
        assert _canonical(ids[b]) == truth


def test_batch_elements_independent() -> None:
    x = torch.randn(4, 15, 6, generator=_gen(8))
    logits = torch.randn(4, 15, generator=_gen(9))
    ids = cluster_dpc_knn(x, num_clusters=4)
    merged = merge_tokens(x, ids, logits, 4)
    for b in range(4):
        alone = cluster_dpc_knn(x[b : b + 1], num_clusters=4)
        assert torch.equal(alone[0], ids[b])
        assert torch.allclose(merge_tokens(x[b : b + 1], alone, logits[b : b + 1], 4)[0], merged[b])


def test_merge_weights_are_softmax_per_cluster() -> None:
    B, N, M = 2, 9, 4
    ids = torch.tensor([[0, 1, 0, 2, 1, 0, 2, 2, 1], [3, 3, 0, 1, 1, 1, 3, 0, 0]])
    logits = torch.randn(B, N, 1, generator=_gen(10), dtype=torch.float64) * 3
    eye = torch.eye(N, dtype=torch.float64).expand(B, N, N)  # merged row m = weights of cluster m
    w = merge_tokens(eye, ids, logits, M)  # (B, M, N)
    for b in range(B):
        for m in range(M):
            members = ids[b] == m
            if not members.any():  # cluster 2 of sample 1 is empty -> zero token
                assert torch.equal(w[b, m], torch.zeros(N, dtype=torch.float64))
                continue
            expected = torch.zeros(N, dtype=torch.float64)
            expected[members] = torch.softmax(logits[b, members, 0], dim=0)
            assert torch.allclose(w[b, m], expected, atol=1e-12)
            assert torch.isclose(w[b, m].sum(), torch.tensor(1.0, dtype=torch.float64))


def test_singleton_cluster_is_exact_and_large_logits_are_stable() -> None:
    x = torch.randn(1, 5, 7, generator=_gen(11))
    ids = torch.tensor([[0, 1, 1, 2, 1]])
    logits = torch.tensor([[1000.0, 900.0, -900.0, -1000.0, 5.0]])  # exp would overflow unshifted
    merged = merge_tokens(x, ids, logits, 3)
    assert torch.isfinite(merged).all()
    assert torch.equal(merged[0, 0], x[0, 0]) and torch.equal(merged[0, 2], x[0, 3])
    assert torch.allclose(merged[0, 1], x[0, 1])  # token 1 dominates its cluster


def test_merge_equivariant_to_permutation() -> None:
    x = torch.randn(2, 12, 5, generator=_gen(12), dtype=torch.float64)
    logits = torch.randn(2, 12, generator=_gen(13), dtype=torch.float64)
    ids = torch.randint(0, 4, (2, 12), generator=_gen(14))
    perm = torch.randperm(12, generator=_gen(15))
    merged = merge_tokens(x, ids, logits, 4)
    assert torch.allclose(merge_tokens(x[:, perm], ids[:, perm], logits[:, perm], 4), merged, atol=1e-12)


def test_unmerge_of_merge_restores_constant_clusters() -> None:
    ids = cluster_dpc_knn(torch.randn(2, 16, 4, generator=_gen(16)), num_clusters=5)
    values = torch.randn(2, 5, 3, generator=_gen(17), dtype=torch.float64)
    x = unmerge_tokens(values, ids)  # constant within each cluster
    assert torch.equal(x[0, 3], values[0, ids[0, 3]])
    merged = merge_tokens(x, ids, torch.randn(2, 16, generator=_gen(18), dtype=torch.float64), 5)
    assert torch.allclose(merged, values, atol=1e-12)
    assert torch.allclose(unmerge_tokens(merged, ids), x, atol=1e-12)


def test_merge_gradcheck() -> None:
    x = torch.randn(2, 6, 3, generator=_gen(19), dtype=torch.float64, requires_grad=True)
    logits = torch.randn(2, 6, generator=_gen(20), dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 1, 0, 2, 2, 2], [1, 1, 0, 0, 1, 0]])  # sample 1 leaves cluster 2 empty
    assert torch.autograd.gradcheck(lambda a, w: merge_tokens(a, ids, w, 3), (x, logits))
    merged = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda m: unmerge_tokens(m, ids), (merged,))


def test_merge_rejects_bad_ids() -> None:
    x = torch.randn(1, 4, 2)
    with pytest.raises(ValueError):
        merge_tokens(x, torch.tensor([[0, 1, 2, 3]]), torch.zeros(1, 4), 3)
    with pytest.raises(ValueError):
        merge_tokens(x, torch.tensor([[0, 1, 2]]), torch.zeros(1, 4), 3)


def test_cluster_count() -> None:
    assert cluster_count(288, 0.25) == 72
    assert cluster_count(10, 0.7) == 7  # 0.7 * 10 is 7.000000000000001 in floating point
    assert cluster_count(3, 0.01) == 1
    assert cluster_count(5, 1.0) == 5
    assert cluster_count(0, 0.25) == 0
    with pytest.raises(ValueError):
        cluster_count(5, 0.0)


# --- the matmul distances and the float32 merge ---------------------------------------------------


def test_pairwise_sq_dist_matches_the_direct_form() -> None:
    # Realistic tokens: a large common offset (ViT features are far from the origin), which the
    # centring keeps from cancelling the small distances.
    x = torch.randn(2, 50, 64, generator=_gen(21)) + 20.0
    x[:, 7] = x[:, 3]  # a duplicate token
    d2 = pairwise_sq_dist(x)
    assert d2.dtype == torch.float32 and d2.shape == (2, 50, 50)
    exact = ((x.double()[:, :, None] - x.double()[:, None]) ** 2).sum(-1)
    torch.testing.assert_close(d2.double(), exact, rtol=1e-5, atol=1e-3)
    assert torch.equal(d2, d2.transpose(1, 2))
    assert torch.equal(d2.diagonal(dim1=1, dim2=2), torch.zeros(2, 50))
    assert (d2[:, 3, 7] == 0).all()
    assert (d2 >= 0).all()


def test_pairwise_sq_dist_ignores_autocast() -> None:
    x = torch.randn(1, 20, 16, generator=_gen(22))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d2 = pairwise_sq_dist(x)
    assert d2.dtype == torch.float32
    torch.testing.assert_close(d2, pairwise_sq_dist(x))


def test_duplicate_tokens_share_a_cluster_and_are_never_two_centres() -> None:
    x = torch.randn(2, 40, 32, generator=_gen(23)) + 5.0
    x[:, 20:] = x[:, :20]  # every token twice
    ids, centers = dpc_knn_centers(x, num_clusters=8)
    assert torch.equal(ids[:, 20:], ids[:, :20])
    for b in range(2):
        assert len(set((centers[b] % 20).tolist())) == 8  # no centre is another's copy


def test_float32_and_float64_tokens_cluster_alike() -> None:
    x = torch.stack([_blobs(seed)[0] for seed in (30, 31)])  # (2, 40, 16) float64
    assert torch.equal(cluster_dpc_knn(x.float(), 4), cluster_dpc_knn(x, 4))


def test_merge_weights_run_in_float32_under_bf16() -> None:
    """bf16 tokens and logits (what autocast hands over): the softmax, its exp and sums run in
    float32, so the result is the float32 merge of the same values, rounded once at the end."""
    x = torch.randn(2, 30, 8, generator=_gen(24)).bfloat16()
    logits = (torch.randn(2, 30, generator=_gen(25)) * 4).bfloat16()
    ids = torch.randint(0, 3, (2, 30), generator=_gen(26))
    merged = merge_tokens(x, ids, logits, 3)
    assert merged.dtype == torch.bfloat16
    assert torch.equal(merged, merge_tokens(x.float(), ids, logits.float(), 3).bfloat16())
