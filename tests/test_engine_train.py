"""Training engine: ``cmpose train`` over single -> mcl -> fte, stage-to-stage initialisation, exact
resume after an interruption, freezing, AMP dtypes, the resume sampler and the wall-time budget.

Everything runs a tiny CM-Pose (C = 32, one or two blocks, 48x64 crops -> 12x16 heatmaps) on a
toy PoseTrack18 folder of one train video (8 frames x 1 person: 4 steps per epoch at batch 2)
and one val video."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.cli.main import main
from cmpose.config import from_dict
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine import trainer as trainer_mod
from cmpose.engine.checkpointing import load_model, read_checkpoint
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.run import run_training
from cmpose.engine.stages import build_stage_model, freeze, load_previous_stage
from cmpose.engine.trainer import SkipSampler, StageTrainer, amp_dtype
from cmpose.errors import ConfigError

STEPS_PER_EPOCH = 4  # 8 training samples, batch 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("toy")
    write_toy_posetrack(root, num_videos=1, num_frames=8, people=1, image_size=(160, 96), split="train")
    write_toy_posetrack(root, num_videos=1, num_frames=4, people=1, image_size=(160, 96), split="val", seed=1)
    return root


def tiny(root: Path, stages: list[dict], **run) -> dict:
    return {
        "data": {
            "root": str(root),
            "batch_size": 2,
            "workers": 0,
            "crop": TINY_CROP,
        },
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 2, "schedule": "cosine"},
        "stages": stages,
        "run": {"val_every": 1, "log_every": 1, "amp": "off", **run},
        "test": {"boxes": "gt", "workers": 0, "batch_size": 4, "flip_test": False},
    }


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


THREE_STAGES = [
    {"name": "single", "kind": "single", "epochs": 1},
    {"name": "mcl", "kind": "mcl", "epochs": 1},
    {"name": "fte", "kind": "fte", "epochs": 1},
]


# --- cmpose train, three stages ---------------------------------------------------------------------------


def test_train_three_stages_cli(data_root: Path, tmp_path: Path, monkeypatch, caplog, capsys) -> None:
    config = write_yaml(tmp_path / "tiny.yaml", tiny(data_root, THREE_STAGES))
    out = tmp_path / "run"
    # Record each stage's model right after it was initialised from the previous stage.
    initial: dict[str, dict[str, torch.Tensor]] = {}
    real = trainer_mod.load_previous_stage

    def spy(model, weights, source):
        new = real(model, weights, source)
        initial[Path(source).parent.name] = {k: v.clone() for k, v in model.state_dict().items()}
        return new

    monkeypatch.setattr(trainer_mod, "load_previous_stage", spy)
    with caplog.at_level(logging.INFO):
        assert main(["train", str(config), "--out", str(out)]) == 0
    for name in ("config.yaml", "summary.json", "curves.png"):
        assert (out / name).is_file(), name
    for stage in ("single", "mcl", "fte"):
        assert (out / stage / "last.pt").is_file() and (out / stage / "final.pt").is_file()
        assert (out / stage / "val_epoch1" / "report.json").is_file()
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert [s["name"] for s in resolved["stages"]] == ["single", "mcl", "fte"]
    summary = json.loads((out / "summary.json").read_text())
    assert [(s["name"], s["kind"], s["steps"], s["epochs"]) for s in summary["stages"]] == [
        ("single", "single", 4, 1),
        ("mcl", "mcl", 4, 1),
        ("fte", "fte", 4, 1),
    ]
    assert all(0.0 <= s["val"]["all"]["Total"] <= 100.0 for s in summary["stages"])
    assert summary["final_checkpoint"] == str(out / "fte" / "final.pt")

    # Each final checkpoint rebuilds its stage's model.
    single, _ = load_model(out / "single" / "final.pt")
    assert single.encoder is None and single.num_frames == 1 and single.fte is None
    mcl, _ = load_model(out / "mcl" / "final.pt")
    assert mcl.encoder is not None and mcl.num_frames == 3 and mcl.fte is None
    assert mcl.aux_mask is not None and mcl.aux_noise is not None
    fte, _ = load_model(out / "fte" / "final.pt")
    assert fte.fte is not None and fte.num_frames == 3
    assert not single.training and not fte.training

    # mcl started from single's final weights (every module single had), fte from mcl's.
    single_final = read_checkpoint(out / "single" / "final.pt")["model"]
    assert set(initial) == {"single", "mcl"}  # the sources: single/final.pt, mcl/final.pt
    for k, v in single_final.items():
        torch.testing.assert_close(initial["single"][k], v, rtol=0, atol=0, msg=k)
    assert any(k.startswith("encoder.") for k in initial["single"])
    mcl_final = read_checkpoint(out / "mcl" / "final.pt")["model"]
    for k, v in mcl_final.items():
        torch.testing.assert_close(initial["mcl"][k], v, rtol=0, atol=0, msg=k)
    # training changed the backbone in each stage
    assert not torch.equal(mcl_final["backbone.pos_embed"], single_final["backbone.pos_embed"])
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "new in this stage: aux_mask, aux_noise, encoder, keypoint_token_head" in logged
    assert "new in this stage: fte" in logged

    # cmpose test on the final checkpoint (data and test settings from it) gives the stage's final
    # validation result: same weights, same GT boxes, same post-processing.
    capsys.readouterr()
    assert main(["test", "--checkpoint", str(out / "fte" / "final.pt"), "--out", str(tmp_path / "t")]) == 0
    tested = json.loads((tmp_path / "t" / "report.json").read_text())
    assert tested["all"] == summary["stages"][-1]["val"]["all"] and tested["boxes"] == "gt"
    assert "Total" in capsys.readouterr().out

    # A second run into the same folder without --resume is refused and names --resume.
    caplog.clear()
    before = (out / "single" / "final.pt").stat().st_mtime_ns
    assert main(["train", str(config), "--out", str(out)]) == 2
    assert "--resume" in caplog.text
    assert (out / "single" / "final.pt").stat().st_mtime_ns == before


def test_resume_of_a_finished_run_keeps_its_summary(data_root: Path, tmp_path: Path) -> None:
    cfg = from_dict(ExperimentConfig, tiny(data_root, [{"name": "single", "kind": "single", "epochs": 1}]))
    out = tmp_path / "run"
    first = run_training(cfg, out)
    final = out / "single" / "final.pt"
    before = final.stat().st_mtime_ns
    again = run_training(cfg, out, resume=True)
    assert final.stat().st_mtime_ns == before  # the finished stage is not trained again
    assert again["final_checkpoint"] == str(final)
    on_disk = json.loads((out / "summary.json").read_text())
    assert [s["name"] for s in on_disk["stages"]] == ["single"]
    assert again["stages"][-1]["val"] == first["stages"][-1]["val"]


# --- exact resume -------------------------------------------------------------------------------------------


def _resume_config(root: Path, **backbone) -> dict:
    cfg = tiny(root, [{"name": "mcl", "kind": "mcl", "epochs": 2}], checkpoint_steps=3, ema=0.9)
    cfg["model"]["backbone"].update(backbone)
    return cfg


def _interrupted_then_resumed(config: Path, out: Path, stop_at: int, monkeypatch) -> None:
    """Train with the step that follows ``stop_at`` done steps raising KeyboardInterrupt (as a Ctrl-C
    would), then ``cmpose train --resume`` the same folder."""
    real = StageTrainer._train_step

    def interrupted(self, batch):
        if self.step == stop_at:
            raise KeyboardInterrupt
        return real(self, batch)

    with monkeypatch.context() as m:
        m.setattr(StageTrainer, "_train_step", interrupted)
        torch.manual_seed(0)  # as a fresh process: the same initial weights as the reference
        # cmpose reports the interrupt in one line and exits 130 (128 + SIGINT)
        assert main(["train", str(config), "--out", str(out)]) == 130
    state = read_checkpoint(out / "mcl" / "last.pt")
    # the checkpoint_steps checkpoint at step 3 (mid epoch 1) or 6 (mid epoch 2), or epoch 1's at 4
    assert state["step"] == stop_at
    assert state["batch_in_epoch"] == stop_at % STEPS_PER_EPOCH
    assert not (out / "mcl" / "final.pt").exists()
    torch.manual_seed(12345)  # the resumed process starts from another global RNG state
    assert main(["train", str(config), "--out", str(out), "--resume"]) == 0


def _assert_same_final(a: Path, b: Path) -> None:
    fa, fb = read_checkpoint(a / "mcl" / "final.pt"), read_checkpoint(b / "mcl" / "final.pt")
    assert fa["step"] == fb["step"] == 2 * STEPS_PER_EPOCH and fa["epoch"] == fb["epoch"] == 2
    for part in ("model", "ema"):
        assert fa[part].keys() == fb[part].keys()
        for k in fa[part]:
            torch.testing.assert_close(fb[part][k], fa[part][k], rtol=0, atol=0, msg=f"{part} {k}")
    sa, sb = fa["optimizer"]["state"], fb["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    for i in sa:
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(sb[i][k], sa[i][k], rtol=0, atol=0)
    assert fa["scheduler"]["last_epoch"] == fb["scheduler"]["last_epoch"]
    losses = [{k: v for k, v in h.items() if k.startswith("loss/")} for h in fa["history"] if "lr" in h]
    losses_b = [{k: v for k, v in h.items() if k.startswith("loss/")} for h in fb["history"] if "lr" in h]
    assert losses_b == losses  # every step logged, with the same losses


@pytest.fixture(scope="module")
def straight_run(data_root: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The uninterrupted 2-epoch run (the reference)."""
    base = tmp_path_factory.mktemp("straight")
    config = write_yaml(base / "resume.yaml", _resume_config(data_root))
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the model's initialisation draws from torch's global RNG
    assert main(["train", str(config), "--out", str(base / "run")]) == 0
    # validated after epoch 1 (val_every 1) and at the end of the stage
    assert sorted(p.name for p in (base / "run" / "mcl").glob("val_epoch*")) == ["val_epoch1", "val_epoch2"]
    return config, base / "run"


@pytest.mark.parametrize("stop_at", [3, 4, 6], ids=["mid_epoch1", "epoch_end", "mid_epoch2"])
def test_resume_continues_exactly(straight_run, tmp_path: Path, monkeypatch, stop_at: int) -> None:
    """Interrupted right after the step-3, -4 or -6 checkpoint, then resumed: the final weights,
    EMA, optimizer moments and logged losses equal those of the uninterrupted run bit for bit."""
    config, reference = straight_run
    out = tmp_path / "run"
    _interrupted_then_resumed(config, out, stop_at, monkeypatch)
    _assert_same_final(reference, out)


def test_resume_continues_exactly_with_drop_path(data_root: Path, tmp_path: Path, monkeypatch) -> None:
    config = write_yaml(tmp_path / "dp.yaml", _resume_config(data_root, depth=2, drop_path_rate=0.3))
    torch.manual_seed(0)
    assert main(["train", str(config), "--out", str(tmp_path / "straight")]) == 0
    _interrupted_then_resumed(config, tmp_path / "resumed", 6, monkeypatch)
    _assert_same_final(tmp_path / "straight", tmp_path / "resumed")


def test_same_config_trains_the_same_weights_in_one_process(data_root: Path, tmp_path: Path) -> None:
    cfg = from_dict(
        ExperimentConfig, tiny(data_root, [{"name": "mcl", "kind": "mcl", "epochs": 1}], val_every=0)
    )
    run_training(cfg, tmp_path / "a")
    run_training(cfg, tmp_path / "b")
    a = read_checkpoint(tmp_path / "a" / "mcl" / "final.pt")["model"]
    b = read_checkpoint(tmp_path / "b" / "mcl" / "final.pt")["model"]
    for k in a:
        torch.testing.assert_close(b[k], a[k], rtol=0, atol=0, msg=k)


# --- load_previous_stage --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stage_cfg(data_root: Path) -> ExperimentConfig:
    return from_dict(ExperimentConfig, tiny(data_root, THREE_STAGES))


def _model(cfg: ExperimentConfig, kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_stage_model(cfg, StageConfig(name=kind, kind=kind, epochs=1))


def test_load_previous_stage_new_modules_are_allowed(stage_cfg) -> None:
    single, mcl, fte = (
        _model(stage_cfg, "single", 1),
        _model(stage_cfg, "mcl", 2),
        _model(stage_cfg, "fte", 3),
    )
    new_before = {
        k: v.clone() for k, v in mcl.state_dict().items() if not k.startswith(("backbone.", "keypoint_head."))
    }
    assert new_before
    new = load_previous_stage(mcl, single.state_dict(), "single.pt")
    assert new == ["aux_mask", "aux_noise", "encoder", "keypoint_token_head"]
    for k, v in single.state_dict().items():
        torch.testing.assert_close(mcl.state_dict()[k], v, rtol=0, atol=0)
    for k, v in new_before.items():  # the new modules keep their initialisation
        torch.testing.assert_close(mcl.state_dict()[k], v, rtol=0, atol=0)
    assert load_previous_stage(fte, mcl.state_dict(), "mcl.pt") == ["fte"]
    for k, v in mcl.state_dict().items():
        torch.testing.assert_close(fte.state_dict()[k], v, rtol=0, atol=0)
    assert load_previous_stage(_model(stage_cfg, "fte"), fte.state_dict(), "fte.pt") == []


def test_load_previous_stage_missing_key_inside_a_module(stage_cfg) -> None:
    weights = _model(stage_cfg, "single").state_dict()
    key = next(k for k in weights if k.startswith("backbone.blocks.0."))
    del weights[key]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")) as err:
        load_previous_stage(_model(stage_cfg, "mcl"), weights, "prev.pt")
    assert "prev.pt" in str(err.value) and "missing" in str(err.value)


def test_load_previous_stage_unexpected_key(stage_cfg) -> None:
    weights = _model(stage_cfg, "single").state_dict()
    weights["keypoint_head.extra.weight"] = torch.zeros(3)
    with pytest.raises(ConfigError, match=r"keypoint_head\.extra\.weight"):
        load_previous_stage(_model(stage_cfg, "mcl"), weights, "prev.pt")
    # a later stage's weights into an earlier stage's model: its new modules are unexpected
    with pytest.raises(ConfigError, match="unexpected"):
        load_previous_stage(_model(stage_cfg, "mcl"), _model(stage_cfg, "fte").state_dict(), "fte.pt")


def test_load_previous_stage_shape_mismatch(stage_cfg) -> None:
    model = _model(stage_cfg, "mcl")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    weights = _model(stage_cfg, "single", 5).state_dict()
    weights["backbone.pos_embed"] = torch.zeros(1, 7, 32)
    with pytest.raises(ConfigError, match=r"backbone\.pos_embed.*\(1, 7, 32\)"):
        load_previous_stage(model, weights, "prev.pt")
    for k, v in model.state_dict().items():  # nothing was loaded
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


# --- freeze --------------------------------------------------------------------------------------------


def test_freeze_unknown_prefix_raises(stage_cfg) -> None:
    with pytest.raises(ConfigError, match="nonexistent"):
        freeze(_model(stage_cfg, "mcl"), ("nonexistent.",))
    assert freeze(_model(stage_cfg, "mcl"), ()) == 0


def test_frozen_parameters_get_no_gradient_and_no_optimizer_slot(data_root: Path, tmp_path: Path) -> None:
    stage = {"name": "mcl", "kind": "mcl", "epochs": 1, "freeze": ["backbone.", "keypoint_head."]}
    cfg = from_dict(ExperimentConfig, tiny(data_root, [stage]))
    trainer = StageTrainer(cfg, cfg.stages[0], tmp_path / "mcl", None, torch.device("cpu"), None, False)
    frozen = {n for n, p in trainer.model.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("backbone.", "keypoint_head.")) for n in frozen)
    assert {
        n for n in dict(trainer.model.named_parameters()) if n.startswith(("backbone.", "keypoint_head."))
    } == frozen
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    params = dict(trainer.model.named_parameters())
    assert not any(id(params[n]) in in_optimizer for n in frozen)
    assert all(id(p) in in_optimizer for n, p in params.items() if n not in frozen)
    before = {n: p.detach().clone() for n, p in params.items()}
    frozen_buffers = {
        n: b.clone()
        for n, b in trainer.model.named_buffers()
        if n.startswith(("backbone.", "keypoint_head.")) and "running" in n
    }
    assert frozen_buffers  # the stem's and the head's BatchNorms
    batch = next(iter(torch.utils.data.DataLoader(trainer.dataset, batch_size=2)))
    trainer._train_step(batch)
    for n, p in params.items():
        if n in frozen:
            assert p.grad is None, n
            torch.testing.assert_close(p.detach(), before[n], rtol=0, atol=0)
    buffers = dict(trainer.model.named_buffers())
    for n, b in frozen_buffers.items():  # a frozen part's BatchNorm statistics do not move either
        torch.testing.assert_close(buffers[n], b, rtol=0, atol=0, msg=n)
    qkv = "encoder.blocks.0.attn.qkv.weight"
    assert not torch.equal(params[qkv].detach(), before[qkv])  # the trainable part trained


def test_fte_stage_freezes_the_auxiliary_branches(data_root: Path, tmp_path: Path) -> None:
    cfg = from_dict(ExperimentConfig, tiny(data_root, [{"name": "fte", "kind": "fte", "epochs": 1}]))
    trainer = StageTrainer(cfg, cfg.stages[0], tmp_path / "fte", None, torch.device("cpu"), None, False)
    aux = [p for n, p in trainer.model.named_parameters() if n.startswith(("aux_mask.", "aux_noise."))]
    assert aux and not any(p.requires_grad for p in aux)
    in_optimizer = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert not any(id(p) in in_optimizer for p in aux)
    assert all(id(p) in in_optimizer for n, p in trainer.model.named_parameters() if n.startswith("fte."))


# --- amp_dtype, SkipSampler ---------------------------------------------------------------------------------


def test_amp_dtype(monkeypatch) -> None:
    cpu, cuda = torch.device("cpu"), torch.device("cuda", 0)
    assert amp_dtype("off", cpu) is None and amp_dtype("off", cuda) is None
    assert amp_dtype("fp16", cpu) == torch.float16 and amp_dtype("fp16", cuda) == torch.float16
    assert amp_dtype("bf16", cpu) == torch.bfloat16 and amp_dtype("bf16", cuda) == torch.bfloat16
    # auto on a CPU: bf16 only where the CPU computes it natively, float32 (no autocast) elsewhere.
    for avx512_bf16, amx, expected in ((True, False, torch.bfloat16), (False, True, torch.bfloat16),
                                       (False, False, None)):  # fmt: skip
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda v=avx512_bf16: v)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda v=amx: v)
        assert amp_dtype("auto", cpu) == expected
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_dtype("auto", cuda) == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_dtype("auto", cuda) == torch.float16


class EpochSampler(torch.utils.data.Sampler[int]):
    """A permutation of range(n) that depends on the epoch."""

    def __init__(self, n: int) -> None:
        self.n, self.epoch = n, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.epoch)).tolist())

    def __len__(self) -> int:
        return self.n


@pytest.mark.parametrize("skip", [0, 1, 5, 9, 10, 14])
def test_skip_sampler(skip: int) -> None:
    base = EpochSampler(10)
    s = SkipSampler(base, skip)
    s.set_epoch(3)
    assert base.epoch == 3
    full = list(base)
    got = list(s)
    assert got == full[skip:]
    assert len(s) == len(got) == max(0, 10 - skip)
    assert list(s) == got  # iterable again, same order


def test_skip_sampler_on_the_loader_resumes_at_the_batch() -> None:
    base = EpochSampler(12)
    full = [b.tolist() for b in torch.utils.data.DataLoader(list(range(12)), batch_size=4, sampler=base)]
    skipped = torch.utils.data.DataLoader(list(range(12)), batch_size=4, sampler=SkipSampler(base, 4))
    assert len(skipped) == 2
    assert [b.tolist() for b in skipped] == full[1:]


# --- wall-time budget ---------------------------------------------------------------------------------


def test_stage_budget_stops_early_and_still_finishes(data_root: Path, tmp_path: Path) -> None:
    epochs = 3
    cfg = from_dict(
        ExperimentConfig,
        tiny(data_root, [{"name": "single", "kind": "single", "epochs": epochs, "minutes": 1e-4}]),
    )
    out = tmp_path / "run"
    summary = run_training(cfg, out)
    (stage,) = summary["stages"]
    assert 0 < stage["steps"] < epochs * STEPS_PER_EPOCH
    assert stage["epochs"] < epochs
    assert stage["val"] is not None and 0.0 <= stage["val"]["all"]["Total"] <= 100.0
    final = read_checkpoint(out / "single" / "final.pt")
    assert final["step"] == stage["steps"]
    reports = list((out / "single").glob("val_epoch*/report.json"))
    assert len(reports) >= 1
    model, _ = load_model(out / "single" / "final.pt")
    assert model.encoder is None
    # the same config without a budget trains every step
    full = copy.deepcopy(cfg)
    full.stages[0].minutes = 0.0
    full.stages[0].epochs = 1
    assert run_training(full, tmp_path / "full")["stages"][0]["steps"] == STEPS_PER_EPOCH


# --- step budget --------------------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [3, STEPS_PER_EPOCH + 2])
def test_stage_steps_set_its_length_past_the_epoch_cap(data_root: Path, tmp_path: Path, steps: int) -> None:
    # epochs: 1 would end the stage after 4 steps; a step budget replaces it, shorter or longer
    stage = {"name": "single", "kind": "single", "epochs": 1, "steps": steps}
    cfg = from_dict(ExperimentConfig, tiny(data_root, [stage], val_every=1))
    summary = run_training(cfg, tmp_path / "run")
    (done,) = summary["stages"]
    assert done["steps"] == steps and done["epochs"] == steps // STEPS_PER_EPOCH
    final = read_checkpoint(tmp_path / "run" / "single" / "final.pt")
    # the schedule is fitted to the step budget: the cosine ends at the last step
    assert final["step"] == final["total_steps"] == steps
    assert done["val"] is not None


def test_stage_steps_must_not_be_negative() -> None:
    with pytest.raises(ValueError, match="steps must be >= 0"):
        StageConfig(name="s", kind="single", steps=-1)
