"""Every experiment YAML shipped in cmpose/configs loads (unknown keys are errors) and builds the
model of each of its stages (construction and its shape checks; ViT-B takes about a second)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cmpose.config import load_config
from cmpose.demo import CONFIG_DIR
from cmpose.engine.config import ExperimentConfig
from cmpose.engine.stages import build_stage_model

SHIPPED = sorted(CONFIG_DIR.glob("*.yaml"))


def test_the_configs_the_docs_name_are_shipped() -> None:
    names = {p.name for p in SHIPPED}
    expected = {"demo_cpu.yaml", "synth_small.yaml"} | {f"posetrack{v}_vitb.yaml" for v in (17, 18, 21)}
    assert expected <= names


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_config_loads_and_builds_every_stage(path: Path) -> None:
    cfg = load_config(ExperimentConfig, path)
    assert cfg.stages, f"{path.name} has no stages"
    for stage in cfg.stages:
        model = build_stage_model(cfg, stage)
        assert model.num_frames == (1 if stage.kind == "single" else cfg.data.clip.num_frames)
        assert model.backbone.patch_embed is not None
        assert (model.fte is not None) == (stage.kind == "fte"), (path.name, stage.name)
