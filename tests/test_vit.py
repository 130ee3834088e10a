"""Tests for the ViT backbone (cmpose.models.vit): token grid, ViTPose names, stochastic depth,
gradient checkpointing and the explicit-attention path that TCIS reads."""

from __future__ import annotations

import pytest
import torch

from cmpose.models.vit import Attention, Block, ViT, drop_path

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _vit(**kw) -> ViT:
    args = {"img_size": (64, 48), "embed_dim": 32, "depth": 2, "num_heads": 2}
    args.update(kw)
    return ViT(**args)


def _images(b: int, h: int = 64, w: int = 48, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_token_grid_matches_vitpose_padding2_formula() -> None:
    """256x192, patch 16, padding 2: (256 + 4 - 16) // 16 + 1 = 16 rows, (192 + 4 - 16) // 16 + 1 = 12
    columns -> N = 192, with a base-shaped (patch 16, padding 2, no stem) but narrow model."""
    torch.manual_seed(0)
    vit = ViT(img_size=(256, 192), patch_size=16, patch_padding=2, embed_dim=32, depth=1, num_heads=2).eval()
    proj = vit.patch_embed.proj
    assert (proj.kernel_size, proj.stride, proj.padding) == ((16, 16), (16, 16), (2, 2))
    assert vit.patch_embed.stem is None
    assert vit.grid == (16, 12) and vit.num_tokens == 192
    with torch.no_grad():
        out = vit(_images(2, 256, 192))
    assert out.shape == (2, 192, 32)
    assert vit.pos_embed.shape == (1, 192, 32)


@pytest.mark.parametrize(
    ("stem", "padding", "grid"),
    [(0, 2, (4, 3)), (8, 2, (4, 3)), (0, 0, (4, 3))],
)
def test_tiny_grids(stem: int, padding: int, grid: tuple[int, int]) -> None:
    """64x48 -> 4x3 tokens with the plain projection (padding 2 or 0) and with the conv stem."""
    torch.manual_seed(0)
    vit = _vit(stem_channels=stem, patch_padding=padding).eval()
    assert vit.grid == grid
    with torch.no_grad():
        out = vit(_images(3))
    assert out.shape == (3, grid[0] * grid[1], 32)
    assert torch.isfinite(out).all()


def test_stem_grid_for_sizes_not_divisible_by_16() -> None:
    """The stem's grid bookkeeping agrees with the actual conv output for an odd-sized input."""
    torch.manual_seed(0)
    vit = _vit(img_size=(70, 50), stem_channels=8).eval()
    with torch.no_grad():
        out = vit(_images(1, 70, 50))
    assert out.shape[1] == vit.grid[0] * vit.grid[1] == vit.num_tokens


def test_state_dict_uses_vitpose_names() -> None:
    vit = _vit(depth=2)
    keys = set(vit.state_dict())
    expected = {
        "patch_embed.proj.weight",
        "patch_embed.proj.bias",
        "pos_embed",
        "last_norm.weight",
        "last_norm.bias",
    }
    for i in range(2):
        for sub in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1", "mlp.fc2"):
            expected |= {f"blocks.{i}.{sub}.weight", f"blocks.{i}.{sub}.bias"}
    assert keys == expected
    sd = vit.state_dict()
    assert sd["blocks.0.attn.qkv.weight"].shape == (96, 32)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (128, 32)
    assert sd["blocks.0.mlp.fc2.weight"].shape == (32, 128)
    assert sd["patch_embed.proj.weight"].shape == (32, 3, 16, 16)


def test_stem_keys_live_under_patch_embed() -> None:
    keys = set(_vit(stem_channels=8).state_dict())
    assert {"patch_embed.stem.0.weight", "patch_embed.stem.3.weight", "patch_embed.proj.weight"} <= keys
    assert all(k.startswith(("patch_embed.", "pos_embed", "blocks.", "last_norm.")) for k in keys)


def test_drop_path_function() -> None:
    x = torch.ones(1000, 4, 3)
    assert torch.equal(drop_path(x, 0.5, training=False), x)
    assert torch.equal(drop_path(x, 0.0, training=True), x)
    torch.manual_seed(0)
    y = drop_path(x, 0.25, training=True)
    per_sample = y.flatten(1)
    # Each sample is either dropped entirely or kept and rescaled by 1 / keep.
    assert ((per_sample == 0).all(1) | (per_sample == 1 / 0.75).all(1)).all()
    dropped = (per_sample == 0).all(1).float().mean().item()
    assert abs(dropped - 0.25) < 0.05
    assert abs(y.mean().item() - 1.0) < 0.1  # unbiased in expectation


def test_stochastic_depth_off_in_eval() -> None:
    torch.manual_seed(0)
    vit = _vit(drop_path_rate=0.5, depth=3)
    assert vit.blocks[0].drop_path.prob == 0.0 and vit.blocks[-1].drop_path.prob == pytest.approx(0.5)
    x = _images(4)
    vit.eval()
    with torch.no_grad():
        a, b = vit(x), vit(x)
        for blk in vit.blocks:
            blk.drop_path.prob = 0.0
        ref = vit(x)
    assert torch.equal(a, b)
    assert torch.equal(a, ref)
    # In training the same model is stochastic (so the eval equality above is not vacuous).
    for blk, p in zip(vit.blocks, torch.linspace(0, 0.5, 3).tolist(), strict=True):
        blk.drop_path.prob = p
    vit.train()
    torch.manual_seed(1)
    with torch.no_grad():
        c, d = vit(x), vit(x)
    assert not torch.equal(c, d)


@pytest.mark.parametrize("stem", [0, 8])
def test_grad_checkpointing_same_outputs_and_grads(stem: int) -> None:
    torch.manual_seed(0)
    plain = _vit(stem_channels=stem, drop_path_rate=0.2).train()
    ckpt = _vit(stem_channels=stem, drop_path_rate=0.2, grad_checkpointing=True).train()
    ckpt.load_state_dict(plain.state_dict())
    x = _images(4, seed=3)
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(123)  # same drop-path draws
        out = model(x)
        (out * torch.linspace(-1, 1, out.shape[-1])).pow(2).sum().backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters()}
        results.append((out.detach(), grads))
    (out_a, grads_a), (out_b, grads_b) = results
    assert torch.allclose(out_a, out_b, atol=1e-6, rtol=0)
    assert grads_a.keys() == grads_b.keys()
    for name in grads_a:
        assert torch.allclose(grads_a[name], grads_b[name], atol=1e-6, rtol=1e-5), name


def test_grad_checkpointing_inactive_without_grad() -> None:
    """Under no_grad (or in eval) the checkpointed model is just the plain model."""
    torch.manual_seed(0)
    vit = _vit(grad_checkpointing=True).eval()
    x = _images(2)
    with torch.no_grad():
        a = vit(x)
    vit.grad_checkpointing = False
    with torch.no_grad():
        b = vit(x)
    assert torch.equal(a, b)


def test_attention_rows_do_not_change_the_output() -> None:
    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(3, 7, 32, generator=torch.Generator().manual_seed(1))
    fast, none = attn(x)
    slow, weights = attn(x, attn_rows=7)
    assert none is None
    assert weights.shape == (3, 4, 7, 7) and weights.dtype == torch.float32
    _, first = attn(x, attn_rows=2)
    assert torch.allclose(first, weights[:, :, :2], atol=1e-6)
    assert torch.allclose(fast, slow, atol=1e-6, rtol=1e-5)
    assert (weights >= 0).all()
    assert torch.allclose(weights.sum(-1), torch.ones(3, 4, 7), atol=1e-6)


def test_attention_weights_reproduce_output() -> None:
    """The returned weights are the ones actually used: out = proj(concat_heads(A @ v))."""
    torch.manual_seed(0)
    attn = Attention(16, 2)
    x = torch.randn(2, 5, 16)
    out, weights = attn(x, attn_rows=5)
    v = attn.qkv(x).reshape(2, 5, 3, 2, 8)[:, :, 2].transpose(1, 2)  # (B, heads, L, 8)
    manual = attn.proj((weights @ v).transpose(1, 2).reshape(2, 5, 16))
    assert torch.allclose(out, manual, atol=1e-6)


def test_attention_rejects_indivisible_heads() -> None:
    with pytest.raises(ValueError, match="divisible"):
        Attention(30, 4)


def test_block_returns_attention_only_on_request() -> None:
    torch.manual_seed(0)
    blk = Block(16, 2).eval()
    x = torch.randn(2, 5, 16)
    y1, a1 = blk(x)
    y2, a2 = blk(x, attn_rows=5)
    assert a1 is None and a2.shape == (2, 2, 5, 5)
    assert torch.allclose(y1, y2, atol=1e-6)


def test_cpu_bf16_training_attention_matches_sdpa(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain-product path that CPU bf16 training takes (SDPA's CPU bf16 backward is slow)
    computes the same attention, forward and gradients, as SDPA, to bf16 precision."""
    from cmpose.models import vit as vit_module

    torch.manual_seed(0)
    attn = Attention(32, 4)
    x = torch.randn(4, 40, 32, generator=torch.Generator().manual_seed(2))
    results = []
    for use_math in (True, False):
        monkeypatch.setattr(vit_module, "CPU_BF16_MATH", use_math)
        attn.zero_grad()
        xi = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out, _ = attn(xi)
        out.float().square().sum().backward()
        results.append((out.float(), xi.grad.clone(), attn.qkv.weight.grad.clone()))
    (o1, gx1, gw1), (o2, gx2, gw2) = results
    assert o1.abs().max() > 0.1
    torch.testing.assert_close(o1, o2, atol=2e-2, rtol=2e-2)
    for a, b in ((gx1, gx2), (gw1, gw2)):
        assert (a - b).norm() / b.norm() < 2e-2
