"""``cmpose infer``: a trained model on a video (file or frame folder) of any length: an overlay
MP4, a JSON-lines file of poses per frame and, on request, token-map pictures."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "infer",
        help="run a trained model on a video: overlay MP4 + JSON lines of poses",
        description="Detect (or read) person boxes, track them, and estimate every tracked person's pose in "
        "every frame with the checkpoint's clip (T frames, its test step). Each (frame, person) crop goes "
        "through the backbone once; its tokens are reused by every clip holding the frame. Writes "
        "OUT/<video>.mp4 (skeletons, boxes, track ids) and OUT/<video>.jsonl (one line per frame). "
        "See docs/inference.md.",
    )
    p.add_argument("video", type=Path, help="a video file, or a folder of frame images (sorted by name)")
    p.add_argument("--checkpoint", type=Path, required=True, help="a cmpose training checkpoint (.pt)")
    p.add_argument(
        "--boxes",
        default="hog",
        help="person boxes: a detections JSON ({frame_index | image_name | image_id, bbox, score} list), "
        "'hog' (OpenCV's HOG people detector: weak, no download; the default) or 'gt:ANNOTATION.json' "
        "(PoseTrack GT boxes of this video)",
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

    from cmpose.engine.dist import parse_device
    from cmpose.engine.testing import load_trained_model
    from cmpose.errors import CmposeError
    from cmpose.infer.video_io import FrameSource

    if args.max_frames is not None and args.max_frames < 1:
        raise CmposeError(f"--max-frames must be >= 1, got {args.max_frames}")
    if args.token_maps is not None and args.token_maps < 1:
        raise CmposeError(f"--token-maps must be >= 1, got {args.token_maps}")
    if args.batch_size < 1:
        raise CmposeError(f"--batch-size must be >= 1, got {args.batch_size}")
    if args.out.exists() and not args.out.is_dir():
        raise CmposeError(f"--out {args.out}: is a file; the outputs go into a folder")
    device = str(parse_device(args.device))
    # Open the input first: a wrong path fails before the model loads.
    FrameSource(args.video, args.max_frames, args.fps)
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    model, cfg = load_trained_model(args.checkpoint, device)
    try:
        out_mp4, stats = _infer(args, model, cfg, device)
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM, which cmpose turns into the same): the outputs are written to hidden
        # temporaries and renamed only at the end, so nothing half-written is left under its name.
        log.error("interrupted: no output written for %s (128 + SIGINT)", args.video)
        return 130
    maps = stats["token_maps_dir"]
    print(  # noqa: T201
        f"{stats['frames']} frames at {stats['fps']:.2f} frames/s -> {out_mp4}, "
        f"{out_mp4.with_suffix('.jsonl')}"
        + (f", {stats['token_maps']} token-map PNGs in {maps}" if maps else "")
    )
    return 0


def _infer(args: argparse.Namespace, model, cfg, device: str):  # noqa: ANN001, ANN202
    from cmpose.infer.pipeline import infer_video

    return infer_video(
        model,
        cfg,
        args.video,
        args.out,
        boxes=args.boxes,
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
