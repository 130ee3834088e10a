"""``cmpose infer``: a model (a cmpose checkpoint, or ViTPose / mmpose / converted weights) on a
video (file or frame folder) of any length: an overlay MP4, a JSON-lines file of poses per frame,
a PoseTrack18 JSON and COCO keypoint results and, on request, token-map pictures."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer",
        help="run a trained model on a video: overlay MP4, JSON lines, PoseTrack18 and COCO JSON",
        description="Detect (or read) person boxes, track them, and estimate every tracked person's pose in "
        "every frame with the checkpoint's clip (T frames, its test step). Each (frame, person) crop goes "
        "through the backbone once; its tokens are reused by every clip holding the frame. Writes "
        "OUT/<video>.mp4 (skeletons, boxes, track ids), OUT/<video>.jsonl (one line per frame), "
        "OUT/posetrack/<video>.json (PoseTrack18, for cmpose evaluate) and OUT/coco/<video>.json (COCO "
        "keypoint results). Outside weights (ViTPose .pth, mmpose 1.x, safetensors) run as the "
        "single-frame model. See docs/inference.md.",
    )
    p.add_argument("video", type=Path, help="a video file, or a folder of frame images (sorted by name)")
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a cmpose training checkpoint (.pt), or outside pose weights: ViTPose .pth (classic or simple "
        "head), an mmpose 1.x file, a cmpose convert .safetensors",
    )
    p.add_argument(
        "--config",
        default=None,
        metavar="NAME|PATH",
        help="outside weights only: the config of crop size, clip step, flip test and amp (default "
        "posetrack18_vitb; the model part is fitted to the weights)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument(
        "--format",
        default="all",
        help="outputs to write: a comma list of mp4, jsonl, posetrack, coco (default all)",
    )
    p.add_argument(
        "--boxes",
        default=None,
        help="person boxes read from a file: a COCO results JSON ({frame_index | image_name | image_id, "
        "bbox, score} list), a MOT-challenge det.txt/gt.txt, Ultralytics YOLO labels (a labels folder or "
        ".txt) or YOLO to_json() per frame (.json); the kind is guessed from extension and content, or "
        "given by a prefix coco:, mot:, yolo:. Also 'gt:ANNOTATION.json' (PoseTrack GT boxes of this "
        "video) and, as before, 'hog'. Default: --detector's boxes",
    )
    p.add_argument(
        "--detector",
        default=None,
        metavar="hog|onnx:MODEL.onnx",
        help="person detector run on every frame when --boxes is not given: 'hog' (OpenCV's HOG people "
        "detector: weak, no download; the default) or 'onnx:MODEL.onnx' (a YOLOv5/v8/11 person detector "
        "exported to ONNX, run with onnxruntime: pip install 'cmpose[onnx]')",
    )
    p.add_argument(
        "--smooth",
        action="store_true",
        help="One-Euro filter of the keypoints per track and joint (causal; off by default; see "
        "docs/inference.md)",
    )
    p.add_argument(
        "--smooth-params",
        default=None,
        metavar="MIN_CUTOFF,BETA",
        help="One-Euro parameters for --smooth (implies it): min cutoff in Hz and beta in 1/(box sizes per "
        "second); default 4.0,2.0",
    )
    p.add_argument(
        "--out", type=Path, default=Path("outputs/infer"), help="output folder (default outputs/infer)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)")
    p.add_argument("--no-flip", action="store_true", help="no flip test (about 2x faster)")
    p.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "off"],
        default=None,
        help="mixed precision (default: the checkpoint's run.amp; auto = bf16 where supported)",
    )
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="only the first N frames")
    p.add_argument(
        "--token-maps",
        type=int,
        nargs="?",
        const=50,
        default=None,
        metavar="N",
        help="every N frames (default 50) a PNG of the largest person's token maps (importance, "
        "kept/clustered tokens) into OUT/<video>_tokens/",
    )
    p.add_argument("--batch-size", type=int, default=32, help="crops per backbone call (default 32)")
    p.add_argument("--score-threshold", type=float, default=0.2, help="detections below it are dropped")
    p.add_argument("--min-score", type=float, default=0.3, help="joints drawn in the overlay need more")
    p.add_argument("--fps", type=float, default=None, help="frame rate of a frame folder (default 25)")
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch (default: torch's; 1 is faster for small models on a busy machine)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from cmpose.api import load_inference_model
    from cmpose.engine.dist import parse_device
    from cmpose.errors import CmposeError
    from cmpose.infer.outputs import parse_formats
    from cmpose.infer.video_io import FrameSource

    if args.max_frames is not None and args.max_frames < 1:
        raise CmposeError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.token_maps is not None and args.token_maps < 1:
        raise CmposeError(f"--token-maps must be >= 1, got {args.token_maps}")
    if args.batch_size < 1:
        raise CmposeError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out.exists() and not args.out.is_dir():
        raise CmposeError(f"--out {args.out}: is a file; the outputs go into a folder")
    formats = parse_formats(args.format)
    device = str(parse_device(args.device))
    args.box_spec, args.smooth_values = _box_spec(args), _smooth_values(args)
    # Open the input first: a wrong path fails before the model loads.
    FrameSource(args.video, args.max_frames, args.fps)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    loaded = load_inference_model(args.checkpoint, args.config, overrides=args.overrides, device=device)
    try:
        stats = _infer(args, loaded, formats, device)
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, which cmpose turns into the same): the outputs are written to hidden
        # temporaries and renamed only at the end, so nothing half-written is left under its name.
        log.error("interrupted: no output written for %s (128 + SIGINT)", args.video)
        return 130
    maps = stats["token_maps_dir"]
    print(  # noqa: T201
        f"{stats['frames']} frames at {stats['fps']:.2f} frames/s -> "
        + ", ".join(str(p) for p in stats["outputs"].values())
        + (f", {stats['token_maps']} token-map PNGs in {maps}" if maps else "")
    )
    return 0


def _infer(args: argparse.Namespace, loaded, formats: tuple[str, ...], device: str):  # noqa: ANN001, ANN202
    from cmpose.api import infer_video

    return infer_video(
        loaded,
        args.video,
        args.out,
        formats=formats,
        boxes=args.box_spec,
        smooth=args.smooth_values,
        device=device,
        flip_test=False if args.no_flip else None,
        amp=args.amp,
        max_frames=args.max_frames,
        fps=args.fps,
        token_maps_every=args.token_maps,
        batch_size=args.batch_size,
        score_threshold=args.score_threshold,
        min_score=args.min_score,
    )


def _box_spec(args: argparse.Namespace) -> str:
    """--boxes (a file, gt:, hog) or --detector (hog, onnx:MODEL), not both; default hog."""
    from cmpose.errors import CmposeError

    if args.boxes is not None and args.detector is not None:
        raise CmposeError("give --boxes (boxes from a file) or --detector (run a detector), not both")
    if args.detector is not None and not (args.detector == "hog" or args.detector.startswith("onnx:")):
        raise CmposeError(f"--detector must be 'hog' or 'onnx:MODEL.onnx', got {args.detector!r}")
    return args.boxes or args.detector or "hog"


def _smooth_values(args: argparse.Namespace) -> tuple[float, float] | None:
    """(min_cutoff, beta) of the One-Euro filter, or None without --smooth / --smooth-params."""
    from cmpose.errors import CmposeError
    from cmpose.infer.smooth import DEFAULT_BETA, DEFAULT_MIN_CUTOFF, parse_smooth_params

    if args.smooth_params is not None:
        try:
            return parse_smooth_params(args.smooth_params)
        except ValueError as err:
            raise CmposeError(f"--smooth-params: {err}") from None
    return (DEFAULT_MIN_CUTOFF, DEFAULT_BETA) if args.smooth else None
