"""``cmpose synth``: write a synthetic multi-person video dataset in the PoseTrack2018 layout."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmpose.errors import ConfigError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "synth",
        help="generate synthetic multi-person videos in the PoseTrack2018 layout",
        description="Procedural multi-person videos with PoseTrack2018 annotations (17 joints, head boxes, "
        "track ids, ignore regions), hard-case labels and simulated detector boxes for val; see "
        "docs/synthetic.md. The same seed writes byte-identical files.",
    )
    p.add_argument("out", type=Path, help="dataset root to write (images/, annotations/, detections/)")
    p.add_argument("--videos", type=int, default=10, help="number of videos, train and val together")
    p.add_argument("--frames", type=int, default=60, help="frames per video")
    p.add_argument("--people", default="1-3", help="people per video: a count ('3') or a range ('1-3')")
    p.add_argument("--size", default="640x360", help="frame size WIDTHxHEIGHT")
    p.add_argument(
        "--hard-ratio", type=float, default=0.2, help="fraction of person-frames with a hard case (0..1)"
    )
    p.add_argument("--val-ratio", type=float, default=0.2, help="fraction of the videos in the val split")
    p.add_argument(
        "--extra-train-videos",
        type=int,
        default=0,
        help="training videos added after the --videos ones (the val split stays the same)",
    )
    p.add_argument(
        "--version",
        type=int,
        default=1,
        help="generator version: 1 (default) writes what it always wrote, byte for byte; 2 adds transient "
        "1-3 frame events on labelled frames and the per-joint visible_dt (docs/synthetic.md)",
    )
    p.add_argument(
        "--transient-ratio",
        type=float,
        default=0.5,
        help="version 2: fraction of the labelled frames in the middle of a transient event (0..1)",
    )
    p.add_argument(
        "--class-window",
        type=int,
        default=4,
        help="version 2: frames searched either side of a labelled frame for visible_dt",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quality", type=int, default=90, help="JPEG quality")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.synth import SynthConfig, generate

    try:
        config = SynthConfig(
            videos=args.videos,
            frames=args.frames,
            people=args.people,
            size=args.size,
            hard_ratio=args.hard_ratio,
            val_ratio=args.val_ratio,
            seed=args.seed,
            quality=args.quality,
            extra_train_videos=args.extra_train_videos,
            version=args.version,
            transient_ratio=args.transient_ratio,
            class_window=args.class_window,
        )
    except ValueError as err:
        raise ConfigError(f"cmpose synth: {err}") from err
    s = generate(args.out, config, progress=not args.no_progress)
    hard = ", ".join(f"{k} {v}" for k, v in s.hard_counts.items())
    print(  # noqa: T201
        f"{args.out}: {len(s.train_videos)} train + {len(s.val_videos)} val videos, {s.frames} frames, "
        f"{s.labelled_frames} labelled, {s.people} people ({100 * s.hard_fraction:.0f} % hard: {hard}), "
        f"{s.detections} detector boxes; {s.seconds:.1f} s, {s.frames_per_second:.0f} frames/s"
    )
    if s.visible_dt:  # version 2: labelled-frame joints by the distance to a frame showing them
        dts = ", ".join(f"{k}: {v}" for k, v in s.counts()["visible_dt"].items())
        print(f"joints by visible_dt (-1: not visible within {config.class_window} frames): {dts}")  # noqa: T201
    return 0
