"""``cmpose data check`` and ``cmpose data show``."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import cv2
import numpy as np

from cmpose.config import load_config
from cmpose.data.check import check_source, discover_sources
from cmpose.errors import DataError

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="inspect PoseTrack-format datasets")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True

    c = dsub.add_parser("check", help="count a dataset and list every problem found")
    c.add_argument("root", type=Path, help="dataset root, split folder, or annotation file")
    c.add_argument(
        "--image-root", type=Path, default=None, help="folder the image file names are relative to"
    )
    c.add_argument(
        "--all-frames", action="store_true", help="also check that every (unlabelled) frame exists"
    )
    c.add_argument("--pt17-layout", choices=["original", "renamed"], default="original")
    c.add_argument(
        "--max-problems", type=int, default=30, help="problems listed per source (all are counted)"
    )
    c.set_defaults(func=run_check)

    s = dsub.add_parser(
        "show", help="draw GT skeletons of a video (contact sheet) or a training clip into PNGs"
    )
    s.add_argument("annotations", type=Path, help="annotation file or folder of per-video files")
    s.add_argument("--image-root", type=Path, default=None)
    s.add_argument("--pt17-layout", choices=["original", "renamed"], default="original")
    s.add_argument("--video", default=None, help="video id (default: the first)")
    s.add_argument("--max-frames", type=int, default=12, help="labelled frames on the contact sheet")
    s.add_argument(
        "--clip",
        type=int,
        nargs="*",
        default=None,
        metavar="INDEX",
        help="draw these samples as the data loader produces them (crops, GT, heatmaps)",
    )
    s.add_argument(
        "--train", action="store_true", help="with --clip: training mode (random step and augmentation)"
    )
    s.add_argument(
        "--config", type=Path, default=None, help="YAML with data settings (clip, crop, augment, loader)"
    )
    s.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    s.add_argument("--out", type=Path, default=Path("outputs/show"))
    s.set_defaults(func=run_show)


def run_check(args: argparse.Namespace) -> int:
    sources = discover_sources(args.root)
    n_errors = 0
    for name, paths in sources.items():
        report = check_source(name, paths, args.image_root, args.all_frames, args.pt17_layout)
        if report is None:
            print(f"== {name}: detection boxes, not annotations (skipped)")  # noqa: T201
            continue
        counts = report.counts()
        print(f"== {name}")  # noqa: T201
        for k, v in counts.items():
            print(f"  {k.replace('_', ' '):18s} {v}")  # noqa: T201
        items = report.problems.items
        print(f"  problems           {len(items)} ({report.problems.summary()})")  # noqa: T201
        for p in items[: args.max_problems]:
            print(f"    [{p.severity}] {p.kind}: {p.message}")  # noqa: T201
        if len(items) > args.max_problems:
            print(f"    ... {len(items) - args.max_problems} more (--max-problems)")  # noqa: T201
        n_errors += report.problems.num_errors
    return 1 if n_errors else 0


def run_show(args: argparse.Namespace) -> int:
    from cmpose.data.readers import read_annotations
    from cmpose.viz.sheets import clip_sheet, video_sheet

    data = read_annotations(args.annotations, args.image_root, pt17_layout=args.pt17_layout)
    if not data.videos:
        raise DataError("no videos found", path=args.annotations)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.clip is None:
        video_id = args.video or sorted(data.videos)[0]
        if video_id not in data.videos:
            raise DataError(
                f"no video {video_id!r}; videos: {sorted(data.videos)[:10]}", path=args.annotations
            )
        sheet = video_sheet(data, video_id, args.max_frames)
        out = args.out / f"{video_id}_sheet.png"
        _write_png(out, sheet)
        return 0

    from cmpose.data.dataset import PoseTrackClipDataset
    from cmpose.data.show_config import ShowDataConfig

    cfg = load_config(ShowDataConfig, args.config, args.overrides)
    people = [p for p in data.people if args.video is None or p.video_id == args.video]
    ds = PoseTrackClipDataset(
        people,
        data.videos,
        train=args.train,
        clip=cfg.clip,
        crop=cfg.crop,
        augment=cfg.augment,
        loader=cfg.loader,
    )
    for index in args.clip or [0]:
        if not 0 <= index < len(ds):
            raise DataError(f"sample {index} out of range: {len(ds)} samples", path=args.annotations)
        person = ds.samples[index]
        out = args.out / f"{person.video_id}_f{person.frame_index:06d}_track{person.track_id}_clip.png"
        _write_png(out, clip_sheet(ds, index))
    return 0


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise RuntimeError(f"PNG encoding failed for {path}")
    from cmpose.utils.io import atomic_write_bytes

    atomic_write_bytes(path, buf.tobytes())
    log.info("wrote %s (%dx%d)", path, img.shape[1], img.shape[0])
