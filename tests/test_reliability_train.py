"""Training refuses what it cannot do as asked (issue 18, items 2, 3, 5, 6): a resume with another
config (naming the keys, config.yaml untouched), stage names that leave the run folder, settings
that would train nothing or crash, stale temporary files of a killed write."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.cli.main import main
from cmpose.config import load_config
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.config import ExperimentConfig
from cmpose.engine.run import config_differences
from cmpose.errors import ConfigError
from cmpose.utils.io import remove_stale_temporaries

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_posetrack(root, num_videos=1, num_frames=4, people=1, image_size=(160, 96), split="train")
    write_toy_posetrack(root, num_videos=1, num_frames=2, people=1, image_size=(160, 96), split="val", seed=1)
    return root


def tiny(root: Path, **stage) -> dict:
    return {
        "data": {"root": str(root), "batch_size": 2, "workers": 0, "crop": TINY_CROP},
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 1},
        "stages": [{"name": "single", "kind": "single", "epochs": 1, **stage}],
        "run": {"val_every": 0, "log_every": 1, "amp": "off"},
        "test": {"boxes": "gt", "workers": 0, "batch_size": 4, "flip_test": False},
    }


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def finished_run(data_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("run")
    config = write_yaml(base / "tiny.yaml", tiny(data_root))
    assert main(["train", str(config), "--out", str(base / "run")]) == 0
    return config, base / "run"


# --- item 2: a resume with another config ---


@pytest.mark.parametrize(
    "override, key",
    [("optim.lr=0.5", "optim.lr"), ("model.backbone.embed_dim=64", "model.backbone.embed_dim")],
)
def test_resume_with_another_config_is_refused(finished_run, override, key, caplog) -> None:
    config, out = finished_run
    before = (out / "config.yaml").read_bytes()
    with caplog.at_level(logging.ERROR):
        assert main(["train", str(config), "--out", str(out), "--resume", "--set", override]) == 2
    assert key in caplog.text and "run.init" in caplog.text
    assert (out / "config.yaml").read_bytes() == before  # never rewritten by a refused run


def test_resume_with_the_same_config_or_other_workers_continues(finished_run, caplog) -> None:
    config, out = finished_run
    before = (out / "config.yaml").read_bytes()
    assert main(["train", str(config), "--out", str(out), "--resume", "--set", "data.workers=1"]) == 0
    assert (out / "config.yaml").read_bytes() == before


def test_config_differences_name_nested_and_list_keys() -> None:
    a = {"optim": {"lr": 1.0}, "stages": [{"name": "s", "lr": None}], "data": {"workers": 2}}
    b = {"optim": {"lr": 2.0}, "stages": [{"name": "s", "lr": 0.1}], "data": {"workers": 0}}
    assert config_differences(a, b) == ["optim.lr: 1.0 -> 2.0", "stages.0.lr: None -> 0.1"]
    assert config_differences(a, a) == []


def test_a_run_that_fails_to_start_writes_no_config(data_root: Path, tmp_path: Path) -> None:
    cfg = tiny(data_root)
    cfg["data"]["train"] = "annotations/missing"
    config = write_yaml(tmp_path / "bad.yaml", cfg)
    assert main(["train", str(config), "--out", str(tmp_path / "run")]) == 2
    assert not (tmp_path / "run" / "config.yaml").exists()


# --- item 3: stage names ---


@pytest.mark.parametrize("name", ["../../escaped", "/tmp/escaped", "a/b", "..", ".", "", "a\\b"])
def test_stage_names_must_be_plain_folder_names(data_root: Path, tmp_path: Path, name: str, caplog) -> None:
    config = write_yaml(tmp_path / "c.yaml", tiny(data_root, name=name))
    with pytest.raises(ConfigError, match="plain folder name"):
        load_config(ExperimentConfig, config)
    out = tmp_path / "a" / "b" / "run"
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert list(tmp_path.rglob("*.pt")) == [] and not out.exists()


# --- items 5 and 6: settings that train nothing or crash ---


@pytest.mark.parametrize(
    "override",
    [
        "data.batch_size=0",
        "data.batch_size=-4",
        "stages.0.epochs=0",
        "stages.0.batch_size=0",
        "optim.lr=-1",
        "optim.lr=.nan",
        "optim.lr=.inf",
        "stages.0.lr=.nan",
        "data.workers=-1",
        "optim.warmup_steps=-5",
        "test.batch_size=0",
        "run.ema=1.5",
        "run.device=tpu",
        "run.device=cuda:99",
    ],
)
def test_settings_that_cannot_train_are_refused(
    data_root: Path, tmp_path: Path, override: str, caplog
) -> None:
    config = write_yaml(tmp_path / "c.yaml", tiny(data_root))
    key = override.split("=")[0].split(".")[-1]
    with caplog.at_level(logging.ERROR):
        assert main(["train", str(config), "--out", str(tmp_path / "run"), "--set", override]) == 2
    assert key in caplog.text or "device" in caplog.text
    assert not (tmp_path / "run" / "single").exists()


def test_nan_learning_rate_is_caught_by_the_config_not_the_optimizer() -> None:
    with pytest.raises(ConfigError, match="lr"):
        load_config(ExperimentConfig, None, [f"optim.lr={math.nan}"])


# --- item 6: stale temporaries ---


def test_stale_temporaries_of_killed_writes_are_removed(tmp_path: Path) -> None:
    (tmp_path / "mcl").mkdir()
    stale = [tmp_path / ".config.yaml.abc123.tmp", tmp_path / "mcl" / ".last.pt.x9.tmp"]
    kept = [tmp_path / "notes.tmp", tmp_path / "mcl" / "last.pt", tmp_path / ".hidden"]
    for p in stale + kept:
        p.write_bytes(b"x")
    remove_stale_temporaries(tmp_path, depth=1)
    assert [p.exists() for p in stale] == [False, False]
    assert all(p.exists() for p in kept)
    mine, other = tmp_path / ".clip.mp4.a1.tmp", tmp_path / ".other.mp4.b2.tmp"
    mine.write_bytes(b"x"), other.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path, ["clip.mp4", "clip.jsonl"]) == [mine]
    assert other.exists()


def test_training_start_removes_stale_temporaries(finished_run) -> None:
    config, out = finished_run
    stale = out / "single" / ".last.pt.deadbeef.tmp"
    stale.write_bytes(torch.zeros(3).numpy().tobytes())
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 0
    assert not stale.exists()


def test_out_naming_a_file_is_refused(data_root: Path, tmp_path: Path, caplog) -> None:
    config = write_yaml(tmp_path / "c.yaml", tiny(data_root))
    (tmp_path / "taken").write_text("keep me")
    with caplog.at_level(logging.ERROR):
        assert main(["train", str(config), "--out", str(tmp_path / "taken")]) == 2
    assert "is a file" in caplog.text and (tmp_path / "taken").read_text() == "keep me"


def test_interrupted_command_exits_130_with_one_line(tmp_path: Path, monkeypatch, caplog) -> None:
    # Ctrl-C (or SIGTERM, turned into the same) during training: exit 130 and one line that says
    # how to continue, not a traceback.
    import cmpose.cli.train as train_cli

    def interrupted(args) -> int:  # noqa: ANN001
        raise KeyboardInterrupt("SIGTERM")

    monkeypatch.setattr(train_cli, "run", interrupted)
    with caplog.at_level(logging.ERROR):
        assert main(["train", str(tmp_path / "x.yaml")]) == 130
    assert "interrupted by SIGTERM" in caplog.text and "--resume" in caplog.text
