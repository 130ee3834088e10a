"""``cmpose.api.init_model``: the model of a config's stage, with weights loaded as training,
``cmpose test`` and ``run.init`` load them."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import TINY_CROP, TINY_MODEL
from torch import Tensor

from cmpose.api import init_model, packaged_configs
from cmpose.config import from_dict, to_dict
from cmpose.engine.checkpointing import load_model
from cmpose.engine.config import ExperimentConfig
from cmpose.errors import CmposeError, ConfigError
from cmpose.models.heads import HeatmapHead, SimpleHeatmapHead

# A tiny model without a conv stem, so that ViTPose's layout can hold its backbone:
# 64x48 crops -> 4x3 tokens, two deconvs -> 16x12 heatmaps.
MODEL = {**TINY_MODEL, "backbone": {**TINY_MODEL["backbone"], "stem_channels": 0}}
STAGES = [
    {"name": "pretrain", "kind": "single"},
    {"name": "mcl", "kind": "mcl"},
    {"name": "fte", "kind": "fte"},
]


def config() -> ExperimentConfig:
    data = {"crop": TINY_CROP, "clip": {"num_frames": 3}}
    return from_dict(ExperimentConfig, {"data": data, "model": MODEL, "stages": STAGES})


def clip(frames: int) -> Tensor:
    return torch.randn(2, frames, 3, 64, 48, generator=torch.Generator().manual_seed(0))


def randomized(model: torch.nn.Module, seed: int) -> dict[str, Tensor]:
    """Every floating tensor drawn anew (BatchNorm variances positive)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in model.state_dict().items():
        if k.endswith("running_var"):
            out[k] = torch.rand(v.shape, generator=g) + 0.5
        else:
            out[k] = torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
    return out


def test_config_object_path_or_packaged_name_and_the_call_contract(tmp_path: Path) -> None:
    cfg = config()
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    for source in (cfg, path, str(path)):
        model = init_model(source, stage="fte")
        assert not model.training and model.fte is not None and model.num_frames == 3
        with torch.no_grad():
            assert model(clip(3))["heatmaps"].shape == (2, 17, 16, 12)
            assert model.backbone(clip(1)[:, 0]).shape == (2, 12, 32)  # (B, N, C)
    first = init_model(cfg)  # the first stage: single-frame, no encoder
    assert first.encoder is None and first.num_frames == 1
    assert isinstance(first.keypoint_head, HeatmapHead)
    simple = init_model(cfg, overrides=["model.head.kind=simple", "model.head.deconv_channels=[]"])
    assert isinstance(simple.keypoint_head, SimpleHeatmapHead)
    with torch.no_grad():
        assert simple(clip(1))["heatmaps"].shape == (2, 17, 16, 12)
    assert "posetrack18_vitb" in packaged_configs()
    demo = init_model("demo_cpu", stage="mcl")
    assert demo.num_frames == 3

    with pytest.raises(
        ConfigError, match=r"stage 'nope': the config's stages are \['pretrain', 'mcl', 'fte'\]"
    ):
        init_model(cfg, stage="nope")
    with pytest.raises(ConfigError, match=r"no_such\.yaml: no such config file.*posetrack18_vitb"):
        init_model(tmp_path / "no_such.yaml")
    with pytest.raises(ConfigError):
        init_model(cfg, overrides=["model.head.kind=fancy"])


def test_training_checkpoint_loads_as_cmpose_test_loads_it(tmp_path: Path) -> None:
    cfg = config()
    model = init_model(cfg, stage="fte")
    weights, ema = randomized(model, 1), randomized(model, 2)
    path = tmp_path / "final.pt"
    torch.save({"model": weights, "ema": ema, "config": to_dict(cfg), "stage": "fte", "epoch": 3}, path)

    loaded = init_model(cfg, path, stage="fte")
    for k, v in loaded.state_dict().items():
        assert torch.equal(v, ema[k]), k  # the EMA weights, as cmpose test
    tested, _ = load_model(path)
    with torch.no_grad():
        torch.testing.assert_close(loaded(clip(3))["heatmaps"], tested(clip(3))["heatmaps"], atol=0, rtol=0)
    # a stage-2 checkpoint does not fit stage 1: its FTE weights have no place there
    with pytest.raises(CmposeError, match="fte"):
        init_model(cfg, path, stage="mcl")


def test_stage1_weights_start_stage2_and_outside_weights_start_any_stage(tmp_path: Path) -> None:
    cfg = config()
    mcl = randomized(init_model(cfg, stage="mcl"), 3)
    path = tmp_path / "mcl.pt"
    torch.save({"model": mcl, "config": to_dict(cfg), "stage": "mcl"}, path)
    torch.manual_seed(7)
    fresh = init_model(cfg, stage="fte").state_dict()
    torch.manual_seed(7)
    started = init_model(cfg, path, stage="fte").state_dict()
    for k, v in started.items():  # stage 1's modules loaded, FTE new (as training starts stage 2)
        assert torch.equal(v, fresh[k] if k.startswith("fte.") else mcl[k]), k

    # ViTPose's layout (a class-token slot in pos_embed) goes where run.init puts it, also in a
    # later stage: backbone and keypoint head; everything else keeps its initialisation
    vitpose = {k: v for k, v in mcl.items() if k.startswith(("backbone.", "keypoint_head."))}
    slot = torch.randn(1, 1, 32)
    vitpose["backbone.pos_embed"] = torch.cat([slot, mcl["backbone.pos_embed"] - slot], dim=1)
    torch.save({"state_dict": vitpose}, tmp_path / "vitpose.pth")
    torch.manual_seed(7)
    imported = init_model(cfg, tmp_path / "vitpose.pth", stage="fte").state_dict()
    for k, v in imported.items():
        outside = k.startswith(("backbone.", "keypoint_head."))
        torch.testing.assert_close(v, mcl[k] if outside else fresh[k], atol=1e-6, rtol=0, msg=k)


def test_convert_fits_our_own_weights_to_any_stage_of_the_config(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from cmpose.cli.main import main

    cfg = config()
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(cfg)))
    fte = randomized(init_model(cfg, stage="fte"), 4)
    torch.save({"model": fte, "config": to_dict(cfg), "stage": "fte"}, tmp_path / "final.pt")
    out = tmp_path / "final.safetensors"
    # the config's first stage (single-frame) cannot hold FTE, its last stage can
    assert main(["convert", str(tmp_path / "final.pt"), str(out), "--config", str(path)]) == 0
    loaded = init_model(path, out, stage="fte").state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in fte.items())
    # another model: every key that does not fit is named, nothing is written
    wider = ["--set", "model.backbone.embed_dim=64"]
    argv = ["convert", str(tmp_path / "final.pt"), str(tmp_path / "x.safetensors"), "--config", str(path)]
    assert main([*argv, *wider]) == 2
    assert "backbone.pos_embed: checkpoint (1, 12, 32), model (1, 12, 64)" in caplog.text
    assert not (tmp_path / "x.safetensors").exists()
