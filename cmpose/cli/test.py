"""``cmpose test``: a trained model on a split, PoseTrack mAP (all frames and hard frames); with
``--track`` also pose tracking and the PoseTrack MOTA (``cmpose.engine.testing_track``)."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "test",
        help="test a checkpoint on a split (PoseTrack mAP)",
        description="Inference with flip test, person rescoring and OKS-NMS, per-video PoseTrack files, then "
        "the PoseTrack mAP. Data and test settings come from CONFIG when given, else from the checkpoint.",
    )
    p.add_argument("config", type=Path, nargs="?", default=None, help="experiment YAML (optional)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a cmpose training checkpoint (.pt)")
    p.add_argument("--boxes", default=None, help="'gt', 'detections' (the config's file) or a detector JSON")
    p.add_argument("--split", default="val", choices=["val", "train"])
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--out", type=Path, default=None, help="output folder (default: beside the checkpoint)")
    p.add_argument("--device", default="auto")
    t = p.add_argument_group(
        "tracking",
        "--track: pose tracking over every frame the detection file covers, track ids in the files, "
        "then the mAP and the MOTA tables (docs/inference.md, 'Tracking')",
    )
    t.add_argument("--track", action="store_true", help="track people and report MOTA as well as mAP")
    t.add_argument(
        "--track-oks-weight", type=float, default=1.0, help="weight of the pose OKS (0 = IoU only)"
    )
    t.add_argument("--track-iou-weight", type=float, default=1.0, help="weight of the box IoU")
    t.add_argument("--track-threshold", type=float, default=0.3, help="least similarity of a match")
    t.add_argument("--track-max-gap", type=int, default=4, help="frames a missed person keeps the id")
    t.add_argument("--track-fill", action="store_true", help="pose interpolated boxes in bridged gaps")
    t.add_argument("--track-motion", action="store_true", help="constant-velocity box prediction")
    t.add_argument(
        "--track-joint-threshold", type=float, default=0.25, help="joints scoring less are left out of MOTA"
    )
    p.set_defaults(func=run)


@dataclass
class TestSetup:
    """What ``cmpose test`` (and ``cmpose robustness``, which must give its clean numbers) tests:
    the checkpoint's model on ``device``, the experiment config, and the data / clip / test
    settings after --boxes."""

    model: Any
    device: Any
    cfg: Any
    data: Any
    clip: Any
    test: Any


def resolve_test_setup(args: argparse.Namespace, what: str = "the report") -> TestSetup:
    """The model of ``args.checkpoint`` and the settings of ``args.config`` (else the
    checkpoint's), ``--set`` overrides and ``--boxes`` ('gt', 'detections' or a detector file);
    sets up the process group when run under torchrun."""
    from cmpose.config import apply_overrides, from_dict, load_config, to_dict
    from cmpose.engine import dist
    from cmpose.engine.config import ExperimentConfig
    from cmpose.engine.testing import load_trained_model
    from cmpose.errors import ConfigError

    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise ConfigError(f"--out {args.out}: is a file; {what} goes into a folder")
    device = dist.setup(args.device)
    model, ckpt_cfg = load_trained_model(args.checkpoint, device)
    if args.config is not None:
        cfg = load_config(ExperimentConfig, args.config, args.overrides)
    else:
        cfg = from_dict(ExperimentConfig, apply_overrides(to_dict(ckpt_cfg), args.overrides))
    data, test = cfg.data, cfg.test
    if args.boxes in ("gt", "detections"):
        test = dataclasses.replace(test, boxes=args.boxes)
    elif args.boxes is not None:
        data = dataclasses.replace(data, val_detections=str(Path(args.boxes).resolve()))
        test = dataclasses.replace(test, boxes="detections")
    # The clip the model was trained on: its T, the config's steps (T = 1 for a single-frame stage).
    clip = dataclasses.replace(cfg.data.clip, num_frames=model.num_frames)
    return TestSetup(model, device, cfg, data, clip, test)


def run(args: argparse.Namespace) -> int:
    from cmpose.engine import dist
    from cmpose.engine.testing import report_markdown, run_test
    from cmpose.engine.trainer import amp_dtype

    t = resolve_test_setup(args)
    model, device, cfg, data, clip, test = t.model, t.device, t.cfg, t.data, t.clip, t.test
    out = args.out or args.checkpoint.parent / f"test_{args.split}"
    if args.track:
        from cmpose.engine.testing_track import run_track_test, track_report_markdown, track_settings

        report = run_track_test(
            model,
            data,
            clip,
            test,
            out,
            device,
            amp_dtype(cfg.run.amp, device),
            args.split,
            track_settings(args),
        )
        dist.cleanup()
        print(track_report_markdown(report))  # noqa: T201
        print(f"written to {out}")  # noqa: T201
        return 0
    report = run_test(model, data, clip, test, out, device, amp_dtype(cfg.run.amp, device), split=args.split)
    dist.cleanup()
    if report is not None:
        print(report_markdown(report))  # noqa: T201
        print(f"written to {out}")  # noqa: T201
    return 0
