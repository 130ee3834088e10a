"""``cmpose demo``: synthetic data -> single-frame pretraining -> CM-Pose stage 1 and 2 -> test
-> video inference and pictures, on the CPU, within ``--minutes``."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="the end-to-end job on the embedded synthetic benchmark",
        description="Generate the synthetic PoseTrack-format benchmark, pretrain on single frames, train "
        "CM-Pose stage 1 (MCL) and stage 2 (FTE), test with the PoseTrack mAP (detector boxes, their gaps "
        "filled from neighbouring frames, and as given), run video "
        "inference and write a summary folder, all within --minutes of wall time.",
    )
    p.add_argument("--minutes", type=float, default=10.0, help="wall-time budget (default 10)")
    p.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default runs/demo)")
    p.add_argument("--video", type=Path, default=None, help="also run the model on this video (HOG boxes)")
    p.add_argument(
        "--config", type=Path, default=None, help="experiment YAML (default: configs/demo_cpu.yaml)"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0, help="seed of the data and of training")
    p.add_argument(
        "--no-control",
        dest="control",
        action="store_false",
        help="skip the time-matched single-frame control (its time goes to the stages instead)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.demo import DemoPlan, run_demo
    from cmpose.engine.testing import boxes_label, summary_line
    from cmpose.eval.posetrack import format_table

    if args.minutes <= 0:
        raise SystemExit("--minutes must be > 0")
    plan = DemoPlan(minutes=args.minutes, control=args.control)
    synth = dataclasses.replace(plan.synth, seed=args.seed)
    # The showcase video gets the next seed: other people than the training data's.
    showcase = dataclasses.replace(plan.showcase, seed=args.seed + 1) if plan.showcase else None
    plan = dataclasses.replace(plan, synth=synth, showcase=showcase)
    summary = run_demo(args.out, plan, args.config, [f"run.seed={args.seed}", *args.overrides], args.video)
    test = summary["test"]
    print(f"\ncmpose demo finished in {summary['elapsed_seconds'] / 60:.1f} min; results in {args.out}")  # noqa: T201
    if test:
        print(f"synthetic val, {boxes_label(test)}:")  # noqa: T201
        print(format_table(test["all"]))  # noqa: T201
        if test.get("hard"):
            print("hard frames only:")  # noqa: T201
            print(format_table(test["hard"]))  # noqa: T201
    control = summary.get("control")
    if test and control and control.get("val"):
        print(  # noqa: T201
            f"single frame for the same time ({control['matched_seconds']:.0f} s more pretraining): "
            f"{summary_line(control['val'])} (CM-Pose: {summary_line(test)})"
        )
    if summary.get("test_without_gap_fill"):
        print(f"the detector's boxes as given: {summary_line(summary['test_without_gap_fill'])}")  # noqa: T201
    return 0
