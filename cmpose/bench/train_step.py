"""Training-step time of an experiment's stage models on the CPU, with attention computed by
PyTorch's ``scaled_dot_product_attention`` or by cmpose's plain product (``vit.CPU_BF16_MATH``).

One step = forward with targets (the auxiliary branches included for MCL), backward and an AdamW
update, on random clips of the config's batch size and crop size, under bf16 autocast as
``run.amp: auto`` trains on the CPU. The two attention paths are timed alternately within each
repeat, so a busy shared machine slows both alike; the median of ``repeats`` timed steps after
``warmup`` untimed ones is reported, with the ratio sdpa / math.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch

from cmpose.engine.config import ExperimentConfig
from cmpose.engine.stages import build_stage_model, stage_clip
from cmpose.errors import ConfigError
from cmpose.models import vit

PATHS = ("math", "sdpa")


def training_step(
    cfg: ExperimentConfig, kind: str, batch_size: int, seed: int, amp: torch.dtype | None
) -> Callable[[], None]:
    """One training step of ``cfg``'s first ``kind`` stage model on fixed random clips of the
    config's crop size (forward with targets, backward, AdamW), under ``amp`` autocast (None:
    float32). The auxiliary branches' draws come from a generator seeded with ``seed``."""
    stages = [s for s in cfg.stages if s.kind == kind]
    if not stages:
        raise ConfigError(f"the config has no {kind!r} stage")
    stage = stages[0]
    torch.manual_seed(seed)
    model = build_stage_model(cfg, stage).train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    T = stage_clip(cfg, stage).num_frames
    (W, H), (Wh, Hh) = cfg.data.crop.image_size, cfg.data.crop.heatmap_size
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(batch_size, T, 3, H, W, generator=g)
    target = torch.rand(batch_size, model.cfg.num_joints, Hh, Wh, generator=g)
    targets = {
        "target": target / target.sum((-2, -1), keepdim=True),
        "target_weight": torch.ones(batch_size, model.cfg.num_joints),
    }

    def step() -> None:
        with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
            out = model(clip, targets, torch.Generator().manual_seed(seed))
        out["loss"]["total"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    return step


def run_step_benchmark(
    cfg: ExperimentConfig,
    kinds: list[str],
    batch_size: int | None = None,
    repeats: int = 7,
    warmup: int = 2,
    threads: int = 2,
) -> list[dict]:
    """Median seconds per training step for each stage kind and attention path."""
    torch.set_num_threads(threads)
    batch_size = batch_size or cfg.data.batch_size
    results = []
    for kind in kinds:
        step = training_step(cfg, kind, batch_size, seed=0, amp=torch.bfloat16)
        times: dict[str, list[float]] = {p: [] for p in PATHS}
        try:
            for r in range(warmup + repeats):
                for path in PATHS:
                    vit.CPU_BF16_MATH = path == "math"
                    t0 = time.perf_counter()
                    step()
                    if r >= warmup:
                        times[path].append(time.perf_counter() - t0)
        finally:
            vit.CPU_BF16_MATH = True
        med = {p: statistics.median(v) for p, v in times.items()}
        results.append(
            {
                "kind": kind,
                "batch_size": batch_size,
                "threads": threads,
                "median_s": med,
                "runs_s": times,
                "sdpa_over_math": med["sdpa"] / med["math"],
            }
        )
    return results
