"""The training rehearsal (``cmpose bench train``, cmpose.bench.rehearsal*): posetrack18_vitb's
stages (mcl, fte) with the tiny model, on a synthetic set written at 1280x720. No timing
assertions: the checks are on the report's fields and the arithmetic between them."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.api import config_path
from cmpose.bench.rehearsal import RehearsalOptions, run_rehearsal
from cmpose.bench.rehearsal_data import ensure_set, synth_config
from cmpose.cli.main import main
from cmpose.config import load_config
from cmpose.demo import CONFIG_DIR
from cmpose.engine.config import ExperimentConfig
from cmpose.errors import ConfigError

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# The weighted terms the model returns with posetrack18_vitb's defaults (aux mask and noise on, keypoint
# tokens supervised): stage 1 has the auxiliary tasks, stage 2 the fine heatmaps.
LOSSES = {
    "mcl": {"pose", "keypoint", "mask", "mask_pose", "noise", "noise_pose", "total"},
    "fte": {"pose", "keypoint", "fine", "total"},
}
STAGE_FIELDS = {
    "name", "kind", "batch_size", "clip_frames", "amp", "workers", "compile", "ddp", "train_clips",
    "steps_per_epoch", "epochs_started", "warmup", "steps", "setup_s", "warmup_s", "wall_s", "step_s",
    "data_wait_s", "compute_s", "compute_median_s", "data_wait_fraction", "clips_per_s", "per_step",
    "losses", "memory",
}  # fmt: skip
TOP_FIELDS = {
    "benchmark", "date", "device", "torch", "cuda", "cpu", "load_start", "load_end", "config",
    "overrides", "options", "data", "memory_counted", "stages", "resolved_config",
}  # fmt: skip


def _leaves(prefix: str, d: dict) -> list[str]:
    out = []
    for k, v in d.items():
        if isinstance(v, dict):
            out += _leaves(f"{prefix}.{k}", v)
        else:
            out.append(f"{prefix}.{k}={json.dumps(v)}")
    return out


TINY = _leaves("model", TINY_MODEL) + _leaves("data.crop", TINY_CROP)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 videos (1 train, 1 val) x 6 frames x 2 people at 1280x720: 12 training clips."""
    work = tmp_path_factory.mktemp("rehearsal")
    ensure_set(work, synth_config(2, 6, "2", (1280, 720)))
    return work


def _check_stage(s: dict) -> None:
    assert STAGE_FIELDS <= set(s)
    assert LOSSES[s["kind"]] <= set(s["losses"])  # (the model may report more, e.g. unweighted terms)
    assert all(math.isfinite(v) for v in s["losses"].values())
    waits, computes = s["per_step"]["data_wait_s"], s["per_step"]["compute_s"]
    assert len(waits) == len(computes) == s["steps"]
    assert s["data_wait_s"] == pytest.approx(sum(waits) / len(waits))
    assert s["compute_s"] == pytest.approx(sum(computes) / len(computes))
    # Each step's wait and compute lie inside the timed loop: together at most its wall time,
    # and most of it (what is left is the memory sampling between steps).
    busy = sum(waits) + sum(computes)
    assert busy <= s["wall_s"] and busy >= 0.5 * s["wall_s"]
    assert s["step_s"] == pytest.approx(s["wall_s"] / s["steps"])
    assert s["clips_per_s"] == pytest.approx(s["batch_size"] * s["steps"] / s["wall_s"])
    assert s["data_wait_fraction"] == pytest.approx(sum(waits) / s["wall_s"])
    assert s["memory"]["main_peak_mb"] > 0 and s["memory"]["with_workers_peak_mb"] > 0


def test_cli_rehearses_every_stage_of_the_real_config(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.json"
    sets = [a for kv in TINY for a in ("--set", kv)]
    args = ["bench", "train", "--config", "posetrack18_vitb", *sets, "--videos", "2", "--frames", "6"]
    args += ["--people", "2", "--steps", "2", "--warmup", "1", "--batch-size", "2", "--workers", "0"]
    args += ["--amp", "bf16"]  # (run.amp auto is float32 on CPUs without native bf16)
    assert main([*args, "--device", "cpu", "--data-dir", str(data_dir), "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert TOP_FIELDS <= set(report)
    assert report["config"] == str(CONFIG_DIR / "posetrack18_vitb.yaml")
    assert report["overrides"] == TINY
    assert report["device"]["type"] == "cpu" and report["device"]["name"]
    assert report["data"]["reused"] is True  # the fixture wrote it
    assert report["data"]["synth"]["size"] == [1280, 720]
    assert len(report["load_start"]) == 3 and len(report["load_end"]) == 3
    assert [s["name"] for s in report["stages"]] == ["mcl", "fte"]
    for s in report["stages"]:
        _check_stage(s)
        assert (s["batch_size"], s["clip_frames"], s["amp"], s["workers"]) == (2, 3, "bfloat16", 0)
        assert s["memory"]["processes_max"] == 1
    cfg = report["resolved_config"]
    assert cfg["data"]["root"] == report["data"]["root"] and cfg["model"]["backbone"]["size"] == "tiny"


def test_workers_are_counted_and_a_new_epoch_starts_when_the_set_runs_out(data_dir: Path) -> None:
    cfg = load_config(ExperimentConfig, CONFIG_DIR / "posetrack18_vitb.yaml", TINY)
    data = ensure_set(data_dir, synth_config(2, 6, "2", (1280, 720)))
    assert data.reused
    # 12 clips in batches of 4: 3 steps per epoch, so the 4th step starts epoch 2.
    opts = RehearsalOptions(steps=3, warmup=1, stages=["mcl"], batch_size=4, workers=1, device="cpu")
    (s,) = run_rehearsal(cfg, opts, data)["stages"]
    _check_stage(s)
    assert (s["steps_per_epoch"], s["epochs_started"], s["workers"]) == (3, 2, 1)
    assert s["memory"]["processes_max"] >= 2  # the loader worker (and its forkserver) were seen
    assert s["memory"]["with_workers_peak_mb"] > s["memory"]["main_peak_mb"] * 0.5


def test_a_set_is_written_again_when_its_manifest_differs(tmp_path: Path) -> None:
    config = synth_config(1, 2, "1", (128, 72))
    first = ensure_set(tmp_path, config)
    assert not first.reused and (first.root / "synth.json").is_file()
    assert ensure_set(tmp_path, config).reused
    manifest = json.loads((first.root / "synth.json").read_text())
    manifest["config"]["quality"] = 50
    (first.root / "synth.json").write_text(json.dumps(manifest))
    assert not ensure_set(tmp_path, config).reused
    assert ensure_set(tmp_path, config).reused


def test_bad_input_is_a_clear_error(data_dir: Path) -> None:
    packaged = (CONFIG_DIR / "posetrack18_vitb.yaml").resolve()
    assert config_path("posetrack18_vitb").resolve() == packaged
    assert config_path("posetrack18_vitb.yaml").resolve() == packaged
    with pytest.raises(ConfigError, match="no packaged config"):
        config_path("posetrack99")
    with pytest.raises(ConfigError, match="--steps"):
        RehearsalOptions(steps=0)
    with pytest.raises(ConfigError, match="people"):
        synth_config(2, 6, "many", (1280, 720))
    cfg = load_config(ExperimentConfig, CONFIG_DIR / "posetrack18_vitb.yaml", TINY)
    data = ensure_set(data_dir, synth_config(2, 6, "2", (1280, 720)))
    with pytest.raises(ConfigError, match=r"no stage named \['stage3'\]"):
        run_rehearsal(cfg, RehearsalOptions(stages=["stage3"], device="cpu"), data)
