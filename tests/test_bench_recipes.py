"""``cmpose bench recipes``: recipes parse, every recipe is timed the same number of rounds, the
first is the reference, and the CLI writes its JSON (timings themselves are never asserted)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from tiny_configs import tiny_experiment

from cmpose.bench.step_recipes import Recipe, parse_recipe, run_recipe_benchmark
from cmpose.cli.main import main
from cmpose.config import from_dict
from cmpose.engine.config import ExperimentConfig
from cmpose.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_parse_recipe() -> None:
    assert parse_recipe("fast=mcl:model.aux.batch_share=0.5,model.aux.noise=false") == Recipe(
        "fast", "mcl", ("model.aux.batch_share=0.5", "model.aux.noise=false")
    )
    assert parse_recipe("plain=single") == Recipe("plain", "single", ())
    for bad in ("mcl", "x=video", "=mcl"):
        with pytest.raises(ConfigError, match="LABEL=KIND"):
            parse_recipe(bad)


def test_recipes_are_timed_side_by_side() -> None:
    cfg = from_dict(ExperimentConfig, tiny_experiment())
    recipes = [
        Recipe("single", "single"),
        Recipe("mcl cheap", "mcl", ("model.backbone.grad_frames=keyframe", "model.aux.batch_share=0.5")),
    ]
    rows = run_recipe_benchmark(cfg, recipes, batch_size=2, repeats=2, warmup=1, threads=1)
    assert [r["label"] for r in rows] == ["single", "mcl cheap"]
    assert rows[0]["ratio_to_first"] == 1.0
    assert all(len(r["runs_s"]) == 2 and r["median_s"] > 0 for r in rows)
    assert rows[1]["ratio_to_first"] == pytest.approx(rows[1]["median_s"] / rows[0]["median_s"])
    with pytest.raises(ConfigError, match="no 'fte' stage"):
        cfg1 = from_dict(ExperimentConfig, tiny_experiment([{"name": "p", "kind": "single", "epochs": 1}]))
        run_recipe_benchmark(cfg1, [Recipe("f", "fte")], batch_size=2, repeats=1, warmup=0)


def test_cli_writes_json(tmp_path: Path) -> None:
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_experiment()))
    out = tmp_path / "r.json"
    rc = main(["bench", "recipes", "--config", str(config), "--recipe", "a=single", "--recipe",
               "b=fte:model.backbone.grad_frames=keyframe", "--batch-size", "2", "--repeats", "1",
               "--warmup", "0", "--threads", "1", "--out", str(out)])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    assert [r["label"] for r in data["results"]] == ["a", "b"] and len(data["load"]) == 2
