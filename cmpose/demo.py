"""``cmpose demo``: the whole method on the embedded default, on a CPU, within a time budget.

1. generate the synthetic PoseTrack-format benchmark (``cmpose synth``);
2. pretrain the tiny backbone and head on single frames (the paper starts from COCO weights;
   starting the temporal model from scratch wastes steps, each clip costing T backbone passes);
3. CM-Pose stage 1 (MCL) from that backbone, then stage 2 (FTE) from stage 1;
4. test on the synthetic val split with the detector boxes, their gaps filled from neighbouring
   frames (all frames and hard frames), and with the detector boxes as given;
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
from cmpose.engine.config import ExperimentConfig
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
            pictures): this fraction of it plus these seconds. That work took 13-24 s both in
            the 10- and the 120-minute demo; a fraction alone (0.05) had left 5.6 of 120
            minutes unused, and 0.1 had left 49 s of 10 minutes.
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
    """

    minutes: float = 10.0
    shares: tuple[float, ...] = (0.5, 0.3, 0.2)
    reserve: float = 0.02
    reserve_seconds: float = 20.0
    synth: SynthConfig = field(
        default_factory=lambda: SynthConfig(
            videos=400, frames=10, people=(1, 3), hard_ratio=0.2, val_ratio=0.2
        )
    )
    showcase: SynthConfig | None = field(
        default_factory=lambda: SynthConfig(
            videos=1, frames=100, people=(2, 3), hard_ratio=0.2, val_ratio=1.0, seed=1
        )
    )
    extra_train_per_minute: float = 8.0
    max_extra_train: int = 880

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


def plan_stages(cfg: ExperimentConfig, plan: DemoPlan, seconds_left: float) -> ExperimentConfig:
    """Give each stage its share of the training time (``StageConfig.minutes``)."""
    if len(plan.shares) != len(cfg.stages):
        raise ValueError(f"{len(plan.shares)} budget shares for {len(cfg.stages)} stages")
    train_min = max(0.5, (seconds_left * (1.0 - plan.reserve) - plan.reserve_seconds) / 60.0)
    total = sum(plan.shares)
    stages = [
        # At least 0.01 min: a budget of 0 would mean "no limit".
        dataclasses.replace(s, minutes=max(0.01, round(train_min * share / total, 3)))
        for s, share in zip(cfg.stages, plan.shares, strict=True)
    ]
    return dataclasses.replace(cfg, stages=stages)


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
    train = run_training(cfg, run_dir)
    final = Path(train["final_checkpoint"])
    model, _ = load_model(final, "cpu")  # once, for the second test pass and the pictures
    plain = plain_boxes_report(model, cfg, out)
    pictures = write_pictures(model, final, cfg, out, video, showcase)
    elapsed = time.perf_counter() - t0
    summary = write_summary(out, cfg, plan, train, pictures, synth_s, elapsed, plain)
    return summary
