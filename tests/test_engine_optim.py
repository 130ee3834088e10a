"""Layer-wise LR decay groups, no-decay rules and the warmup + step/cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cmpose.engine.optim import build_optimizer, build_scheduler, layer_id, lr_factor, param_groups
from cmpose.models.vit import ViT

DEPTH = 3


class TinyPoseModel(nn.Module):
    """A ViT backbone plus the kinds of parameters CM-Pose adds around it."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = ViT(
            img_size=(32, 32), patch_size=16, patch_padding=0, embed_dim=8, depth=DEPTH, num_heads=2
        )
        self.head = nn.Linear(8, 3)
        self.keypoint_tokens = nn.Parameter(torch.zeros(1, 3, 8))
        self.frame_embed = nn.Parameter(torch.zeros(1, 2, 1, 8))
        self.frame_table = nn.Embedding(2, 8)
        self.frozen = nn.Linear(8, 8)
        self.frozen.requires_grad_(False)


def _lookup(groups: list[dict]) -> dict[int, dict]:
    """id(param) -> its group; asserts every parameter is in exactly one group."""
    where: dict[int, dict] = {}
    for g in groups:
        for p in g["params"]:
            assert id(p) not in where, "a parameter is in two groups"
            where[id(p)] = g
    return where


def test_layer_ids() -> None:
    L = 12
    assert layer_id("backbone.patch_embed.proj.weight", L) == 0
    assert layer_id("backbone.patch_embed.stem.0.weight", L) == 0
    assert layer_id("backbone.pos_embed", L) == 0
    assert layer_id("backbone.blocks.0.attn.qkv.weight", L) == 1
    assert layer_id("backbone.blocks.11.mlp.fc2.bias", L) == 12
    assert layer_id("backbone.last_norm.weight", L) == 13
    assert layer_id("keypoint_head.final_layer.weight", L) == 13
    assert layer_id("encoder.blocks.0.attn.qkv.weight", L) == 13  # not the backbone's blocks
    with pytest.raises(ValueError):
        layer_id("backbone.blocks.12.norm1.weight", L)


def test_layer_decay_scales_and_no_decay_rules() -> None:
    model = TinyPoseModel()
    lr, wd, rate = 1e-3, 0.1, 0.5
    groups = param_groups(model, lr=lr, weight_decay=wd, layer_decay=rate, num_layers=DEPTH)
    where = _lookup(groups)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert set(where) == {id(p) for p in trainable.values()}  # all trainable params, frozen ones left out

    def scale(name: str) -> float:
        return where[id(trainable[name])]["lr_scale"]

    def decayed(name: str) -> bool:
        return where[id(trainable[name])]["weight_decay"] == wd

    # scale = rate ** (L + 1 - layer_id) with L = 3
    assert scale("backbone.patch_embed.proj.weight") == rate**4
    assert scale("backbone.pos_embed") == rate**4
    for i in range(DEPTH):
        assert scale(f"backbone.blocks.{i}.attn.qkv.weight") == rate ** (DEPTH - i)
    for name in ["backbone.last_norm.weight", "head.weight", "keypoint_tokens", "frame_table.weight"]:
        assert scale(name) == 1.0
    for g in groups:
        assert g["lr"] == pytest.approx(lr * g["lr_scale"])

    assert decayed("backbone.patch_embed.proj.weight")  # a conv kernel, despite "embed" in its path
    assert decayed("backbone.blocks.0.attn.qkv.weight") and decayed("head.weight")
    for name in [
        "backbone.patch_embed.proj.bias",
        "backbone.pos_embed",
        "backbone.blocks.1.norm1.weight",
        "backbone.blocks.1.mlp.fc1.bias",
        "backbone.last_norm.weight",
        "head.bias",
        "keypoint_tokens",
        "frame_embed",
        "frame_table.weight",
    ]:
        assert not decayed(name), name

    # Merged: one group per distinct (lr_scale, weight decay), named after its layers.
    keys = [(g["lr_scale"], g["weight_decay"]) for g in groups]
    assert len(keys) == len(set(keys)) == 2 * (DEPTH + 2)
    assert [g["lr_scale"] for g in groups] == sorted(g["lr_scale"] for g in groups)
    assert {"layer_0.decay", "layer_0.no_decay", "layer_4.decay"} <= {g["name"] for g in groups}

    # num_layers found from the block names when not given.
    inferred = param_groups(model, lr=lr, weight_decay=wd, layer_decay=rate, num_layers=None)
    assert [(g["name"], g["lr_scale"], len(g["params"])) for g in inferred] == [
        (g["name"], g["lr_scale"], len(g["params"])) for g in groups
    ]


def test_no_layer_decay_and_wrapped_model() -> None:
    model = TinyPoseModel()
    groups = param_groups(model, lr=1e-3, weight_decay=0.05, layer_decay=None, num_layers=None)
    assert [(g["name"], g["lr_scale"], g["weight_decay"]) for g in groups] == [
        ("all.decay", 1.0, 0.05),
        ("all.no_decay", 1.0, 0.0),
    ]
    _lookup(groups)
    # A DataParallel wrapper (like DDP) is unwrapped, so "backbone." still matches.
    wrapped = param_groups(
        nn.DataParallel(model), lr=1e-3, weight_decay=0.05, layer_decay=0.8, num_layers=DEPTH
    )
    assert len(wrapped) == 2 * (DEPTH + 2)


def test_build_optimizer() -> None:
    opt = build_optimizer(TinyPoseModel(), lr=5e-4, weight_decay=0.1, layer_decay=0.75, num_layers=DEPTH)
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.defaults["betas"] == (0.9, 0.999)
    assert max(g["lr"] for g in opt.param_groups) == pytest.approx(5e-4)
    assert min(g["lr"] for g in opt.param_groups) == pytest.approx(5e-4 * 0.75**4)


def test_lr_factor_warmup_and_step() -> None:
    kw = dict(total_steps=1000, warmup_steps=100, schedule="step", milestones=(600, 900), gamma=0.1)
    assert lr_factor(0, **kw) == pytest.approx(0.001)  # warmup_ratio
    assert lr_factor(50, **kw) == pytest.approx(1 - 0.5 * 0.999)  # mmcv: 1 - (1 - t/T)(1 - ratio)
    assert lr_factor(100, **kw) == 1.0
    assert lr_factor(599, **kw) == 1.0
    assert lr_factor(600, **kw) == pytest.approx(0.1)  # the milestone step itself is decayed
    assert lr_factor(950, **kw) == pytest.approx(0.01)
    assert lr_factor(5000, **kw) == pytest.approx(0.01)
    assert lr_factor(0, **{**kw, "warmup_steps": 0}) == 1.0


def test_lr_factor_cosine() -> None:
    kw = dict(total_steps=1000, warmup_steps=0, schedule="cosine")
    assert lr_factor(0, **kw) == 1.0
    assert lr_factor(500, **kw) == pytest.approx(0.5)
    assert lr_factor(250, **kw) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor(1000, **kw) == pytest.approx(0.0)
    assert lr_factor(3000, **kw) == pytest.approx(0.0)
    assert lr_factor(500, **kw, min_factor=0.1) == pytest.approx(0.55)
    assert lr_factor(1000, **kw, min_factor=0.1) == pytest.approx(0.1)
    # Warmup multiplies the regular schedule (mmcv).
    warm = {**kw, "warmup_steps": 100, "warmup_ratio": 0.01}
    assert lr_factor(50, **warm) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.05)) * (1 - 0.5 * 0.99))
    for bad in [dict(kw, schedule="linear"), dict(kw, total_steps=0)]:
        with pytest.raises(ValueError):
            lr_factor(0, **bad)
    with pytest.raises(ValueError):
        lr_factor(-1, **kw)


def test_scheduler_gives_base_times_scale_times_factor() -> None:
    lr, rate = 1e-3, 0.5
    model = TinyPoseModel()
    opt = build_optimizer(model, lr=lr, weight_decay=0.1, layer_decay=rate, num_layers=DEPTH)
    kw = dict(total_steps=20, warmup_steps=4, schedule="step", milestones=(10,), gamma=0.1, warmup_ratio=0.1)
    sched = build_scheduler(opt, **kw)
    for step in range(15):
        for g in opt.param_groups:
            assert g["lr"] == pytest.approx(lr * g["lr_scale"] * lr_factor(step, **kw), rel=1e-9), step
        opt.step()
        sched.step()
    with pytest.raises(ValueError):
        build_scheduler(opt, total_steps=20, warmup_steps=0, schedule="exp")
