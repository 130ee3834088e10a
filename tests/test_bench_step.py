"""The training-step benchmark (cmpose.bench.train_step, ``cmpose bench step``) on the tiny model
with one repeat: every stage kind runs both attention paths and the switch is restored. No timing
assertions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.bench.train_step import run_step_benchmark
from cmpose.cli.main import main
from cmpose.config import from_dict
from cmpose.engine.config import ExperimentConfig
from cmpose.models import vit

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STAGES = [
    {"name": "pretrain", "kind": "single", "epochs": 1},
    {"name": "mcl", "kind": "mcl", "epochs": 1},
    {"name": "fte", "kind": "fte", "epochs": 1},
]


def _cfg() -> dict:
    return {"data": {"batch_size": 2, "crop": TINY_CROP}, "model": TINY_MODEL, "stages": STAGES}


def test_step_benchmark_runs_every_kind_and_both_paths() -> None:
    cfg = from_dict(ExperimentConfig, _cfg())
    results = run_step_benchmark(cfg, ["single", "mcl", "fte"], repeats=1, warmup=0, threads=1)
    assert [r["kind"] for r in results] == ["single", "mcl", "fte"]
    for r in results:
        assert r["batch_size"] == 2 and set(r["median_s"]) == {"math", "sdpa"}
        assert all(len(v) == 1 and v[0] > 0 for v in r["runs_s"].values())
        assert r["sdpa_over_math"] == pytest.approx(r["median_s"]["sdpa"] / r["median_s"]["math"])
    assert vit.CPU_BF16_MATH is True  # restored after the sdpa runs


def test_bench_step_cli_writes_json(tmp_path: Path) -> None:
    import yaml

    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(_cfg()))
    out = tmp_path / "step.json"
    args = ["bench", "step", "--config", str(config), "--kinds", "single", "--repeats", "1", "--warmup", "0"]
    assert main([*args, "--threads", "1", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [r["kind"] for r in data["results"]] == ["single"]
