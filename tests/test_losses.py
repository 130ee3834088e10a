"""Tests for the losses (cmpose.models.losses): heatmap MSE, softmax cross-entropy, the softmax
heatmap scale, the per-sample token regression loss."""

from __future__ import annotations

import math

import pytest
import torch

from cmpose.models.losses import (
    heatmap_loss,
    heatmap_mse,
    heatmap_output,
    heatmap_softmax_ce,
    masked_token_loss,
    normalized_tokens,
    softmax_heatmaps,
)


def _gaussian(h: int, w: int, cx: float, cy: float, sigma: float = 2.0) -> torch.Tensor:
    """Unit-peak Gaussian (h, w) centred at pixel (cx, cy)."""
    yy, xx = torch.meshgrid(
        torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64), indexing="ij"
    )
    return torch.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * sigma**2))


def _targets(b: int = 2, j: int = 3, h: int = 16, w: int = 12, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    cx = torch.randint(2, w - 2, (b, j), generator=g)
    cy = torch.randint(2, h - 2, (b, j), generator=g)
    return torch.stack(
        [torch.stack([_gaussian(h, w, float(cx[i, k]), float(cy[i, k])) for k in range(j)]) for i in range(b)]
    ).float()


def test_heatmap_mse_hand_case() -> None:
    pred = torch.tensor([[[[1.0, 2.0]], [[3.0, 4.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[[0.0, 0.0]], [[1.0, 1.0]]]])
    weight = torch.tensor([[1.0, 0.5]])
    # joint 0: (1, 2)^2 = 1, 4; joint 1: (0.5 * (2, 3))^2 = 1, 2.25 -> mean 8.25 / 4 (no HRNet 0.5)
    assert heatmap_mse(pred, target, weight).item() == pytest.approx(8.25 / 4)


def test_heatmap_mse_ignores_weight_zero_joints() -> None:
    t = _targets()
    pred = t + 0.1
    w = torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 0.0]])
    base = heatmap_mse(pred, t, w)
    pred2 = pred.clone()
    pred2[0, 1] += 5.0
    pred2[1, 2] -= 3.0
    assert heatmap_mse(pred2, t, w).item() == pytest.approx(base.item())
    assert heatmap_mse(t, t, w).item() == 0.0


def test_heatmap_loss_dispatch() -> None:
    t = _targets()
    pred = t * 0.5
    w = torch.ones(2, 3)
    assert torch.equal(heatmap_loss("mse", pred, t, w), heatmap_mse(pred, t, w))
    assert torch.equal(heatmap_loss("softmax_ce", pred, t, w), heatmap_softmax_ce(pred, t, w))
    with pytest.raises(ValueError, match="unknown heatmap loss"):
        heatmap_loss("l1", pred, t, w)


def test_softmax_ce_minimised_by_log_target() -> None:
    """Among logits = a * log(t) + c + eps * noise, the minimum is a = 1, noise = 0 (any constant c),
    and the minimum is the entropy of the normalised target."""
    t = _targets()
    w = torch.ones(2, 3)
    log_t = torch.log(t.clamp_min(1e-30))
    best = heatmap_softmax_ce(log_t, t, w).item()
    p = (t / t.sum((-2, -1), keepdim=True)).flatten(2)
    entropy = -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean().item()
    assert best == pytest.approx(entropy, rel=1e-4)
    assert heatmap_softmax_ce(log_t + 7.0, t, w).item() == pytest.approx(best, rel=1e-5)
    for a in (0.5, 0.8, 0.95, 1.05, 1.25, 2.0):
        assert heatmap_softmax_ce(a * log_t, t, w).item() > best
    g = torch.Generator().manual_seed(0)
    for eps in (1e-2, 1e-1, 1.0):
        noisy = log_t + eps * torch.randn(t.shape, generator=g)
        assert heatmap_softmax_ce(noisy, t, w).item() > best


def test_softmax_ce_ignores_weight_zero_joints_and_averages_annotated() -> None:
    t = _targets()
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(t.shape, generator=g)
    w = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    base = heatmap_softmax_ce(logits, t, w).item()
    changed = logits.clone()
    changed[0, 1] = torch.randn(changed[0, 1].shape, generator=g) * 10
    changed[1, 0] = 0.0
    assert heatmap_softmax_ce(changed, t, w).item() == pytest.approx(base, rel=1e-6)
    # The mean over the 4 annotated joints, each computed alone.
    singles = [
        heatmap_softmax_ce(logits[b : b + 1, j : j + 1], t[b : b + 1, j : j + 1], torch.ones(1, 1)).item()
        for b, j in ((0, 0), (0, 2), (1, 1), (1, 2))
    ]
    assert base == pytest.approx(sum(singles) / 4, rel=1e-6)
    # No annotated joint at all: zero, not NaN.
    assert heatmap_softmax_ce(logits, t, torch.zeros(2, 3)).item() == 0.0


def test_softmax_heatmaps_of_log_gaussian_peak_about_one() -> None:
    gauss = _gaussian(64, 48, 20.0, 30.0, sigma=2.0).float()
    logits = torch.log(gauss.clamp_min(1e-30))[None, None]
    hm = softmax_heatmaps(logits, sigma=2.0)
    assert hm.shape == (1, 1, 64, 48)
    assert hm.max().item() == pytest.approx(1.0, rel=0.05)
    assert hm.flatten().argmax().item() == 30 * 48 + 20
    # Sum is 2 pi sigma^2 (a softmax times that constant).
    assert hm.sum().item() == pytest.approx(2 * math.pi * 4, rel=1e-5)


def test_heatmap_output_scales() -> None:
    logits = torch.randn(2, 3, 8, 6, generator=torch.Generator().manual_seed(0))
    assert torch.equal(heatmap_output("mse", logits, 2.0), logits)
    assert torch.allclose(heatmap_output("softmax_ce", logits, 2.0), softmax_heatmaps(logits, 2.0))


def test_masked_token_loss_averages_per_sample() -> None:
    """Sample 0 has one masked token with squared error 4; sample 1 has three masked tokens with squared
    error 1. Per-sample means are 4 and 1, so the loss is 2.5 (a pooled mean would give 7 / 4)."""
    pred = torch.zeros(2, 4, 1)
    target = torch.tensor([[[2.0], [9.0], [9.0], [9.0]], [[1.0], [1.0], [1.0], [9.0]]])
    mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    assert masked_token_loss(pred, target, mask).item() == pytest.approx(2.5)


def test_masked_token_loss_mean_over_channels() -> None:
    pred = torch.zeros(1, 2, 4)
    target = torch.tensor([[[1.0, 1.0, 3.0, 1.0], [5.0, 5.0, 5.0, 5.0]]])
    mask = torch.tensor([[True, False]])
    assert masked_token_loss(pred, target, mask).item() == pytest.approx((1 + 1 + 9 + 1) / 4)


def test_normalized_tokens_standardise_each_token() -> None:
    x = torch.randn(2, 5, 8, generator=torch.Generator().manual_seed(0)) * 7.0 + 3.0
    y = normalized_tokens(x.to(torch.bfloat16))
    assert y.dtype == torch.float32
    assert torch.allclose(y.mean(-1), torch.zeros(2, 5), atol=1e-2)
    assert torch.allclose(y.var(-1, unbiased=False), torch.ones(2, 5), atol=2e-2)
    # Invariant to each token's scale and offset: one loss scale for every backbone.
    assert torch.allclose(normalized_tokens(x), normalized_tokens(10 * x - 4), atol=1e-5)
    # Predicting zeros costs exactly the per-channel variance, 1.
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert masked_token_loss(torch.zeros(2, 5, 8), normalized_tokens(x), mask).item() == pytest.approx(
        1, abs=1e-4
    )
