"""``cmpose evaluate``: PoseTrack pose-estimation mAP (or, with ``--track``, the pose-tracking
metrics), equal to poseval's."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from cmpose.errors import EvaluationError
from cmpose.utils.io import atomic_write_json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="PoseTrack mAP (poseval-equal)",
        description="PoseTrack pose-estimation mAP of per-video prediction files (PoseTrack2018/21 or 2017 "
        "format), equal to poseval's. Ties in scores are ranked stably (see docs/evaluation.md).",
    )
    p.add_argument("--gt", required=True, type=Path, help="folder of per-video GT JSON files")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--pred", type=Path, help="folder of prediction files with the same names")
    what.add_argument(
        "--box-ceiling",
        type=Path,
        metavar="DETECTIONS",
        help="instead: the mAP a perfect pose model would reach on these person boxes (GT poses "
        "on the boxes that match a person; docs/evaluation.md)",
    )
    p.add_argument(
        "--box-score-threshold", type=float, default=0.2, help="with --box-ceiling: boxes below are dropped"
    )
    p.add_argument(
        "--gap-fill",
        type=int,
        default=0,
        metavar="FRAMES",
        help="with --box-ceiling: fill the boxes' gaps from labelled frames up to FRAMES away, as "
        "`cmpose test` with test.gap_fill.max_gap (default 0: off)",
    )
    p.add_argument(
        "--track",
        action="store_true",
        help="with --pred: pose-tracking metrics (MOTA, MOTP, precision, recall) instead of the mAP, "
        "equal to poseval's --evalPoseTracking (docs/evaluation.md, 'Tracking mode')",
    )
    p.add_argument("--json", type=Path, default=None, help="also write the numbers (AP in percent) here")
    p.add_argument("--per-video", action="store_true", help="add one row (and JSON entry) per video")
    p.set_defaults(func=run)


def _nan_to_none(value: object) -> object:
    """JSON has no NaN: a joint without GT (NaN AP, as in poseval) is written as null."""
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def run(args: argparse.Namespace) -> int:
    from cmpose.eval.posetrack import evaluate, format_table

    if args.track and args.box_ceiling is not None:
        raise EvaluationError("--track needs --pred (it scores predicted tracks, not --box-ceiling)")
    if args.json is not None and args.json.is_dir():  # checked before the work, not after it
        raise EvaluationError(f"--json {args.json}: is a folder; name the JSON file to write")

    if args.box_ceiling is not None:
        import tempfile

        from cmpose.data.config import GapFillConfig
        from cmpose.eval.ceiling import box_ceiling

        gap_fill = GapFillConfig(max_gap=args.gap_fill)
        with tempfile.TemporaryDirectory(prefix="cmpose-ceiling-") as tmp:
            report = box_ceiling(
                args.gt, args.box_ceiling, Path(tmp), args.box_score_threshold, gap_fill=gap_fill
            )
        found = f"{report['found']} of {report['people']} people found"
        print(f"GT poses on the boxes of {args.box_ceiling}: {found}")  # noqa: T201
    elif args.track:
        from cmpose.eval.track import evaluate_tracking, format_track_table

        report = evaluate_tracking(args.gt, args.pred, per_video=args.per_video)
        format_table = format_track_table
    else:
        report = evaluate(args.gt, args.pred, per_video=args.per_video)
    print(format_table(report))  # noqa: T201
    if args.json is not None:
        atomic_write_json(args.json, _nan_to_none(report))
    return 0
