"""``cmpose ablate``: the variants (a)-(f) at equal wall time, their token counts, the centre prior
of the TCIS recall, and one end-to-end run on a tiny model and a tiny synthetic dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import tiny_experiment

from cmpose.cli.main import main
from cmpose.config import from_dict
from cmpose.engine.ablate import (
    LABELS,
    VARIANTS,
    AblationPlan,
    parse_variants,
    refinement_tokens,
    variant_config,
)
from cmpose.engine.ablate_tcis import centre_prior_tokens
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.stages import build_stage_model
from cmpose.errors import ConfigError
from cmpose.synth import SynthConfig, generate

J = 17

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny() -> dict:
    return tiny_experiment()


@pytest.fixture
def cfg() -> ExperimentConfig:
    return from_dict(ExperimentConfig, tiny())


# --- variants -------------------------------------------------------------------------------------------


def test_variant_configs_share_the_budget_and_switch_one_part_each(cfg, tmp_path: Path) -> None:
    init = tmp_path / "pretrain" / "final.pt"
    by = {name: variant_config(cfg, name, minutes=10.0, fte_share=0.4, init=init) for name in VARIANTS}
    for v in by.values():
        assert v.run.init == str(init) and v.run.val_every == 0
        assert v.data == cfg.data and v.optim == cfg.optim and v.run.seed == cfg.run.seed
        # equal wall time: every variant's stages add up to the same budget; epochs never end a stage
        assert sum(s.minutes for s in v.stages) == pytest.approx(10.0)
        assert all(s.epochs >= 1000 for s in v.stages)
    assert [(s.kind, s.minutes) for s in by["a_single"].stages] == [("single", 10.0)]
    for n in ("b_temporal", "c_mask", "d_mask_noise"):
        assert [(s.kind, s.minutes) for s in by[n].stages] == [("mcl", 10.0)]
    for n in ("e_cmpose", "f_drop"):
        assert [s.kind for s in by[n].stages] == ["mcl", "fte"]
        assert [s.minutes for s in by[n].stages] == pytest.approx([6.0, 4.0])
        assert by[n].stages[-1].lr == cfg.stages[-1].lr and by[n].stages[0].lr == cfg.stages[1].lr
    aux = {n: (v.model.aux.mask, v.model.aux.noise) for n, v in by.items()}
    assert aux["b_temporal"] == (False, False)
    assert aux["c_mask"] == (True, False)
    assert aux["d_mask_noise"] == aux["e_cmpose"] == aux["f_drop"] == (True, True)
    assert by["e_cmpose"].model.fte.cluster and not by["f_drop"].model.fte.cluster
    # the models the variants build
    b = build_stage_model(by["b_temporal"], by["b_temporal"].stages[0])
    assert b.aux_mask is None and b.aux_noise is None and b.encoder is not None
    c = build_stage_model(by["c_mask"], by["c_mask"].stages[0])
    assert c.aux_mask is not None and c.aux_noise is None
    f = build_stage_model(by["f_drop"], by["f_drop"].stages[-1])
    assert f.fte is not None and not f.fte.cluster
    # the input config is untouched
    assert len(cfg.stages) == 3 and cfg.model.aux.mask and cfg.run.init is None and cfg.model.fte.cluster


@pytest.mark.parametrize(
    ("steps", "share", "split"), [(500, 0.4, (300, 200)), (5, 0.5, (3, 2)), (2, 0.9, (1, 1))]
)
def test_a_step_budget_gives_every_variant_the_same_steps(cfg, steps: int, share: float, split) -> None:
    init = Path("x.pt")
    by = {n: variant_config(cfg, n, minutes=10.0, fte_share=share, init=init, steps=steps) for n in VARIANTS}
    for v in by.values():
        # the steps decide, not the minutes (unused) nor the epochs
        assert sum(s.steps for s in v.stages) == steps and all(s.minutes == 0 for s in v.stages)
        assert all(s.epochs >= 1000 for s in v.stages)
    for n in ("a_single", "b_temporal", "c_mask", "d_mask_noise"):
        assert [s.steps for s in by[n].stages] == [steps]
    for n in ("e_cmpose", "f_drop"):
        assert tuple(s.steps for s in by[n].stages) == split
    with pytest.raises(ValueError, match=">= 2 steps"):
        variant_config(cfg, "e_cmpose", minutes=10.0, fte_share=0.4, init=Path("x.pt"), steps=1)


@pytest.mark.parametrize("share", [0.0, 1.0, -0.1, 1.5])
def test_fte_share_must_split_the_budget(cfg, tmp_path: Path, share: float) -> None:
    with pytest.raises(ValueError, match="fte_share"):
        variant_config(cfg, "e_cmpose", minutes=10.0, fte_share=share, init=tmp_path / "x.pt")


def test_parse_variants() -> None:
    assert parse_variants(None) == VARIANTS
    assert parse_variants("e,a") == ("a_single", "e_cmpose")
    assert parse_variants(["f_drop", "b"]) == ("b_temporal", "f_drop")
    with pytest.raises(ConfigError, match="'g'"):
        parse_variants("a,g")
    assert set(LABELS) == set(VARIANTS)


def test_plan_validation() -> None:
    for bad in (
        {"minutes": 0.0},
        {"fte_share": 1.0},
        {"seeds": (0, 0)},
        {"seeds": ()},
        {"pretrain": "twice"},
        {"tcis_ratios": (0.0,)},
        {"num_boot": 0},
        {"robustness_severities": (6,)},
        {"init": Path("no/such/start.pt")},
        {"steps": -5},
        {"steps": 1},
    ):
        with pytest.raises(ConfigError):
            AblationPlan(**bad)
    plan = AblationPlan(variants=("a", "e"), pretrain="shared", seeds=(3, 4))
    assert plan.variants == ("a_single", "e_cmpose")
    assert plan.pretrain_dir(Path("o"), 4) == Path("o/pretrain")
    assert AblationPlan(seeds=(3, 4)).pretrain_dir(Path("o"), 4) == Path("o/seed4/pretrain")


def test_refinement_tokens(cfg) -> None:
    # 48x64 crop, stride 16: a 4 x 3 token grid, N = 12; T = 3 -> L = 36.
    N, T = 12, 3
    L = T * N
    K = math.ceil(0.5 * L)  # keep ratio 0.5 -> 18
    M = math.ceil(0.25 * (L - K))  # cluster ratio 0.25 of the 18 others -> 5
    assert (K, M) == (18, 5)
    assert refinement_tokens(cfg, StageConfig(name="s", kind="single")) == N
    assert refinement_tokens(cfg, StageConfig(name="m", kind="mcl")) == J + L
    fte = StageConfig(name="f", kind="fte")
    assert refinement_tokens(cfg, fte) == J + K + M == 40
    f_cfg = variant_config(cfg, "f_drop", minutes=1.0, fte_share=0.5, init=Path("x.pt"))
    assert refinement_tokens(f_cfg, f_cfg.stages[-1]) == J + K
    # the FTE model really keeps K tokens and forms M clusters
    model = build_stage_model(cfg, fte).eval()
    with torch.no_grad():
        out = model(torch.randn(2, T, 3, 64, 48, generator=torch.Generator().manual_seed(0)))
    assert out["kept_idx"].shape == (2, K)
    ids = out["cluster_ids"]
    assert ids.shape == (2, T, 4, 3) and int((ids == -1).sum()) == 2 * K
    for b in range(2):
        assert len(torch.unique(ids[b][ids[b] >= 0])) == M


def test_centre_prior_keeps_the_cells_nearest_the_centre() -> None:
    # 4 x 3 grid over a 48 x 64 crop: cells of 16 x 16 px; the crop centre (24, 32) is the corner
    # shared by the middle column's cells of rows 1 and 2, so those two are nearest.
    assert sorted(centre_prior_tokens((4, 3), (48, 64), 2 / 12).tolist()) == [4, 7]
    six = centre_prior_tokens((4, 3), (48, 64), 0.5)
    assert len(six) == 6 and set(six.tolist()) == {3, 4, 5, 6, 7, 8}  # the two middle rows
    assert len(centre_prior_tokens((4, 3), (48, 64), 1.0)) == 12
    # a wide grid: the nearest cell of a 1 x 5 row is its middle, then its two neighbours
    assert centre_prior_tokens((1, 5), (80, 16), 0.6).tolist() == [2, 1, 3]


# --- end to end -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ablate_data")
    # version 2: the GT carries visible_dt, so the report has the joint-class columns
    synth = SynthConfig(
        videos=4, frames=8, people=(1, 2), size=(160, 96), hard_ratio=0.5, val_ratio=0.5, version=2
    )
    generate(root, synth, progress=False)
    return root


def test_ablate_end_to_end(tiny_data: Path, tmp_path: Path, capsys, caplog, monkeypatch) -> None:
    # Each training run's curves.png took most of this test's time (13 runs); not what it tests.
    monkeypatch.setattr("cmpose.engine.run._plot", lambda out_dir: None)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny()))
    out = tmp_path / "ablate"
    args = ["ablate", str(config), "--data", str(tiny_data), "--out", str(out), "--budget-minutes", "0.01",
            "--pretrain-minutes", "0.01", "--pretrain", "shared", "--seeds", "0", "1", "--boot", "50",
            "--tcis-ratios", "0.2", "0.5"]  # fmt: skip
    assert main(args) == 0
    stats = json.loads((out / "ablation.json").read_text())
    assert list(stats["variants"]) == list(VARIANTS)
    assert stats["columns"] == [
        "all",
        "hard",
        "visible",
        "hidden_here_visible_in_window",
        "hidden_throughout",
    ]
    assert stats["class_window"] == 1  # T = 3, test step 1
    assert stats["val"]["videos"] == 2 and stats["val"]["people"] > 0
    for name, v in stats["variants"].items():
        for col in stats["columns"]:
            s = v[col]
            assert len(s["per_seed"]) == 2 and s["low"] <= s["high"]
            assert 0.0 <= s["mean"] <= 100.0 and s["min"] <= s["mean"] <= s["max"]
        t = v["training"]
        assert t["steps"] > 0 and t["samples"] == pytest.approx(4 * t["steps"])
        assert len(t["load"]) == 2 and t["tokens_refinement"] > 0
        if name == "a_single":
            assert v["tcis"] is None and t["frames"] == t["samples"]
        else:
            assert set(v["tcis"]) == {"0.2", "0.5"} and t["frames"] == 3 * t["samples"]
            for r in v["tcis"].values():
                assert 0.0 <= r["tcis"] <= 1.0 and 0.0 <= r["centre"] <= 1.0
    # (f) trains only its FTE stage, from (e)'s MCL stage of the same seed, which counts in its record
    for row in (r for r in stats["rows"] if r["variant"] == "f_drop"):
        e_row = next(r for r in stats["rows"] if (r["variant"], r["seed"]) == ("e_cmpose", row["seed"]))
        assert row["stages"][0]["steps"] == e_row["stages"][0]["steps"] > 0
        assert row["stages"][0]["trained_in"] == "e_cmpose" and row["stages"][1]["kind"] == "fte"
        assert not (out / f"seed{row['seed']}" / "f_drop" / "mcl").exists()
    # the rescored mAPs of every run are exactly those of its own test report (cmpose test's
    # evaluator); the per-class ones for the temporal variants, whose test used the same window
    for row in stats["rows"]:
        v = stats["variants"][row["variant"]]
        i = [0, 1].index(row["seed"])
        report = json.loads(
            (out / f"seed{row['seed']}" / row["variant"] / row["val_dir"] / "report.json").read_text()
        )
        assert v["all"]["per_seed"][i] == row["mAP"] == report["all"]["Total"]
        assert v["hard"]["per_seed"][i] == row["mAP_hard"] == report["hard"]["Total"]
        if row["variant"] != "a_single":
            for name, r in report["joint_classes"]["classes"].items():
                assert v[name]["per_seed"][i] == r["Total"] or (
                    math.isnan(r["Total"]) and math.isnan(v[name]["per_seed"][i])
                )
        assert row["budget_minutes"] == 0.01 and row["wall_seconds"] > 0
    # every comparison, in every column, with its interval
    pairs = {(p["x"], p["y"]): p for p in stats["pairs"]}
    expected = {("e_cmpose", "a_single"), ("b_temporal", "a_single"), ("d_mask_noise", "b_temporal"),
                ("c_mask", "b_temporal"), ("d_mask_noise", "c_mask"), ("e_cmpose", "d_mask_noise"),
                ("f_drop", "e_cmpose")}  # fmt: skip
    assert set(pairs) == expected
    for p in pairs.values():
        for col in stats["columns"]:
            d = p["columns"][col]
            assert d["low"] <= d["high"] and len(d["per_seed"]) == 2
            # a percentile interval need not hold the point estimate; it must be an interval
            assert math.isfinite(d["seeds_low"]) and d["seeds_low"] <= d["seeds_high"]
    md = (out / "ablation.md").read_text()
    header = (
        "| variant | all frames | hard frames | visible joints | hidden here, visible within +-1 frames "
        "| hidden throughout | mPC | rPC |"
    )
    for text in (header, "## mAP per variant", "TCIS / centre prior", "tokens entering refinement",
                 "(e) - (a)", "(f) - (e)", "## Targets",
                 "## Differences with the seeds' variance"):  # fmt: skip
        assert text in md, text
    assert (out / "ablation_gains.png").stat().st_size > 0
    assert "## mAP per variant" in capsys.readouterr().out
    # one shared pretraining; a second call reuses every finished run
    assert (out / "pretrain" / "pretrain" / "final.pt").is_file() and not (
        out / "seed0" / "pretrain"
    ).exists()
    before = (out / "seed1" / "f_drop" / "ablate_row.json").stat().st_mtime_ns
    assert main(args) == 0
    assert (out / "seed1" / "f_drop" / "ablate_row.json").stat().st_mtime_ns == before
    # --init with that same checkpoint, reached through a symlinked folder: the same computation,
    # so every finished run is reused; no pretraining, and the report names the start
    link = tmp_path / "start"
    link.symlink_to(out / "pretrain" / "pretrain", target_is_directory=True)
    init_args = args[: args.index("--pretrain-minutes")] + args[args.index("--seeds") :]
    rows = [out / f"seed{s}" / v / "ablate_row.json" for s in (0, 1) for v in ("a_single", "e_cmpose")]
    stamps = [r.stat().st_mtime_ns for r in rows]
    assert main([*init_args, "--init", str(link / "final.pt"), "--variants", "a,e"]) == 0
    assert [r.stat().st_mtime_ns for r in rows] == stamps
    stats = json.loads((out / "ablation.json").read_text())
    assert list(stats["variants"]) == ["a_single", "e_cmpose"]
    assert stats["plan"]["init"] == str(link / "final.pt")
    assert all(Path(r["init"]).resolve() == (out / "pretrain" / "pretrain" / "final.pt").resolve()
               for r in stats["rows"])  # fmt: skip
    assert "every seed starts from the given checkpoint" in (out / "ablation.md").read_text()
    # other settings into the same --out: refused, never reported as runs of the new settings
    assert main([*init_args, "--init", str(link / "final.pt"), "--variants", "a,e",
                 "--set", "optim.weight_decay=0.123"]) == 2  # fmt: skip
    assert "the finished run has other settings" in caplog.text and "weight_decay" in caplog.text
    assert [r.stat().st_mtime_ns for r in rows] == stamps
    # a step budget: every variant trains exactly its steps; the rows say so, and the targets
    # (defined against the time-matched single frame) are not checked
    steps_out = tmp_path / "ablate_steps"
    steps_args = [*init_args, "--init", str(link / "final.pt"), "--variants", "a,e", "--seeds", "0",
                  "--budget-steps", "3"]  # fmt: skip
    steps_args[steps_args.index("--out") + 1] = str(steps_out)
    assert main(steps_args) == 0
    stats = json.loads((steps_out / "ablation.json").read_text())
    by = {r["variant"]: r for r in stats["rows"]}
    assert [st["steps"] for st in by["a_single"]["stages"]] == [3]
    assert [st["steps"] for st in by["e_cmpose"]["stages"]] == [2, 1]  # fte_share 0.4 of 3: 1 step
    assert all(r["budget_steps"] == 3 and r["budget_minutes"] is None for r in stats["rows"])
    assert stats["plan"]["steps"] == 3
    md = (steps_out / "ablation.md").read_text()
    for text in ("3 optimizer steps per variant", "2 MCL + 1 FTE steps", "not checked", "here steps match"):
        assert text in md, text
    # a step plan into the folder of the wall-time runs: refused, the minute runs left as they were
    assert main([*steps_args[:-2], "--out", str(out), "--budget-steps", "3"]) == 2
    assert "holds a finished run of another plan" in caplog.text
    assert [r.stat().st_mtime_ns for r in rows] == stamps
    # --robustness added to finished runs: measured on their checkpoints, nothing retrained
    rob_args = [*init_args, "--init", str(link / "final.pt"), "--variants", "a,e", "--seeds", "0",
                "--robustness", "--robustness-severities", "1"]  # fmt: skip
    weights = out / "seed0" / "e_cmpose" / "fte" / "final.pt"
    weights_stamp = weights.stat().st_mtime_ns
    assert main(rob_args) == 0
    assert weights.stat().st_mtime_ns == weights_stamp
    stats = json.loads((out / "ablation.json").read_text())
    for row in stats["rows"]:
        rob = row["robustness"]
        assert rob["severities"] == [1] and 0.0 <= rob["mPC"] <= 100.0
        # its clean pass is the run's own final validation (cmpose test's numbers)
        assert rob["clean"] == pytest.approx(row["mAP"])
        assert (out / "seed0" / row["variant"] / "robustness" / "robustness.json").is_file()
    assert all(v["robustness"] is not None for v in stats["variants"].values())
    # measured once: a second call reuses the rows as they are
    stamp = (out / "seed0" / "e_cmpose" / "ablate_row.json").stat().st_mtime_ns
    assert main(rob_args) == 0
    assert (out / "seed0" / "e_cmpose" / "ablate_row.json").stat().st_mtime_ns == stamp
