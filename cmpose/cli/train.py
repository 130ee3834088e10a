"""``cmpose train``: the configured stages (single-frame pretraining, MCL, FTE), single process
or under ``torchrun --nproc_per_node N`` (DDP)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (all configured stages)",
        description="Train the stages of CONFIG in order, each from the previous one's weights. The same "
        "command runs under torchrun for multi-GPU / multi-node training (DDP).",
    )
    p.add_argument("config", type=Path, help="experiment YAML (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set optim.lr=1e-3 (repeatable)")  # fmt: skip
    p.add_argument("--out", type=Path, default=None, help="run folder (default runs/<config name>)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.config import load_config
    from cmpose.engine import dist
    from cmpose.engine.config import ExperimentConfig
    from cmpose.engine.run import run_training

    cfg = load_config(ExperimentConfig, args.config, args.overrides)
    out = args.out or Path("runs") / args.config.stem
    try:
        summary = run_training(cfg, out, resume=args.resume)
    finally:
        dist.cleanup()
    if dist.is_main():
        for s in summary["stages"]:
            val = s["val"]["all"]["Total"] if s.get("val") else float("nan")
            print(f"{s['name']:>10}: {s['steps']} steps, {s['seconds']:.0f} s, val mAP {val:.1f}")  # noqa: T201
        print(f"run folder: {out}")  # noqa: T201
    return 0
