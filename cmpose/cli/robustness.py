"""``cmpose robustness``: PoseTrack mAP of a checkpoint under image corruptions, mPC and rPC."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from cmpose.robustness import CORRUPTIONS

    p = sub.add_parser(
        "robustness",
        help="test a checkpoint under image corruptions (mAP per corruption and severity, mPC, rPC)",
        description="Runs `cmpose test` on the clean frames, then once per corruption and severity with the "
        "corruption applied to the model's input crops; writes robustness.json, robustness.md and "
        "robustness.png. Data and test settings come from CONFIG when given, else from the checkpoint. "
        "See docs/evaluation.md, 'Robustness'.",
    )
    p.add_argument("config", type=Path, nargs="?", default=None, help="experiment YAML (optional)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a cmpose training checkpoint (.pt)")
    p.add_argument(
        "--corruptions",
        default=",".join(CORRUPTIONS),
        help=f"comma-separated, from {','.join(CORRUPTIONS)} (default: all)",
    )
    p.add_argument("--severities", default="1,2,3,4,5", help="comma-separated, from 1-5 (default: all)")
    p.add_argument(
        "--frames",
        default="all",
        choices=["key", "all"],
        help="corrupt the keyframe only or every clip frame (default: all; frame_drop ignores it)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the corruptions (default 0)")
    p.add_argument("--boxes", default=None, help="'gt', 'detections' (the config's file) or a detector JSON")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the checkpoint)")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def parse_list(text: str, allowed: tuple, option: str, cast: type = str) -> list:
    """A comma-separated option value -> its items (each in ``allowed``, no repeats, order kept)."""
    from cmpose.errors import ConfigError

    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ConfigError(
            f"{option}: empty; expected a comma-separated list from {','.join(map(str, allowed))}"
        )
    out = []
    for item in items:
        try:
            value = cast(item)
        except ValueError:
            value = None
        if value not in allowed:
            raise ConfigError(f"{option}: {item!r} is not one of {','.join(map(str, allowed))}")
        if value in out:
            raise ConfigError(f"{option}: {item!r} is given twice")
        out.append(value)
    return out


def run(args: argparse.Namespace) -> int:
    from cmpose.cli.test import resolve_test_setup
    from cmpose.engine import dist
    from cmpose.engine.trainer import amp_dtype
    from cmpose.robustness import CORRUPTIONS, SEVERITIES
    from cmpose.robustness.report import robustness_markdown
    from cmpose.robustness.run import run_robustness

    corruptions = parse_list(args.corruptions, CORRUPTIONS, "--corruptions")
    severities = parse_list(args.severities, SEVERITIES, "--severities", int)
    # Model, boxes and clip exactly as `cmpose test` chooses them, so the clean numbers are its numbers.
    t = resolve_test_setup(args, what="the results")
    model, device, cfg, data, clip, test = t.model, t.device, t.cfg, t.data, t.clip, t.test
    out = args.out or args.checkpoint.parent / f"robustness_{args.split}"
    report = run_robustness(
        model,
        data,
        clip,
        test,
        out,
        device,
        amp_dtype(cfg.run.amp, device),
        corruptions=corruptions,
        severities=severities,
        frames=args.frames,
        seed=args.seed,
        split=args.split,
    )
    dist.cleanup()
    if report is not None:
        print(robustness_markdown(report))  # noqa: T201
        print(f"written to {out}")  # noqa: T201
    return 0
