"""``cmpose demo`` plumbing: the demo's time plan, ``--set`` overrides of list entries, and one
end-to-end demo run on a tiny model and a tiny synthetic dataset (``cmpose ablate``: test_ablate.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import tiny_experiment

from cmpose.config import apply_overrides, from_dict, load_config
from cmpose.demo import DemoPlan, plan_stages, replan_stage, run_demo
from cmpose.engine.config import ExperimentConfig
from cmpose.errors import ConfigError
from cmpose.synth import SynthConfig

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(stages: list[dict] | None = None) -> dict:
    return tiny_experiment(stages, gap_fill=4)


@pytest.fixture
def cfg() -> ExperimentConfig:
    return from_dict(ExperimentConfig, tiny())


# --- plan_stages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("control", [False, True])
@pytest.mark.parametrize("shares", [(0.5, 0.3, 0.2), (2.0, 1.0, 1.0), (1.0, 1.0, 1.0)])
def test_plan_stages_splits_the_training_time(cfg, shares, control) -> None:
    plan = DemoPlan(minutes=10.0, shares=shares, reserve=0.1, reserve_seconds=15.0, control=control)
    seconds_left = 570.0
    planned = plan_stages(cfg, plan, seconds_left)
    minutes = [s.minutes for s in planned.stages]
    train_min = ((1.0 - plan.reserve) * seconds_left - 15.0) / 60.0
    # The control trains as long as the temporal stages (mcl, fte) together.
    control_min = train_min * sum(shares[1:]) / (sum(shares) + sum(shares[1:])) if control else 0.0
    assert sum(minutes) + control_min == pytest.approx(train_min, abs=3 * 0.0005)
    assert sum(minutes[1:]) == pytest.approx(control_min, abs=2 * 0.0005) or not control
    for m, share in zip(minutes, shares, strict=True):
        assert m == pytest.approx((train_min - control_min) * share / sum(shares), abs=0.0005)
    # everything else is untouched, and the input config is not modified
    assert [(s.name, s.kind, s.epochs, s.lr) for s in planned.stages] == [
        (s.name, s.kind, s.epochs, s.lr) for s in cfg.stages
    ]
    assert all(s.minutes == 0.0 for s in cfg.stages)
    assert planned.data == cfg.data and planned.model == cfg.model


def test_plan_stages_never_plans_an_unlimited_stage(cfg) -> None:
    # Little or no time left: every stage still gets a positive budget (0 would mean "no limit").
    for left in (0.0, -30.0, 5.0):
        planned = plan_stages(cfg, DemoPlan(), left)
        assert all(s.minutes > 0 for s in planned.stages)


def test_plan_stages_needs_one_share_per_stage(cfg) -> None:
    with pytest.raises(ValueError, match="2 budget shares for 3 stages"):
        plan_stages(cfg, DemoPlan(shares=(0.5, 0.5)), 600.0)
    with pytest.raises(ValueError):
        plan_stages(cfg, DemoPlan(shares=(0.25,) * 4), 600.0)


def test_demo_plan_adds_training_videos_with_the_budget() -> None:
    base = DemoPlan().synth
    for minutes, extra in ((5.0, 0), (10.0, 0), (40.0, 240), (120.0, 880), (600.0, 880)):
        data = DemoPlan(minutes=minutes).dataset()
        assert data.extra_train_videos == extra
        # the val split is the same at every budget, so every budget is measured on it
        assert data.val_videos() == base.val_videos()
    assert DemoPlan(minutes=40.0, extra_train_per_minute=0.0).dataset() == base


def test_demo_plan_refuses_a_showcase_with_the_data_seed() -> None:
    # The same seed would make the showcase video one of the training videos (same people).
    with pytest.raises(ValueError, match="seed"):
        DemoPlan(synth=SynthConfig(seed=1))  # the default showcase has seed 1
    assert DemoPlan(synth=SynthConfig(seed=1), showcase=None).showcase is None


# --- --set on list entries -----------------------------------------------------------------------------


def _stages_doc() -> dict:
    return {"stages": [{"name": "a", "lr": 0.1}, {"name": "b", "lr": 0.2}, {"name": "c"}], "run": {"seed": 0}}


def test_apply_overrides_list_indices() -> None:
    d = apply_overrides(
        _stages_doc(), ["stages.1.lr=0.5", "stages.-1.epochs=7", "stages.0.freeze=[backbone.]"]
    )
    assert d["stages"][1]["lr"] == 0.5 and d["stages"][0]["lr"] == 0.1
    assert d["stages"][2]["epochs"] == 7
    assert d["stages"][0]["freeze"] == ["backbone."]
    d = apply_overrides({"data": {"crop": {"image_size": [192, 256]}}}, ["data.crop.image_size.1=128"])
    assert d["data"]["crop"]["image_size"] == [192, 128]
    d = apply_overrides({"data": {"crop": {"image_size": [192, 256]}}}, ["data.crop.image_size.-2=96"])
    assert d["data"]["crop"]["image_size"] == [96, 256]


@pytest.mark.parametrize("item", ["stages.3.lr=1", "stages.-4.lr=1", "stages.x.lr=1", "stages.1.5=1"])
def test_apply_overrides_bad_list_index_names_the_key(item: str) -> None:
    doc = _stages_doc()
    if item.startswith("stages.1.5"):
        doc["stages"][1] = [1, 2]  # a list inside a list: index 5 is out of range
    with pytest.raises(ConfigError) as err:
        apply_overrides(doc, [item])
    assert item.split("=")[0] in str(err.value)


def test_load_config_with_stage_override(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(tiny()))
    cfg = load_config(ExperimentConfig, path, ["stages.1.lr=1e-4", "stages.-1.epochs=3"])
    assert cfg.stages[1].lr == 1e-4 and cfg.stages[2].epochs == 3 and cfg.stages[0].lr is None
    with pytest.raises(ConfigError, match=r"stages\.3\.lr"):
        load_config(ExperimentConfig, path, ["stages.3.lr=1e-4"])
    with pytest.raises(ConfigError, match="lrr"):  # an unknown field of a list entry
        load_config(ExperimentConfig, path, ["stages.0.lrr=1e-4"])


# --- the demo end to end --------------------------------------------------------------------------------


def test_replan_keeps_the_first_stage_and_fits_later_ones_to_the_time_left(cfg) -> None:
    plan = DemoPlan(shares=(0.5, 0.3, 0.2), reserve_seconds=20.0, control=False)
    first = cfg.stages[0]
    assert replan_stage(cfg, plan, 0, first, [], 300.0) is first
    # After a single-frame stage whose validation took 4 s, the temporal stage (T = 3) expects
    # 12 s per validation: its own, FTE's, and the test without gap filling -> 36 s + 20 s.
    done = [{"name": "pretrain", "kind": "single", "val_seconds": 4.0}]
    mcl = replan_stage(cfg, plan, 1, cfg.stages[1], done, 300.0)
    T = cfg.data.clip.num_frames
    assert mcl.minutes == pytest.approx((300.0 - 3 * 4.0 * T - 20.0) * 0.3 / 0.5 / 60.0, abs=5e-4)
    # After a temporal stage its own time is the estimate: FTE's validation and the plain test.
    done.append({"name": "mcl", "kind": "mcl", "val_seconds": 10.0})
    fte = replan_stage(cfg, plan, 2, cfg.stages[2], done, 100.0)
    assert fte.minutes == pytest.approx((100.0 - 2 * 10.0 - 20.0) / 60.0, abs=5e-4)
    assert (fte.name, fte.kind, fte.lr) == (cfg.stages[2].name, cfg.stages[2].kind, cfg.stages[2].lr)
    # Out of time: still a positive (never "unlimited") budget.
    assert replan_stage(cfg, plan, 2, cfg.stages[2], done, -50.0).minutes > 0


def test_replan_with_a_control_leaves_it_the_temporal_stages_time(cfg) -> None:
    """Time left = 2 x the temporal training still to come + what they trained already (the control
    matches both) + one more validation (the control's) + the pictures."""
    plan = DemoPlan(shares=(0.5, 0.3, 0.2), reserve_seconds=20.0, control=True)
    done = [
        {"name": "pretrain", "kind": "single", "seconds": 100.0, "val_seconds": 4.0},
        {"name": "mcl", "kind": "mcl", "seconds": 70.0, "val_seconds": 10.0},
    ]
    fte = replan_stage(cfg, plan, 2, cfg.stages[2], done, 200.0)
    reserve = 3 * 10.0 + 20.0  # FTE's validation, the control's, the plain test
    expected = (200.0 - reserve - 60.0) / 2.0
    assert fte.minutes == pytest.approx(expected / 60.0, abs=5e-4)
    # then the control's time (mcl's 60 s + fte's) fits with the reserve in what was left
    assert 2 * expected + 60.0 + reserve == pytest.approx(200.0)


def test_run_demo_smoke(tmp_path: Path) -> None:
    config = tmp_path / "tiny_demo.yaml"
    config.write_text(yaml.safe_dump(tiny()))
    synth = SynthConfig(videos=3, frames=8, people=(1, 1), size=(160, 96), seed=0, version=2)
    plan = DemoPlan(minutes=0.3, synth=synth)
    out = tmp_path / "demo"
    torch.manual_seed(0)
    summary = run_demo(out, plan, config=config, overrides=["run.seed=0", "stages.0.epochs=1"])
    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk["elapsed_seconds"] == summary["elapsed_seconds"] > 0
    assert on_disk["budget_minutes"] == 0.3
    kinds = [(s["name"], s["kind"]) for s in on_disk["stages"]]
    assert kinds == [("pretrain", "single"), ("mcl", "mcl"), ("fte", "fte")]
    assert all(s["steps"] == 4 for s in on_disk["stages"])  # 16 train people, batch 4, 1 epoch
    assert all(0 <= s["val_seconds"] <= s["seconds"] for s in on_disk["stages"])  # rounded to 0.1 s
    test = on_disk["test"]
    assert test["boxes"] == "detections" and test["gap_fill"] == 4 and 0.0 <= test["all"]["Total"] <= 100.0
    # beside the headline, the detector's boxes as given (the protocol without gap filling)
    plain = on_disk["test_without_gap_fill"]
    assert plain["boxes"] == "detections" and plain["gap_fill"] == 0
    assert (out / "test_without_gap_fill" / "report.json").is_file()
    md = (out / "summary.md").read_text()
    assert "| stage | kind | steps |" in md and "| fte | fte | 4 |" in md
    assert "Synthetic val, detector boxes, gaps filled from frames up to 4 away" in md and "Total" in md
    assert "The detector's boxes as given (no gap filling): mAP" in md
    # version-2 data: the per-class table, and the time-matched single-frame control beside it
    assert "Per joint class (window +-1 frames" in md and "hidden_here_visible_in_window(1)" in md
    control = on_disk["control"]
    mcl_fte = sum(s["seconds"] - s["val_seconds"] for s in on_disk["stages"][1:])
    assert control["matched_seconds"] == pytest.approx(mcl_fte, abs=0.2) and control["steps"] >= 1
    assert set(control["val"]["joint_classes"]["classes"]) == set(test["joint_classes"]["classes"])
    assert control["val"]["joint_classes"]["window"] == test["joint_classes"]["window"] == 1
    assert (out / "control" / "control" / "final.pt").is_file()
    assert "| single frame (pretraining continued for" in md and "hidden here, visible within +-1" in md
    pictures = on_disk["pictures"]
    assert pictures["tokens"] == "tokens.png" and (out / "tokens.png").stat().st_size > 0
    assert pictures["curves"] == "curves.png" and (out / "curves.png").is_file()
    mp4 = out / pictures["video"]
    assert mp4.parent == out / "video" and mp4.suffix == ".mp4" and mp4.stat().st_size > 0
    # the overlay comes from the separate showcase video (100 frames, seed + 1), one line a frame
    assert plan.showcase is not None and plan.showcase.seed == 1
    assert (out / "showcase" / "annotations" / "val").is_dir()
    assert len(mp4.with_suffix(".jsonl").read_text().splitlines()) == plan.showcase.frames == 100
    # every frame stays decoded: the frame cache holds the whole dataset (24 frames here)
    run_config = yaml.safe_load((out / "run" / "config.yaml").read_text())
    assert run_config["data"]["loader"]["frame_cache_size"] >= plan.dataset().total_frames == 24
    # the data is generated once per output folder and reused; the run folder is retrained
    assert (out / "data" / "synth_config.json").is_file()
    assert (out / "run" / "fte" / "final.pt").is_file()
