"""``cmpose demo`` (the end-to-end job arrives with the training issue; until then it says what
it will do)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

PLAN = """cmpose demo will, on this machine's CPU and with no downloads:
  1. generate a small synthetic PoseTrack-format dataset (cmpose synth),
  2. pretrain the tiny single-frame model, then train CM-Pose stage 1 (multitask) and stage 2
     (causal token selection + clustering) on it (cmpose train),
  3. evaluate with the PoseTrack mAP (cmpose evaluate) and write overlay videos, heatmaps and
     token maps (cmpose infer).
Not built yet: this release has the data pipeline (cmpose data check / show), the PoseTrack
evaluation (cmpose evaluate) and the benchmarks (cmpose bench)."""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run the end-to-end demo on the embedded default")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    print(PLAN)  # noqa: T201
    return 0
