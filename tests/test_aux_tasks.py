"""Tests for the stage-1 auxiliary tasks (cmpose.models.aux_tasks): random token masks, the masked
branch and the denoising branch."""

from __future__ import annotations

import pytest
import torch

from cmpose.models.aux_tasks import DenoisingBranch, MaskedTokenBranch, TokenDecoder, random_token_mask


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("length", "ratio"), [(36, 0.3), (10, 0.3), (192 * 3, 0.3), (7, 0.5), (12, 0.01)])
def test_random_token_mask_exact_count(length: int, ratio: float) -> None:
    mask = random_token_mask(5, length, ratio, _gen(0))
    assert mask.shape == (5, length) and mask.dtype == torch.bool
    expected = max(1, round(ratio * length))
    assert mask.sum(1).tolist() == [expected] * 5


def test_random_token_mask_depends_on_seed_only() -> None:
    a = random_token_mask(4, 48, 0.3, _gen(7))
    b = random_token_mask(4, 48, 0.3, _gen(7))
    c = random_token_mask(4, 48, 0.3, _gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # Rows of one draw differ from each other too (one mask per sample, not one per batch).
    assert not all(torch.equal(a[0], a[i]) for i in range(1, 4))


def test_random_token_mask_is_uniform_over_positions() -> None:
    mask = random_token_mask(4000, 10, 0.3, _gen(1))
    freq = mask.float().mean(0)
    assert torch.allclose(freq, torch.full((10,), 0.3), atol=0.03)


def _tokens(b: int = 2, length: int = 20, c: int = 8, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, length, c, generator=_gen(seed))


def test_masked_branch_replaces_exactly_the_masked_positions() -> None:
    torch.manual_seed(0)
    branch = MaskedTokenBranch(8, 16, ratio=0.3)
    x = _tokens()
    out, mask = branch.corrupt(x, _gen(3))
    assert out.shape == x.shape
    assert mask.sum(1).tolist() == [6, 6]
    token = branch.mask_token.detach()[0, 0]
    assert torch.equal(out[mask], token.expand(int(mask.sum()), 8))
    assert torch.equal(out[~mask], x[~mask])
    # Same generator seed -> same mask.
    _, mask2 = branch.corrupt(x, _gen(3))
    assert torch.equal(mask, mask2)


def test_masked_branch_gradients() -> None:
    """Masked positions pass no gradient to the input; the mask token gets one per masked position."""
    torch.manual_seed(0)
    branch = MaskedTokenBranch(8, 16, ratio=0.3)
    x = _tokens().requires_grad_(True)
    out, mask = branch.corrupt(x, _gen(3))
    out.sum().backward()
    assert torch.equal(x.grad[mask], torch.zeros_like(x.grad[mask]))
    assert torch.equal(x.grad[~mask], torch.ones_like(x.grad[~mask]))
    assert torch.allclose(branch.mask_token.grad[0, 0], torch.full((8,), float(mask.sum())))


def test_noise_branch_leaves_clean_tokens_unchanged() -> None:
    branch = DenoisingBranch(8, 16, ratio=0.3, std=0.5)
    x = _tokens(seed=1)
    out, noised = branch.corrupt(x, _gen(4))
    assert noised.sum(1).tolist() == [6, 6]
    assert torch.equal(out[~noised], x[~noised])
    assert (out[noised] != x[noised]).all()


def test_noise_std_is_noise_std_times_token_std() -> None:
    """Statistical: per sample and channel, std(noise) / std(tokens over L) ~ sigma_n, whatever each
    channel's scale (channels here span two orders of magnitude)."""
    B, L, C, sigma_n = 4, 2000, 6, 0.5
    scale = torch.tensor([0.1, 0.5, 1.0, 3.0, 10.0, 0.02])
    x = torch.randn(B, L, C, generator=_gen(0)) * scale + torch.linspace(-5, 5, C)
    branch = DenoisingBranch(C, 16, ratio=0.3, std=sigma_n)
    out, noised = branch.corrupt(x, _gen(11))
    spread = x.std(dim=1)  # (B, C)
    for b in range(B):
        noise = (out[b] - x[b])[noised[b]]  # (600, C)
        assert noise.shape == (600, C)
        ratio = noise.std(0) / spread[b]
        # 600 samples per (sample, channel): the std estimate is within about 3 % (1 s.e.); allow 12 %.
        assert torch.allclose(ratio, torch.full((C,), sigma_n), rtol=0.12), ratio
        assert (noise.mean(0).abs() < 4 * sigma_n * spread[b] / 600**0.5).all()


def test_noise_branch_depends_on_generator() -> None:
    branch = DenoisingBranch(8, 16, ratio=0.3, std=0.5)
    x = _tokens()
    a, ma = branch.corrupt(x, _gen(5))
    b, mb = branch.corrupt(x, _gen(5))
    c, _ = branch.corrupt(x, _gen(6))
    assert torch.equal(a, b) and torch.equal(ma, mb)
    assert not torch.equal(a, c)


def test_noise_branch_passes_gradient_to_tokens() -> None:
    """The noise is a constant: d(noisy)/d(tokens) = 1 everywhere (the spread is detached)."""
    branch = DenoisingBranch(8, 16, ratio=0.3, std=0.5)
    x = _tokens().requires_grad_(True)
    out, _ = branch.corrupt(x, _gen(2))
    out.sum().backward()
    assert torch.equal(x.grad, torch.ones_like(x))


def test_token_decoder_shape() -> None:
    dec = TokenDecoder(8, 16)
    assert dec(_tokens()).shape == (2, 20, 8)
