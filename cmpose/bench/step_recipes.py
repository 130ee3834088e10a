"""Training-step time of several recipes of one experiment, side by side, as ratios to the first.

A recipe is a stage kind and ``--set`` overrides (``mcl`` with ``model.backbone.grad_frames=keyframe``
...). Every recipe's step (forward with targets, backward, AdamW update, on random clips of the
config's batch and crop size, under the config's ``run.amp``) is timed once per round, the
recipes in turn, so a busy spell on a shared machine slows them alike; reported is the median of
``repeats`` rounds after ``warmup`` untimed ones, and each median's ratio to the first recipe's.

The default recipes answer "what does a temporal step cost against a single-frame one, and what
do the cheaper-step settings buy" (docs/results.md, "Cheaper temporal steps").
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from cmpose.bench.train_step import training_step
from cmpose.config import apply_overrides, from_dict, to_dict
from cmpose.engine.config import ExperimentConfig
from cmpose.engine.trainer import amp_dtype
from cmpose.errors import ConfigError

CHEAP = ("model.backbone.grad_frames=keyframe", "model.aux.batch_share=0.25")
NO_AUX = ("model.aux.mask=false", "model.aux.noise=false")


@dataclass(frozen=True)
class Recipe:
    """label: its name in the report; kind: single / mcl / fte; overrides: ``--set`` strings."""

    label: str
    kind: str
    overrides: tuple[str, ...] = ()


DEFAULT_RECIPES = (
    Recipe("single", "single"),
    Recipe("mcl", "mcl"),
    Recipe("mcl, neighbours without gradient", "mcl", CHEAP[:1]),
    Recipe("mcl, + auxiliary branches on 1/4 of the batch", "mcl", CHEAP),
    Recipe("mcl, no auxiliary task", "mcl", NO_AUX),
    Recipe("mcl, neighbours without gradient, no auxiliary task", "mcl", (CHEAP[0], *NO_AUX)),
    Recipe("fte", "fte"),
    Recipe("fte, neighbours without gradient", "fte", CHEAP[:1]),
)


def parse_recipe(text: str) -> Recipe:
    """``LABEL=KIND`` or ``LABEL=KIND:KEY=VALUE,KEY=VALUE`` -> ``Recipe``."""
    label, sep, rest = text.partition("=")
    kind, _, sets = rest.partition(":")
    if not sep or not label.strip() or kind not in ("single", "mcl", "fte"):
        raise ConfigError(
            f"--recipe {text!r}: expected LABEL=KIND[:KEY=VALUE,...] with KIND single, mcl or fte"
        )
    return Recipe(label.strip(), kind, tuple(s.strip() for s in sets.split(",") if s.strip()))


def _step_fn(cfg: ExperimentConfig, recipe: Recipe, batch_size: int, seed: int) -> Callable[[], None]:
    rcfg = from_dict(ExperimentConfig, apply_overrides(to_dict(cfg), list(recipe.overrides)))
    if not any(s.kind == recipe.kind for s in rcfg.stages):
        raise ConfigError(f"recipe {recipe.label!r}: the config has no {recipe.kind!r} stage")
    return training_step(rcfg, recipe.kind, batch_size, seed, amp_dtype(rcfg.run.amp, torch.device("cpu")))


def run_recipe_benchmark(
    cfg: ExperimentConfig,
    recipes: Sequence[Recipe] = DEFAULT_RECIPES,
    batch_size: int | None = None,
    repeats: int = 5,
    warmup: int = 2,
    threads: int = 2,
) -> list[dict]:
    """Median seconds per training step of each recipe, and its ratio to the first recipe's."""
    if not recipes:
        raise ConfigError("no recipe to time")
    if repeats < 1 or warmup < 0:
        raise ConfigError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    torch.set_num_threads(threads)
    batch_size = batch_size or cfg.data.batch_size
    steps = [_step_fn(cfg, r, batch_size, seed=0) for r in recipes]
    times: list[list[float]] = [[] for _ in recipes]
    for rnd in range(warmup + repeats):
        for i, step in enumerate(steps):
            t0 = time.perf_counter()
            step()
            if rnd >= warmup:
                times[i].append(time.perf_counter() - t0)
    medians = [statistics.median(t) for t in times]
    return [
        {
            "label": r.label,
            "kind": r.kind,
            "overrides": list(r.overrides),
            "batch_size": batch_size,
            "threads": threads,
            "median_s": med,
            "ratio_to_first": med / medians[0],
            "runs_s": t,
        }
        for r, med, t in zip(recipes, medians, times, strict=True)
    ]
