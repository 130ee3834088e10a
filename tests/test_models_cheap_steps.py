"""The two settings that make a temporal training step cheaper (``BackboneConfig.grad_frames``,
``AuxConfig.batch_share``): what they change and what they leave alone."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from test_models import HEATMAP, IMAGE, T, gen, make_clip, make_targets, tiny_cfg

from cmpose.models.cmpose import CMPose
from cmpose.models.config import AuxConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def build(stage: int = 1, *, grad_frames: str = "all", share: float = 1.0, stem: int = 0) -> CMPose:
    """A tiny temporal model; no conv stem by default, so no BatchNorm couples the clips."""
    cfg = tiny_cfg(stage, stem=stem, aux=AuxConfig(decoder_hidden=32, batch_share=share))
    cfg = dataclasses.replace(cfg, backbone=dataclasses.replace(cfg.backbone, grad_frames=grad_frames))
    torch.manual_seed(0)
    return CMPose(cfg, IMAGE, HEATMAP, num_frames=T).train()


@pytest.mark.parametrize("stage", [1, 2])
def test_keyframe_grad_gives_the_same_losses_and_no_gradient_to_neighbours(stage: int) -> None:
    losses, pixel_grads = {}, {}
    for mode in ("all", "keyframe"):
        model = build(stage, grad_frames=mode)
        clip = make_clip(2, T).requires_grad_(True)
        loss = model(clip, make_targets(2), generator=gen(0))["loss"]
        loss["total"].backward()
        losses[mode] = {k: v.item() for k, v in loss.items()}
        pixel_grads[mode] = clip.grad.abs().flatten(2).sum(-1)  # (B, T)
    for k, v in losses["all"].items():
        assert losses["keyframe"][k] == pytest.approx(v, rel=1e-5, abs=1e-7), k
    key = T // 2
    neighbours = [t for t in range(T) if t != key]
    assert (pixel_grads["all"][:, neighbours] > 0).all()
    assert (pixel_grads["keyframe"][:, neighbours] == 0).all()
    assert (pixel_grads["keyframe"][:, key] > 0).all()
    # The keyframe's own path is untouched: its input gradient is the same in both modes.
    torch.testing.assert_close(pixel_grads["keyframe"][:, key], pixel_grads["all"][:, key])


def test_keyframe_grad_only_in_training_with_autograd() -> None:
    """Evaluation and no-grad runs take the one-pass path: one backbone call for all B*T frames."""
    model = build(grad_frames="keyframe")
    calls: list[int] = []
    model.backbone.register_forward_hook(lambda mod, args, out: calls.append(args[0].shape[0]))
    model(make_clip(2, T), make_targets(2), generator=gen(0))
    assert calls == [2, 2 * (T - 1)]  # the keyframes with a gradient, then the neighbours
    calls.clear()
    model.eval()
    with torch.no_grad():
        model(make_clip(2, T))
    assert calls == [2 * T]


def test_batch_share_corrupts_only_the_first_clips() -> None:
    """With share 0.25 of 8 clips the auxiliary terms see clips 0-1 only: changing clips 2-7 leaves
    their raw values alone, and they differ from the full-batch terms."""
    model = build(share=0.25)
    decoder_batches: list[int] = []
    model.aux_mask.decoder.register_forward_hook(lambda m, args, out: decoder_batches.append(len(args[0])))
    clip, targets = make_clip(8, T, seed=1), make_targets(8, seed=1)
    out = model(clip, targets, generator=gen(3))
    assert decoder_batches == [2]
    other = clip.clone()
    other[2:] = make_clip(6, T, seed=9)
    out2 = model(other, targets, generator=gen(3))
    for name in ("mask", "noise"):
        assert out2["raw_losses"][name].item() == pytest.approx(out["raw_losses"][name].item(), rel=1e-6)
    assert out2["loss"]["pose"].item() != pytest.approx(out["loss"]["pose"].item(), rel=1e-6)
    full = build(share=1.0)(clip, targets, generator=gen(3))
    assert full["raw_losses"]["mask"].item() != pytest.approx(out["raw_losses"]["mask"].item(), rel=1e-6)


def test_batch_share_keeps_at_least_one_clip_and_is_validated() -> None:
    model = build(share=0.01)
    loss = model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]
    assert {"mask", "noise", "mask_pose", "noise_pose"} <= set(loss)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="batch_share"):
            AuxConfig(batch_share=bad)


def test_zero_auxiliary_heatmap_weight_skips_the_head() -> None:
    cfg = tiny_cfg(1, stem=0, aux=AuxConfig(decoder_hidden=32, heatmap_weight=0.0))
    torch.manual_seed(0)
    model = CMPose(cfg, IMAGE, HEATMAP, num_frames=T).train()
    head_calls: list[int] = []
    model.keypoint_head.register_forward_hook(lambda mod, args, out: head_calls.append(args[0].shape[0]))
    loss = model(make_clip(2, T), make_targets(2), generator=gen(0))["loss"]
    assert "mask_pose" not in loss and "noise_pose" not in loss and "mask" in loss
    assert head_calls == [2]  # the clean keyframe only
