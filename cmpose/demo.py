"""``cmpose demo``: the whole method on the embedded default, on a CPU, within a time budget.

1. generate the synthetic PoseTrack-format benchmark (``cmpose synth``);
2. pretrain the tiny backbone and head on single frames (the paper starts from COCO weights;
   starting the temporal model from scratch wastes steps, each clip costing T backbone passes);
3. CM-Pose stage 1 (MCL) from that backbone, then stage 2 (FTE) from stage 1;
4. a single-frame control trained from step 2 for as long as step 3 took (``cmpose.demo_control``);
   test on the synthetic val split with the detector boxes, their gaps filled from neighbouring
   frames (all frames, hard frames, per joint class), and with the detector boxes as given;
5. video inference on a val video (and ``--video``), a token-importance picture;
6. ``summary.json`` / ``summary.md``, the training curves, the overlay MP4.
The training stages share the budget left after data generation, minus a reserve for steps 4-6.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cmpose.config import load_config
from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.synth import SynthConfig, generate
from cmpose.utils.io import atomic_write_json

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class DemoPlan:
    """How the demo spends its budget.

    Args:
        minutes: total wall time.
        shares: fractions of the training time for the stages, in the config's order.
        reserve / reserve_seconds: what is kept of the time left after data generation for the
            work outside the stages' budgets (each stage's final validation, the video and the
            pictures): this fraction of it plus these seconds, when the first stage is
            planned. That work took 13-24 s both in the 10- and the 120-minute demo on a CPU
            with bf16; a fraction alone (0.05) had left 5.6 of 120 minutes unused, and 0.1 had
            left 49 s of 10 minutes. On a slower CPU the validations took longer and the demo
            overran by 30 s, so the later stages are re-planned from the measured validation
            time (``replan_stage``); ``reserve_seconds`` is then what the pictures keep.
        synth: the synthetic dataset (generated once per output folder and reused). Many short
            videos: the number of distinct people and scenes, not of frames, is what the tiny
            model is short of (docs/results.md, "Training data").
        extra_train_per_minute / max_extra_train: training videos added to ``synth`` per minute
            of budget beyond 10 minutes, up to a cap. A longer run makes more passes over the
            same people, and the tiny model then learns them rather than the task
            (docs/results.md, "Longer budgets"); the val videos stay the same
            (``SynthConfig.extra_train_videos``), so every budget is measured on one val set.
            The cap bounds memory: every frame stays decoded (about 0.7 MB a frame at 640x360).
        showcase: one longer val-like video for the overlay MP4 (the benchmark's own videos are
            a fraction of a second long); ``None`` uses the first val video. Its seed must
            differ from the data's, so that its people are not in the training set.
        control: also continue the single-frame pretraining for as long as the temporal stages
            trained (``cmpose.demo_control``), and show both in the summary, per joint class: what
            the temporal stages bought at equal time. The stages' shares are then of the time
            left after the control's (equal to the temporal stages'), so each gets less.
    """

    minutes: float = 10.0
    shares: tuple[float, ...] = (0.5, 0.3, 0.2)
    reserve: float = 0.02
    reserve_seconds: float = 20.0
    synth: SynthConfig = field(
        # Version 2: transient occlusions and keyframe-only blur, and every GT joint's class
        # (visible / hidden here but visible within the clip / hidden throughout; docs/synthetic.md).
        default_factory=lambda: SynthConfig(
            videos=400, frames=10, people=(1, 3), hard_ratio=0.2, val_ratio=0.2, version=2
        )
    )
    showcase: SynthConfig | None = field(
        default_factory=lambda: SynthConfig(
            videos=1, frames=100, people=(2, 3), hard_ratio=0.2, val_ratio=1.0, seed=1
        )
    )
    extra_train_per_minute: float = 8.0
    max_extra_train: int = 880
    control: bool = True

    def __post_init__(self) -> None:
        if self.showcase is not None and self.showcase.seed == self.synth.seed:
            raise ValueError(
                "the showcase video's seed must differ from the data's (its people would be seen)"
            )

    def dataset(self) -> SynthConfig:
        """``synth`` with the training videos this budget adds."""
        extra = min(self.max_extra_train, round(self.extra_train_per_minute * max(0.0, self.minutes - 10.0)))
        return dataclasses.replace(self.synth, extra_train_videos=self.synth.extra_train_videos + extra)


def _synth_data(out: Path, synth: SynthConfig) -> float:
    """Generate the dataset unless the same one is already there; returns the seconds spent."""
    marker = out / "synth_config.json"
    wanted = json.loads(json.dumps(dataclasses.asdict(synth), default=str))
    if marker.is_file() and json.loads(marker.read_text()) == wanted:
        log.info("reusing the synthetic dataset in %s", out)
        return 0.0
    if out.exists():
        shutil.rmtree(out)
    t0 = time.perf_counter()
    generate(out, synth)
    atomic_write_json(marker, wanted)
    return time.perf_counter() - t0


def control_share(cfg: ExperimentConfig, plan: DemoPlan) -> float:
    """The control's share of the training time, on the scale of ``plan.shares``: the temporal
    stages' shares together (0 without a control)."""
    from cmpose.demo_control import has_control

    if not (plan.control and has_control(cfg)):
        return 0.0
    return sum(sh for s, sh in zip(cfg.stages, plan.shares, strict=True) if s.kind != "single")


def plan_stages(cfg: ExperimentConfig, plan: DemoPlan, seconds_left: float) -> ExperimentConfig:
    """Give each stage its share of the training time (``StageConfig.minutes``); with a control,
    the training time includes the control's."""
    if len(plan.shares) != len(cfg.stages):
        raise ValueError(f"{len(plan.shares)} budget shares for {len(cfg.stages)} stages")
    train_min = max(0.5, (seconds_left * (1.0 - plan.reserve) - plan.reserve_seconds) / 60.0)
    total = sum(plan.shares) + control_share(cfg, plan)
    stages = [
        # At least 0.01 min: a budget of 0 would mean "no limit".
        dataclasses.replace(s, minutes=max(0.01, round(train_min * share / total, 3)))
        for s, share in zip(cfg.stages, plan.shares, strict=True)
    ]
    return dataclasses.replace(cfg, stages=stages)


def replan_stage(
    cfg: ExperimentConfig,
    plan: DemoPlan,
    index: int,
    stage: StageConfig,
    done: list[dict[str, Any]],
    seconds_left: float,
) -> StageConfig:
    """The budget of stage ``index`` from the time actually left, once a stage has finished.

    ``plan_stages`` splits the time before the first stage, when nothing is measured; the demo
    overran its 10 minutes by 30 s on a CPU where validations took longer than its fixed reserve.
    From the second stage on, the reserve is measured: every validation still to come (each
    remaining stage's final one, the control's and the test without gap filling) is assumed to
    take as long as the last one, T times as long when the last model saw one frame and this one
    sees T, plus ``plan.reserve_seconds`` for the pictures. With a control (``plan.control``),
    the temporal training still to come, R, is matched by the control, which also matches the
    temporal training already done, D: the time left is 2R + D + the reserve. The rest is split
    by the remaining shares."""
    from cmpose.demo_control import temporal_training_seconds

    if index == 0 or not done:
        return stage
    val = float(done[-1].get("val_seconds") or 0.0)
    if done[-1]["kind"] == "single" and stage.kind != "single":
        val *= cfg.data.clip.num_frames
    shares = plan.shares[index:]
    control = control_share(cfg, plan) > 0
    reserve = (len(shares) + 1 + control) * val + plan.reserve_seconds
    train_s = seconds_left - reserve
    if control:
        train_s = (train_s - temporal_training_seconds(done)) / 2.0
    train_s = max(0.6, train_s)  # at least a few steps
    minutes = max(0.01, round(train_s * shares[0] / sum(shares) / 60.0, 3))
    log.info("stage '%s': %.2f min of training (%.0f s left, %.0f s kept for validations and pictures)",
             stage.name, minutes, seconds_left, reserve)  # fmt: skip
    return dataclasses.replace(stage, minutes=minutes)


def run_demo(
    out: Path,
    plan: DemoPlan,
    config: Path | None = None,
    overrides: list[str] | None = None,
    video: Path | None = None,
) -> dict[str, Any]:
    """Run every step; returns the summary (also written to ``out/summary.json``)."""
    from cmpose.demo_outputs import plain_boxes_report, write_pictures, write_summary
    from cmpose.engine.checkpointing import load_model
    from cmpose.engine.run import run_training

    t0 = time.perf_counter()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    data_dir = out / "data"
    synth = plan.dataset()
    synth_s = _synth_data(data_dir, synth)
    showcase = None
    if plan.showcase is not None:
        synth_s += _synth_data(out / "showcase", plan.showcase)
        showcase = out / "showcase"
    cfg = load_config(ExperimentConfig, config or CONFIG_DIR / "demo_cpu.yaml", overrides)
    # Every frame stays decoded: the loader's cache holds the whole dataset, however large.
    loader = cfg.data.loader
    loader = dataclasses.replace(loader, frame_cache_size=max(loader.frame_cache_size, synth.total_frames))
    cfg = dataclasses.replace(
        cfg, data=dataclasses.replace(cfg.data, root=str(data_dir.resolve()), loader=loader)
    )
    left = plan.minutes * 60.0 - (time.perf_counter() - t0)
    cfg = plan_stages(cfg, plan, left)
    run_dir = out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a demo always trains afresh; its data is what it reuses
    deadline = t0 + plan.minutes * 60.0

    def replan(index: int, stage: StageConfig, done: list[dict[str, Any]]) -> StageConfig:
        return replan_stage(cfg, plan, index, stage, done, deadline - time.perf_counter())

    train = run_training(cfg, run_dir, replan=replan)
    control = None
    if control_share(cfg, plan) > 0:
        from cmpose.demo_control import train_control

        control = train_control(cfg, run_dir, train, out / "control")
    final = Path(train["final_checkpoint"])
    model, _ = load_model(final, "cpu")  # once, for the second test pass and the pictures
    plain = plain_boxes_report(model, cfg, out)
    pictures = write_pictures(model, final, cfg, out, video, showcase)
    elapsed = time.perf_counter() - t0
    summary = write_summary(out, cfg, plan, train, pictures, synth_s, elapsed, plain, control)
    return summary
