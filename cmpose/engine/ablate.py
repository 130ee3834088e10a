"""``cmpose ablate``: the parts of CM-Pose switched on one at a time, at equal wall time.

Every variant starts from the same single-frame-pretrained checkpoint (per seed, one shared by
all seeds, or one the user gives, e.g. a single-frame model already trained on PoseTrack) and
gets the same wall-time budget for its training after the pretraining (``StageConfig.minutes``,
the trainer fits its schedule to the steps that fit):

(a) single frame: continues single-frame training for the whole budget (the time-matched
    control: it gets the time the temporal stages get);
(b) T frames + encoder, no auxiliary task; (c) + masked-token task; (d) + denoising task
    (full MCL): one MCL stage for the whole budget;
(e) full CM-Pose: MCL then FTE, the budget split by ``fte_share``;
(f) as (e) but FTE drops the non-causal tokens instead of clustering them (as PPT prunes them;
    ``FTEConfig.cluster = False``).

All variants train on the same training set with the same seed; what differs is how many
samples fit in the budget (a temporal clip costs T backbone passes), recorded per variant
(steps, samples, frames) with the machine's load at the start and end of each run.

With a step budget (``AblationPlan.steps``) every variant trains the same number of optimizer
steps instead (``StageConfig.steps``): equal samples at unequal compute, the paper's equal-epoch
protocol. Beside the equal-time ablation it tells a part that does not pay for its step cost in
the time budget from one that does not help at all, and its result does not depend on the speed
of the machine.
The measurement and the report are in ``ablate_measure`` and ``ablate_report``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from tqdm import tqdm

from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.run import resume_mismatch, run_training
from cmpose.engine.stages import build_stage_model
from cmpose.errors import ConfigError
from cmpose.models.tcis import keep_count
from cmpose.models.token_cluster import cluster_count
from cmpose.utils.io import atomic_write_json

log = logging.getLogger(__name__)

VARIANTS = ("a_single", "b_temporal", "c_mask", "d_mask_noise", "e_cmpose", "f_drop")
LABELS = {
    "a_single": "(a) single frame",
    "b_temporal": "(b) T frames + encoder, no auxiliary task",
    "c_mask": "(c) + masked-token task",
    "d_mask_noise": "(d) + denoising task (full MCL)",
    "e_cmpose": "(e) + FTE (full CM-Pose)",
    "f_drop": "(f) FTE dropping the non-causal tokens (PPT)",
}
# (x, y, what x - y measures): the comparisons the report gives a paired interval for.
PAIRS = (
    ("e_cmpose", "a_single", "full CM-Pose over the time-matched single frame"),
    ("b_temporal", "a_single", "T frames and the encoder over the time-matched single frame"),
    ("d_mask_noise", "b_temporal", "both auxiliary tasks (MCL over plain temporal training)"),
    ("c_mask", "b_temporal", "masking"),
    ("d_mask_noise", "c_mask", "denoising"),
    ("e_cmpose", "d_mask_noise", "FTE"),
    ("f_drop", "e_cmpose", "dropping instead of clustering the non-causal tokens"),
)
# Epoch cap of a budgeted stage: the budget ends it, never the epochs.
BUDGET_EPOCHS = 1000


def parse_variants(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a,b,e"`` or ``["a_single", "e"]`` -> full variant names, in the canonical order."""
    if text is None:
        return VARIANTS
    items = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    by_letter = {v[0]: v for v in VARIANTS}
    chosen = set()
    for item in (i.strip() for i in items if i.strip()):
        name = by_letter.get(item, item)
        if name not in VARIANTS:
            raise ConfigError(f"--variants: unknown variant {item!r}; choose from a-f or {list(VARIANTS)}")
        chosen.add(name)
    if not chosen:
        raise ConfigError("--variants: no variant given")
    return tuple(v for v in VARIANTS if v in chosen)


def fte_step_split(steps: int, fte_share: float) -> tuple[int, int]:
    """(MCL steps, FTE steps) of (e)'s and (f)'s step budget: FTE's share rounded, at least one
    step each, adding up to ``steps`` (>= 2)."""
    if steps < 2:
        raise ValueError("a step budget of (e) and (f) needs >= 2 steps (one MCL, one FTE)")
    fte = min(steps - 1, max(1, round(steps * fte_share)))
    return steps - fte, fte


def variant_config(
    cfg: ExperimentConfig, name: str, minutes: float, fte_share: float, init: Path, steps: int = 0
) -> ExperimentConfig:
    """The experiment of one variant: ``minutes`` of training from the checkpoint ``init``, or
    ``steps`` optimizer steps when ``steps`` > 0 (then ``minutes`` is unused)."""
    if steps < 0 or (not steps and not minutes > 0):
        raise ValueError(f"the budget per variant must be > 0 minutes or > 0 steps, got {minutes}, {steps}")
    aux, fte = cfg.model.aux, cfg.model.fte
    # Each stage kind at the learning rate the config gives that kind (else optim.lr).
    lr = {s.kind: s.lr for s in cfg.stages}

    def stage(kind: Literal["single", "mcl", "fte"], share: float, n_steps: int) -> StageConfig:
        """``share`` of the minutes, or ``n_steps`` of a step budget."""
        if steps:
            return StageConfig(name=kind, kind=kind, epochs=BUDGET_EPOCHS, steps=n_steps, lr=lr.get(kind))
        return StageConfig(
            name=kind, kind=kind, epochs=BUDGET_EPOCHS, minutes=minutes * share, lr=lr.get(kind)
        )

    if name == "a_single":
        stages = [stage("single", 1.0, steps)]
    elif name in ("e_cmpose", "f_drop"):
        if not 0 < fte_share < 1:
            raise ValueError(f"fte_share must be in (0, 1), got {fte_share}")
        mcl_steps, fte_steps = fte_step_split(steps, fte_share) if steps else (0, 0)
        stages = [stage("mcl", 1.0 - fte_share, mcl_steps), stage("fte", fte_share, fte_steps)]
        fte = dataclasses.replace(fte, cluster=name == "e_cmpose")
    elif name in ("b_temporal", "c_mask", "d_mask_noise"):
        stages = [stage("mcl", 1.0, steps)]
        mask, noise = {"b_temporal": (False, False), "c_mask": (True, False), "d_mask_noise": (True, True)}[
            name
        ]
        aux = dataclasses.replace(aux, mask=mask, noise=noise)
    else:
        raise ValueError(f"unknown variant {name!r}; choose from {list(VARIANTS)}")
    model = dataclasses.replace(cfg.model, aux=aux, fte=fte)
    run = dataclasses.replace(cfg.run, init=str(init), val_every=0)
    return dataclasses.replace(cfg, model=model, stages=stages, run=run)


def refinement_tokens(cfg: ExperimentConfig, stage: StageConfig) -> int:
    """Tokens entering the last transformer blocks: N (single frame), J + T*N (encoder), or
    J + K + M (FTE's refinement; M = 0 when the non-causal tokens are dropped)."""
    model = build_stage_model(cfg, stage)
    Hp, Wp = model.grid
    N = Hp * Wp
    if stage.kind == "single":
        return N
    L = model.num_frames * N
    if stage.kind == "mcl":
        return cfg.model.num_joints + L
    K = keep_count(L, cfg.model.fte.keep_ratio)
    M = cluster_count(L - K, cfg.model.fte.cluster_ratio) if cfg.model.fte.cluster and L > K else 0
    return cfg.model.num_joints + K + M


@dataclasses.dataclass
class AblationPlan:
    """What ``run_ablation`` trains and measures.

    Args:
        minutes: wall-time budget of every variant's training after the pretraining.
        fte_share: the share of (e)'s and (f)'s budget that goes to FTE (the rest to MCL).
        pretrain_minutes: budget of the single-frame pretraining.
        seeds: training seeds (data order, augmentation, initialisation, auxiliary masks).
        pretrain: ``per-seed`` pretrains once per seed, so the seeds cover the whole pipeline;
            ``shared`` pretrains once (with the first seed) and starts every seed from it, which
            isolates the variants' own variance and saves (seeds - 1) pretrainings.
        variants: which of ``VARIANTS``.
        num_boot / boot_seed: bootstrap resamples of the val videos and their seed.
        tcis_ratios: keep ratios of the TCIS recall; tcis_samples: val people it uses (None: all).
        robustness: also measure mPC / rPC (``cmpose.robustness``) at ``robustness_severities``
            (every corruption at each; 7 corruptions x 5 severities are 35 val passes a variant).
            Finished runs that lack it (or have it at other severities) are measured, not retrained.
        init: a single-frame checkpoint every seed starts from instead of a pretraining (then
            ``pretrain`` and ``pretrain_minutes`` are unused). A start trained to a plateau makes
            the seeds independent of how fast the machine was during a wall-time pretraining.
        steps: a budget of optimizer steps per variant instead of ``minutes`` (0: the wall-time
            budget). Equal steps are equal samples at unequal compute (a clip costs T backbone
            passes, the auxiliary tasks more): the control for a part's step cost, and a result
            that does not depend on how fast the machine was. (e) and (f) split it by ``fte_share``.
    """

    minutes: float = 15.0
    fte_share: float = 0.4
    pretrain_minutes: float = 4.0
    seeds: tuple[int, ...] = (0, 1, 2)
    pretrain: Literal["per-seed", "shared"] = "per-seed"
    variants: tuple[str, ...] = VARIANTS
    num_boot: int = 1000
    boot_seed: int = 0
    tcis_ratios: tuple[float, ...] = (0.2, 0.3, 0.5)
    tcis_samples: int | None = None
    robustness: bool = False
    robustness_severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    init: Path | None = None
    steps: int = 0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.steps == 1:
            raise ConfigError(f"--budget-steps must be >= 2 (one MCL and one FTE step), got {self.steps}")
        if not self.minutes > 0 or not self.pretrain_minutes > 0:
            raise ConfigError(f"budgets must be > 0 minutes, got {self.minutes} and {self.pretrain_minutes}")
        if not 0 < self.fte_share < 1:
            raise ConfigError(f"--fte-share must be in (0, 1), got {self.fte_share}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError(f"--seeds must be distinct and at least one, got {list(self.seeds)}")
        if self.pretrain not in ("per-seed", "shared"):
            raise ConfigError(f"--pretrain must be per-seed or shared, got {self.pretrain!r}")
        if self.num_boot < 1:
            raise ConfigError(f"--boot must be >= 1, got {self.num_boot}")
        if not self.tcis_ratios or not all(0 < r <= 1 for r in self.tcis_ratios):
            raise ConfigError(f"--tcis-ratios must be in (0, 1], got {list(self.tcis_ratios)}")
        if not self.robustness_severities or not all(1 <= s <= 5 for s in self.robustness_severities):
            raise ConfigError(
                f"--robustness-severities must be in 1..5, got {list(self.robustness_severities)}"
            )
        self.variants = parse_variants(list(self.variants))
        if self.init is not None:
            self.init = Path(self.init)
            if not self.init.is_file():
                raise ConfigError(f"--init: {self.init} is not a file (expected a single-frame checkpoint)")
        if self.robustness:
            from cmpose.engine.ablate_measure import robustness_available

            if not robustness_available():
                raise ConfigError("--robustness needs cmpose.robustness, which this installation lacks")

    def pretrain_dir(self, out: Path, seed: int) -> Path:
        return out / "pretrain" if self.pretrain == "shared" else out / f"seed{seed}" / "pretrain"


def _pretrain(cfg: ExperimentConfig, plan: AblationPlan, out: Path, seed: int) -> Path:
    """The single-frame checkpoint the variants of ``seed`` start from (trained unless finished)."""
    if plan.init is not None:
        return plan.init
    pre_seed = plan.seeds[0] if plan.pretrain == "shared" else seed
    folder = plan.pretrain_dir(out, seed)
    stage = StageConfig(name="pretrain", kind="single", epochs=BUDGET_EPOCHS, minutes=plan.pretrain_minutes)
    pre_cfg = dataclasses.replace(
        cfg, stages=[stage], run=dataclasses.replace(cfg.run, seed=pre_seed, val_every=0)
    )
    final = folder / stage.name / "final.pt"
    if final.is_file():
        # A pretraining made with other settings must not be reused silently.
        problem = resume_mismatch(pre_cfg, folder)
        if problem:
            raise ConfigError(f"{folder}: the finished pretraining is not this plan's ({problem})")
    else:
        run_training(pre_cfg, folder, resume=folder.exists())
    return final


def _stage_rows(vcfg: ExperimentConfig, summary: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for stage, done in zip(vcfg.stages, summary["stages"], strict=True):
        batch = stage.batch_size or vcfg.data.batch_size
        T = 1 if stage.kind == "single" else vcfg.data.clip.num_frames
        rows.append(
            {
                "name": stage.name,
                "kind": stage.kind,
                "budget_minutes": round(stage.minutes, 4),
                "budget_steps": stage.steps or None,
                "steps": done["steps"],
                "samples": done["steps"] * batch,  # per process; one process on the CPU
                "frames": done["steps"] * batch * T,
                "seconds": done["seconds"],
                "val": done["val"]["all"]["Total"] if done.get("val") else None,
            }
        )
    return rows


def _same_run(row: dict[str, Any], key: dict[str, Any]) -> bool:
    """Whether a finished row is the run ``key`` asks for: the same budget (minutes or steps; a row
    from before step budgets has no ``budget_steps``), FTE share and start
    checkpoint (compared as resolved paths: a data root or run folder is often a symlink). How
    the start was made (pretraining mode and minutes) is the start checkpoint's own record
    (``_pretrain`` refuses a finished pretraining made with other settings), so a row made from
    the same file by a per-seed pretraining is the same computation as one given by ``--init``.
    """
    same = ("budget_minutes", "budget_steps", "fte_share")
    if any(row.get(k) != key[k] for k in same) or "init" not in row:
        return False
    return Path(row["init"]).resolve() == Path(key["init"]).resolve()


def _settings_problem(cfg: ExperimentConfig, folder: Path) -> str | None:
    """Why the finished run in ``folder`` was not made with ``cfg`` (None: it was). Its start
    checkpoint counts as the same when the two paths resolve to one file (``_same_run``)."""
    saved_init = None
    try:
        saved = yaml.safe_load((folder / "config.yaml").read_text(encoding="utf-8"))
        saved_init = saved["run"]["init"]
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError):
        pass  # resume_mismatch below names what is wrong with the saved config
    if isinstance(saved_init, str) and cfg.run.init:
        if Path(saved_init).resolve() == Path(cfg.run.init).resolve():
            cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, init=saved_init))
    return resume_mismatch(cfg, folder)


def train_variant(
    cfg: ExperimentConfig, plan: AblationPlan, name: str, seed: int, init: Path, folder: Path
) -> dict[str, Any]:
    """Train one variant of one seed (resuming a run left unfinished) and measure it; the row is
    written to ``folder/ablate_row.json`` and reused when the same plan runs again.

    (f) differs from (e) only in FTE's merge rule: when (e) ran with the same seed, (f) starts its
    FTE stage from (e)'s MCL checkpoint (that stage's record counts in (f)'s budget and steps), so
    the comparison sees the merge rule alone, and the MCL stage is not trained twice.
    """
    from cmpose.engine.ablate_measure import measure_robustness, measure_variant, robustness_missing

    seeded = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, seed=seed))
    vcfg = variant_config(seeded, name, plan.minutes, plan.fte_share, init, steps=plan.steps)
    row_path = folder / "ablate_row.json"
    given = plan.init is not None
    key = {
        "budget_minutes": None if plan.steps else plan.minutes,
        "budget_steps": plan.steps or None,
        "fte_share": plan.fte_share,
        "pretrain": "given" if given else plan.pretrain,
        "pretrain_minutes": None if given else plan.pretrain_minutes,
        "init": str(init),
    }
    train_cfg, shared_stages = vcfg, []
    e_row_path = folder.parent / "e_cmpose" / "ablate_row.json"
    if name == "f_drop" and "e_cmpose" in plan.variants and e_row_path.is_file():
        e_row = json.loads(e_row_path.read_text(encoding="utf-8"))
        mcl_final = folder.parent / "e_cmpose" / "mcl" / "final.pt"
        shared_stages = [{**e_row["stages"][0], "trained_in": "e_cmpose"}]
        train_cfg = dataclasses.replace(
            vcfg, stages=vcfg.stages[1:], run=dataclasses.replace(vcfg.run, init=str(mcl_final))
        )
    if row_path.is_file():
        row = json.loads(row_path.read_text(encoding="utf-8"))
        if _same_run(row, key):
            # A row made with other --set settings (or another config) must not pass for this
            # one: refuse, as --resume does, rather than report it under the new settings.
            problem = _settings_problem(train_cfg, folder)
            if problem:
                raise ConfigError(f"{folder}: the finished run has other settings ({problem})")
            log.info("ablation %s seed %d: finished earlier, reusing %s", name, seed, row_path)
            if robustness_missing(row, plan):
                # --robustness added to a finished ablation: measure the trained model, keep the rest.
                final = folder / train_cfg.stages[-1].name / "final.pt"
                row["robustness"] = measure_robustness(train_cfg, final, folder, plan)
                atomic_write_json(row_path, row)
            return row
        made = {k: row.get(k) for k in ("budget_minutes", "budget_steps", "fte_share", "init")}
        if "init" in row:  # a row from before --init has no start to compare: resumed as before
            raise ConfigError(
                f"{folder}: holds a finished run of another plan ({made}; this plan: "
                f"{ {k: key[k] for k in made} }); give another --out"
            )
    load_start = os.getloadavg()
    t0 = time.perf_counter()
    summary = run_training(train_cfg, folder, resume=folder.exists())
    wall = time.perf_counter() - t0
    load_end = os.getloadavg()
    stages = shared_stages + _stage_rows(train_cfg, summary)
    row: dict[str, Any] = {
        "variant": name,
        "seed": seed,
        **key,
        "stages": stages,
        "steps": sum(s["steps"] for s in stages),
        "samples": sum(s["samples"] for s in stages),
        "frames": sum(s["frames"] for s in stages),
        # Each stage's seconds include its final validation (the trainer's StageResult).
        "train_seconds": round(sum(s["seconds"] for s in stages), 1),
        "wall_seconds": round(wall, 1),
        # 1-, 5-, 15-minute load averages: on a shared machine a busy spell means fewer steps.
        "load_start": [round(x, 2) for x in load_start],
        "load_end": [round(x, 2) for x in load_end],
        "tokens_refinement": refinement_tokens(vcfg, vcfg.stages[-1]),
    }
    row.update(measure_variant(train_cfg, summary, folder, plan))
    atomic_write_json(row_path, row)
    return row


def run_ablation(cfg: ExperimentConfig, out: Path, plan: AblationPlan) -> dict[str, Any]:
    """Pretrain, train every variant of every seed, measure, and write the report
    (``ablation.json``, ``ablation.md``, ``ablation_gains.png`` in ``out``)."""
    from cmpose.engine.ablate_report import write_report

    out = Path(out)
    rows: list[dict[str, Any]] = []
    jobs = [(seed, name) for seed in plan.seeds for name in plan.variants]
    with tqdm(total=len(jobs), desc="ablation", unit="run") as bar:
        for seed, name in jobs:
            bar.set_postfix(seed=seed, variant=name)
            init = _pretrain(cfg, plan, out, seed)
            rows.append(train_variant(cfg, plan, name, seed, init, out / f"seed{seed}" / name))
            log.info("ablation %s seed %d: %d steps in %.0f s", name, seed, rows[-1]["steps"],
                     rows[-1]["train_seconds"])  # fmt: skip
            bar.update(1)
    return write_report(out, cfg, plan, rows)
