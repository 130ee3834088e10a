"""Tests for the gradient-share measurement (cmpose.bench.grad_share) on a tiny CM-Pose."""

from __future__ import annotations

import torch
from test_models import T, build, make_clip, make_targets

from cmpose.bench.grad_share import shared_parameters, term_gradient_norms


def test_shared_parameters_are_the_encoder_and_the_last_backbone_block() -> None:
    model = build(1)
    names = [n for n, _ in shared_parameters(model)]
    last = f"backbone.blocks.{len(model.backbone.blocks) - 1}."
    assert names and all(n.startswith(("encoder.", last)) for n in names)
    assert any(n.startswith(last) for n in names) and any(n.startswith("encoder.") for n in names)


def test_term_norms_cover_every_term_and_leave_the_model_as_it_was() -> None:
    model = build(1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    norms, values = term_gradient_norms(model, make_clip(2, T), make_targets(2), seed=0)
    assert set(values) == {"pose", "keypoint", "mask", "mask_pose", "noise", "noise_pose", "total"}
    for group in ("all", "encoder", "last_block"):
        assert set(norms[group]) == set(values)
    for name, n in norms["all"].items():
        # The groups split the squared norm.
        assert abs(n**2 - norms["encoder"][name] ** 2 - norms["last_block"][name] ** 2) <= 1e-9 + 1e-6 * n**2
    assert norms["all"]["pose"] > 0
    # No parameter gradient is left behind and no weight or BatchNorm statistic moved.
    assert all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    # The same seed measures the same batch the same way.
    again, _ = term_gradient_norms(model, make_clip(2, T), make_targets(2), seed=0)
    assert again == norms
