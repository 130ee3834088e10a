"""Tests for the CM-Pose model (cmpose.models.cmpose) on tiny CPU configs: outputs, gradients,
freezing, stage-2 start, batch independence, training signal, validation, aux branches."""

from __future__ import annotations

import math

import pytest
import torch

from cmpose.models.cmpose import CMPose
from cmpose.models.config import (
    AuxConfig,
    BackboneConfig,
    EncoderConfig,
    FTEConfig,
    HeadConfig,
    LossConfig,
    ModelConfig,
)

J = 17
T = 3
IMAGE = (48, 64)  # (W, H)
HEATMAP = (12, 16)  # (W, H)
GRID = (4, 3)  # (Hp, Wp)
N = GRID[0] * GRID[1]


pytestmark = pytest.mark.usefixtures("one_torch_thread")


MODES = ["single", 1, 2]  # single-frame baseline, stage 1, stage 2


def tiny_cfg(
    stage: int = 1, *, encoder: bool = True, stem: int = 8, kind: str = "mse", aux: AuxConfig | None = None
) -> ModelConfig:
    return ModelConfig(
        stage=stage,
        num_joints=J,
        backbone=BackboneConfig(size="tiny", embed_dim=32, depth=2, num_heads=2, stem_channels=stem),
        head=HeadConfig(deconv_channels=(16, 16)),
        encoder=EncoderConfig(enabled=encoder, depth=2, num_heads=2, keypoint_head_hidden=32),
        aux=aux or AuxConfig(decoder_hidden=32),
        fte=FTEConfig(num_heads=2),
        loss=LossConfig(kind),
    )


def build(mode: str | int = 1, *, stem: int = 8, kind: str = "mse", seed: int = 0, **kw) -> CMPose:
    torch.manual_seed(seed)
    if mode == "single":
        return CMPose(tiny_cfg(1, encoder=False, stem=stem, kind=kind, **kw), IMAGE, HEATMAP, num_frames=1)
    return CMPose(tiny_cfg(int(mode), stem=stem, kind=kind, **kw), IMAGE, HEATMAP, num_frames=T)


def frames_of(mode: str | int) -> int:
    return 1 if mode == "single" else T


def make_clip(b: int, t: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 3, IMAGE[1], IMAGE[0], generator=torch.Generator().manual_seed(seed))


def make_targets(b: int, seed: int = 0, sigma: float = 2.0) -> dict[str, torch.Tensor]:
    """Unit-peak Gaussians at random interior positions, all joints annotated."""
    g = torch.Generator().manual_seed(seed)
    Wh, Hh = HEATMAP
    cx = torch.randint(2, Wh - 2, (b, J), generator=g).float()
    cy = torch.randint(2, Hh - 2, (b, J), generator=g).float()
    yy, xx = torch.meshgrid(torch.arange(Hh).float(), torch.arange(Wh).float(), indexing="ij")
    t = torch.exp(-((xx - cx[..., None, None]) ** 2 + (yy - cy[..., None, None]) ** 2) / (2 * sigma**2))
    return {"target": t, "target_weight": torch.ones(b, J)}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- outputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize("stem", [8, 0])
def test_single_frame_outputs(stem: int) -> None:
    model = build("single", stem=stem).eval()
    assert model.encoder is None and model.fte is None and model.aux_mask is None and model.aux_noise is None
    with torch.no_grad():
        out = model(make_clip(2, 1))
    assert set(out) == {"heatmaps", "coarse_heatmaps"}
    assert out["heatmaps"].shape == (2, J, HEATMAP[1], HEATMAP[0])
    assert out["heatmaps"] is out["coarse_heatmaps"]


@pytest.mark.parametrize("stem", [8, 0])
def test_stage1_outputs(stem: int) -> None:
    model = build(1, stem=stem).eval()
    assert model.grid == GRID
    with torch.no_grad():
        out = model(make_clip(2, T))
    assert set(out) == {"heatmaps", "coarse_heatmaps", "keypoint_heatmaps", "importance"}
    for key in ("heatmaps", "coarse_heatmaps", "keypoint_heatmaps"):
        assert out[key].shape == (2, J, HEATMAP[1], HEATMAP[0]), key
    imp = out["importance"]
    assert imp.shape == (2, T, *GRID)
    # Keypoint-query attention over the visual keys: non-negative, at most 1 per keypoint.
    assert (imp >= 0).all()
    total = imp.sum((1, 2, 3))
    assert ((total > 0) & (total <= J + 1e-4)).all()


@pytest.mark.parametrize("stem", [8, 0])
@pytest.mark.parametrize("keep_ratio", [0.5, 0.3])
def test_stage2_outputs_and_cluster_ids(stem: int, keep_ratio: float) -> None:
    torch.manual_seed(0)
    cfg = tiny_cfg(2, stem=stem)
    cfg.fte = FTEConfig(num_heads=2, keep_ratio=keep_ratio)
    model = CMPose(cfg, IMAGE, HEATMAP, num_frames=T).eval()
    B, L = 3, T * N
    with torch.no_grad():
        out = model(make_clip(B, T, seed=1))
    assert {
        "heatmaps",
        "coarse_heatmaps",
        "fine_heatmaps",
        "keypoint_heatmaps",
        "importance",
        "cluster_ids",
    } <= set(out)
    assert out["heatmaps"] is out["fine_heatmaps"]
    assert out["fine_heatmaps"].shape == out["coarse_heatmaps"].shape == (B, J, HEATMAP[1], HEATMAP[0])
    assert out["importance"].shape == (B, T, *GRID)
    ids = out["cluster_ids"]
    assert ids.shape == (B, T, *GRID) and ids.dtype == torch.long
    K = math.ceil(keep_ratio * L)
    M = math.ceil(0.25 * (L - K))
    flat = ids.flatten(1)
    assert out["kept_idx"].shape == (B, K)
    for b in range(B):
        kept = set(out["kept_idx"][b].tolist())
        assert len(kept) == K
        assert set(torch.nonzero(flat[b] == -1).flatten().tolist()) == kept  # -1 exactly at kept tokens
        rest = flat[b][flat[b] >= 0]
        assert rest.numel() == L - K
        assert set(rest.tolist()) == set(range(M))  # every cluster used, ids in [0, M)
        # The kept tokens are the K most important ones.
        imp = out["importance"][b].flatten()
        assert imp[list(kept)].min() >= imp[flat[b] >= 0].max()


# --- gradients and freezing ---------------------------------------------------------------------


def _backward(model: CMPose, mode: str | int, b: int = 2) -> dict[str, torch.Tensor]:
    model.train()
    out = model(make_clip(b, frames_of(mode)), make_targets(b), generator=gen(0))
    out["loss"]["total"].backward()
    return out["loss"]


@pytest.mark.parametrize("mode", ["single", 1])
def test_gradients_reach_every_trainable_parameter(mode: str | int) -> None:
    model = build(mode)
    _backward(model, mode)
    params = dict(model.named_parameters())
    assert all(p.requires_grad for p in params.values())
    missing = [n for n, p in params.items() if p.grad is None]
    assert not missing
    zero = [n for n, p in params.items() if not p.grad.abs().sum() > 0]
    assert not zero, zero


def test_stage2_gradients_and_frozen_aux_branches() -> None:
    model = build(2)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in model.named_parameters() if n.startswith(("aux_mask.", "aux_noise."))}
    assert frozen  # the branches exist (stage-1 checkpoints load strictly) ...
    _backward(model, 2)
    for name, p in model.named_parameters():
        if name in frozen:
            assert p.grad is None, name  # ... but get no gradient
        else:
            assert p.grad is not None, name
    # out_proj starts at zero, so everything inside the FTE before it gets an exactly-zero gradient
    # at the first step; out_proj itself and everything outside the FTE get a real one.
    fte_inner = [n for n in dict(model.named_parameters()) if n.startswith("fte.") and "out_proj" not in n]
    for name, p in model.named_parameters():
        if name in frozen:
            continue
        if name in fte_inner:
            assert torch.count_nonzero(p.grad) == 0, name
        else:
            assert p.grad.abs().sum() > 0, name


def test_stage2_gradients_reach_fte_once_out_proj_is_nonzero() -> None:
    model = build(2)
    torch.nn.init.normal_(model.fte.out_proj.weight, std=0.1, generator=gen(5))
    _backward(model, 2, b=3)
    # The merge-score bias shifts every logit of a cluster alike, and a softmax ignores that: its
    # gradient is zero up to round-off (a redundant parameter, as in TCFormer's score head).
    shift = "fte.merge_score.1.bias"
    grads = {n: p.grad for n, p in model.named_parameters() if p.requires_grad}
    assert grads[shift].abs().max() < 1e-9
    zero = [n for n, g in grads.items() if n != shift and not g.abs().sum() > 0]
    assert not zero, zero


def _ablation(name: str) -> CMPose:
    torch.manual_seed(0)
    cfg = tiny_cfg(2 if name.startswith("fte") else 1)
    if name == "fte_no_cluster":
        cfg.fte = FTEConfig(num_heads=2, cluster=False)
    elif name == "fte_keep_all":
        cfg.fte = FTEConfig(num_heads=2, keep_ratio=1.0)
    elif name == "no_keypoint_loss":
        cfg.encoder.keypoint_loss_weight = 0.0
    model = CMPose(cfg, IMAGE, HEATMAP, num_frames=T)
    if model.fte is not None:
        torch.nn.init.normal_(model.fte.out_proj.weight, std=0.1, generator=gen(5))
    return model


@pytest.mark.parametrize(
    "name",
    [
        "stage1_default",
        "fte_no_cluster",
        "fte_keep_all",
        "no_keypoint_loss",
    ],
)
def test_ablations_leave_no_unused_trainable_parameter(name: str) -> None:
    """Every ablation switch still gives every trainable parameter a gradient: DDP (without
    find_unused_parameters) fails at the next step otherwise."""
    model = _ablation(name) if name != "stage1_default" else build(1)
    _backward(model, 2 if name.startswith("fte") else 1)
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused, unused


def test_frozen_backbone_gets_no_gradient() -> None:
    model = build(1)
    model.backbone.requires_grad_(False)
    _backward(model, 1)
    for name, p in model.named_parameters():
        if name.startswith("backbone."):
            assert p.grad is None, name
        else:
            assert p.grad is not None, name


def test_stage2_starts_at_stage1_prediction() -> None:
    """Zero-initialised FTE out_proj: a fresh stage-2 model's fine heatmaps equal its coarse ones."""
    model = build(2)
    assert torch.count_nonzero(model.fte.out_proj.weight) == 0
    assert torch.count_nonzero(model.fte.out_proj.bias) == 0
    clip = make_clip(2, T)
    model.eval()
    with torch.no_grad():
        out = model(clip)
    assert torch.equal(out["fine_heatmaps"], out["coarse_heatmaps"])
    model.train()
    out = model(clip, make_targets(2))
    assert torch.equal(out["fine_heatmaps"], out["coarse_heatmaps"])
    # Fine and coarse losses then differ only by the coarse weight.
    loss = out["loss"]
    assert loss["pose"].item() == pytest.approx(model.cfg.fte.coarse_weight * loss["fine"].item(), rel=1e-6)


@pytest.mark.parametrize("stage", [1, 2])
def test_temporal_model_starts_at_single_frame_prediction(stage: int) -> None:
    """The encoder's visual output is residual with a zero-initialised projection: a fresh
    stage-1 (and stage-2) model holding a single-frame model's backbone and head predicts exactly
    what the single-frame model predicts on the keyframe, in eval and in training mode (the
    BatchNorms see the same tokens), so starting from ViTPose weights starts from ViTPose."""
    # ViTPose's patch projection (no conv stem): the stem's BatchNorm would see B*T frames here
    # and B frames in the single-frame model, so training-mode statistics would differ.
    single, temporal = build("single", seed=1, stem=0), build(stage, seed=2, stem=0)
    shared = {k: v for k, v in single.state_dict().items()}
    assert set(shared) <= set(temporal.state_dict())
    temporal.load_state_dict(shared, strict=False)
    assert torch.count_nonzero(temporal.encoder.out_proj.weight) == 0
    clip, targets = make_clip(2, T, seed=3), make_targets(2, seed=3)
    key = clip[:, T // 2 : T // 2 + 1]
    single.eval(), temporal.eval()
    # Equal up to float32 round-off (the keyframe slice and the contiguous crop take different
    # convolution paths).
    with torch.no_grad():
        torch.testing.assert_close(temporal(clip)["heatmaps"], single(key)["heatmaps"], rtol=1e-5, atol=1e-7)
    single.train(), temporal.train()
    a, b = single(key, targets), temporal(clip, targets, generator=gen(0))
    torch.testing.assert_close(a["heatmaps"], b["heatmaps"], rtol=1e-5, atol=1e-7)
    assert b["loss"]["pose"].item() == pytest.approx(a["loss"]["pose"].item() * (1 if stage == 1 else 0.5))


def test_stage2_loads_stage1_weights_strictly() -> None:
    """Stage 2 is initialised from stage 1: every stage-1 key exists in stage 2 with the same shape."""
    s1, s2 = build(1).state_dict(), build(2).state_dict()
    assert set(s1) <= set(s2)
    assert all(s1[k].shape == s2[k].shape for k in s1)
    assert all(k.startswith("fte.") for k in set(s2) - set(s1))


# --- determinism and batch independence ---------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_eval_is_deterministic(mode: str | int) -> None:
    model = build(mode).eval()
    clip = make_clip(3, frames_of(mode))
    with torch.no_grad():
        a, b = model(clip), model(clip)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize("stem", [8, 0])
@pytest.mark.parametrize("mode", MODES)
def test_sample_alone_equals_sample_in_batch(mode: str | int, stem: int) -> None:
    model = build(mode, stem=stem).eval()
    clip = make_clip(4, frames_of(mode), seed=2)
    with torch.no_grad():
        batch = model(clip)
        for i in (0, 2):
            alone = model(clip[i : i + 1])
            for key, value in alone.items():
                if value.dtype == torch.long:
                    assert torch.equal(value[0], batch[key][i]), key
                else:
                    assert torch.allclose(value[0], batch[key][i], atol=1e-5, rtol=0), key


@pytest.mark.parametrize("mode", MODES)
def test_encode_frames_then_forward_tokens_equals_forward(mode: str | int) -> None:
    model = build(mode)
    t = frames_of(mode)
    clip = make_clip(2, t)
    model.eval()
    with torch.no_grad():
        direct = model(clip)
        tokens = model.encode_frames(clip.flatten(0, 1))
        assert tokens.shape == (2 * t, N, 32)
        split = model.forward_tokens(tokens.view(2, t, N, 32))
    for key in direct:
        assert torch.equal(direct[key], split[key]), key
    # Training with targets and the same generator seed: the same losses.
    model.train()
    targets = make_targets(2)
    torch.manual_seed(3)
    a = model(clip, targets, generator=gen(9))["loss"]
    torch.manual_seed(3)
    tok = model.encode_frames(clip.flatten(0, 1)).view(2, t, N, 32)
    b = model.forward_tokens(tok, targets, generator=gen(9))["loss"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=1e-6, atol=0), key


# --- training signal ----------------------------------------------------------------------------


def _ce_entropy(targets: dict[str, torch.Tensor]) -> float:
    """Softmax CE cannot go below the entropy of the normalised target (test_losses)."""
    p = targets["target"].flatten(2)
    p = p / p.sum(-1, keepdim=True)
    return -(p * torch.log(p.clamp_min(1e-30))).sum(-1).mean().item()


@pytest.mark.parametrize(("kind", "ratio"), [("mse", 0.7), ("softmax_ce", 0.9)])
def test_stage1_loss_falls_on_fixed_batch(kind: str, ratio: float) -> None:
    """50 AdamW steps (lr 1e-3) on one fixed batch of 4 noise clips cut every term down.

    Softmax CE cannot go below the targets' entropy, so for it the excess over that floor is compared.
    Its bound is looser: with ViTPose's final-layer init (std 0.001) the logits start flat and Adam's
    step size limits how fast their range grows (about 0.8x after 50 steps here). The auxiliary
    terms are balanced against the pose term, so their raw values are checked.
    """
    model = build(1, kind=kind).train()
    clip, targets = make_clip(4, T, seed=4), make_targets(4, seed=4)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    losses, raw = [], []
    for step in range(50):
        out = model(clip, targets, generator=gen(step))
        loss = out["loss"]
        opt.zero_grad()
        loss["total"].backward()
        opt.step()
        losses.append({k: v.item() for k, v in loss.items()})
        raw.append({k: v.item() for k, v in out["raw_losses"].items()})
    assert all(math.isfinite(v) for d in losses + raw for v in d.values())
    floor = _ce_entropy(targets) if kind == "softmax_ce" else 0.0
    for name in ("pose", "mask_pose", "noise_pose"):
        first, last = losses[0][name], losses[-1][name]
        assert last - floor < ratio * (first - floor), (name, floor, first, last)
    assert set(raw[0]) == {"keypoint", "mask", "noise"}
    first, last = raw[0]["keypoint"], raw[-1]["keypoint"]
    assert last - floor < ratio * (first - floor), ("keypoint", floor, first, last)
    # The decoders learn to reconstruct the standardised tokens (a trivial prediction costs ~1),
    # slowly: behind a fresh head (std 0.001) the pose gradient is small, and the balance keeps
    # the reconstruction's pull on the shared encoder below it (mask: 0.81 of the start under
    # softmax CE, 0.60 under MSE here).
    for name in ("mask", "noise"):
        assert 0.5 < raw[0][name] < 2.0, raw[0]
        assert raw[-1][name] < 0.85 * raw[0][name], (name, raw[0][name], raw[-1][name])


# --- validation -----------------------------------------------------------------------------------


def test_heatmap_size_mismatch_is_explained() -> None:
    with pytest.raises(ValueError, match=r"heatmap_size \(24, 32\).*12x16"):
        CMPose(tiny_cfg(1), IMAGE, (24, 32), num_frames=T)
    with pytest.raises(ValueError, match="heatmap_size"):
        CMPose(tiny_cfg(1), IMAGE, (16, 12), num_frames=T)  # (H, W) given instead of (W, H)


def test_stage2_without_encoder_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"stage 2.*encoder"):
        CMPose(tiny_cfg(2, encoder=False), IMAGE, HEATMAP, num_frames=1)
    with pytest.raises(ValueError):
        CMPose(tiny_cfg(2, encoder=False), IMAGE, HEATMAP, num_frames=T)


def test_multiframe_without_encoder_is_rejected() -> None:
    with pytest.raises(ValueError, match="num_frames=3"):
        CMPose(tiny_cfg(1, encoder=False), IMAGE, HEATMAP, num_frames=T)


def test_wrong_clip_length_is_rejected() -> None:
    model = build(1).eval()
    with pytest.raises(ValueError, match="T=3"):
        model(make_clip(1, 2))


# --- auxiliary branches ---------------------------------------------------------------------------


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls: list[int] = []
    module.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    return calls


def test_aux_branches_run_in_training_with_targets() -> None:
    model = build(1).train()
    dec = _count_calls(model.aux_mask.decoder), _count_calls(model.aux_noise.decoder)
    loss = model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]
    assert set(loss) == {"pose", "keypoint", "mask", "mask_pose", "noise", "noise_pose", "total"}
    assert [len(c) for c in dec] == [1, 1]
    assert loss["total"].item() == pytest.approx(
        sum(v.item() for k, v in loss.items() if k != "total"), rel=1e-6
    )


def test_aux_branches_skip_eval_and_missing_targets() -> None:
    model = build(1)
    dec = _count_calls(model.aux_mask.decoder), _count_calls(model.aux_noise.decoder)
    model.eval()
    with torch.no_grad():
        out = model(make_clip(2, T), make_targets(2))
    assert set(out["loss"]) == {"pose", "keypoint", "total"}
    model.train()
    out = model(make_clip(2, T))
    assert "loss" not in out
    assert [len(c) for c in dec] == [0, 0]


def test_aux_branches_can_be_switched_off() -> None:
    model = build(1, aux=AuxConfig(decoder_hidden=32, mask=False)).train()
    assert model.aux_mask is None and model.aux_noise is not None
    loss = model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]
    assert "mask" not in loss and "mask_pose" not in loss and "noise" in loss


def test_stage2_training_has_no_aux_losses() -> None:
    model = build(2).train()
    loss = model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]
    assert set(loss) == {"pose", "keypoint", "fine", "total"}


def test_backbone_runs_once_per_clip_in_training() -> None:
    model = build(1).train()
    calls = _count_calls(model.backbone)
    model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]["total"].backward()
    assert calls == [2 * T]  # one call, all B*T frames of the clip batch


def test_aux_masks_follow_the_generator() -> None:
    """Same generator seed -> same aux losses; another seed -> other masks, other losses."""
    model = build(1).train()
    clip, targets = make_clip(2, T), make_targets(2)
    a = model(clip, targets, generator=gen(1))["loss"]
    b = model(clip, targets, generator=gen(1))["loss"]
    c = model(clip, targets, generator=gen(2))["loss"]
    assert a["mask"].item() == b["mask"].item() and a["noise"].item() == b["noise"].item()
    assert a["mask"].item() != c["mask"].item()


# --- mixed precision ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_bf16_autocast_runs_and_matches_fp32(mode: str | int) -> None:
    """The trainer and tester use bf16 autocast on CPUs with native bf16 (engine.trainer.amp_dtype)."""
    model = build(mode, kind="softmax_ce")
    clip = make_clip(2, frames_of(mode))
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(clip, make_targets(2), generator=gen(0))["loss"]
    loss["total"].backward()
    assert math.isfinite(loss["total"].item())
    model.eval()
    with torch.no_grad():
        ref = model(clip)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model(clip)
    assert low["heatmaps"].dtype == torch.float32
    assert torch.allclose(low["heatmaps"], ref["heatmaps"], atol=0.02)


def test_tcis_scores_keep_precision_under_bf16_autocast() -> None:
    """Under the default CPU autocast, the importance of distinct tokens should stay distinct, so that
    the causal top-K is chosen by score and not by token index. Measured: about 65 distinct values
    among the 144 tokens of the tiny benchmark model (36 tokens here) and 3-4 tokens tied at the K-th
    score."""
    model = build(2).eval()
    clip = make_clip(2, T, seed=6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(clip)
    imp = out["importance"].flatten(1)
    assert imp.dtype == torch.float32
    for row in imp:
        assert len(set(row.tolist())) == row.numel()
