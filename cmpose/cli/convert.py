"""``cmpose convert``: any supported checkpoint (ViTPose, MAE, mmpretrain / mmpose 1.x, ours) to a
safetensors file in our key layout, written atomically."""

from __future__ import annotations

import argparse
from pathlib import Path

from cmpose.checkpoint import FORMATS


def parse_grid(text: str) -> tuple[int, int]:
    """'16x12' -> (16, 12): token rows x columns (256x192 input, patch 16, ViTPose padding 2)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 16x12, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be positive, got {text!r}")
    return h, w


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="checkpoint -> cmpose safetensors",
        description="Read a ViTPose, MAE, mmpretrain/mmpose-1.x or cmpose checkpoint (.pth/.pt/.bin/.ckpt "
        "read with weights_only=True, or .safetensors), map it to cmpose's key layout (ViTPose's pos-embed "
        "class slot folded in, pos-embed resampled to --grid) and write it as safetensors.",
    )
    p.add_argument("input", type=Path, help="checkpoint to read")
    p.add_argument("output", type=Path, help="file to write (.safetensors)")
    p.add_argument("--format", dest="fmt", choices=("auto", *FORMATS), default="auto", help="source layout")
    p.add_argument(
        "--grid",
        type=parse_grid,
        default=None,
        help="target token grid, e.g. 16x12; default: the checkpoint's",
    )
    p.add_argument(
        "--source-grid", type=parse_grid, default=None, help="the checkpoint's grid if neither square nor 4:3"
    )
    p.add_argument(
        "--head", choices=("keep", "drop"), default="keep", help="keep or drop keypoint_head.final_layer"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.checkpoint import CheckpointError, map_vitpose_state_dict, read_state_dict, save_state_dict

    if args.output.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{args.output}: the output must be a .safetensors file")
    try:
        sd, notes = map_vitpose_state_dict(
            read_state_dict(args.input), args.grid, fmt=args.fmt, source_grid=args.source_grid, head=args.head
        )
    except CheckpointError as err:
        raise err if str(args.input) in str(err) else CheckpointError(f"{args.input}: {err}") from err
    save_state_dict(args.output, sd, metadata={"format": "cmpose", "source_format": notes.format})
    print(f"{args.input} -> {args.output}: {len(sd)} tensors")  # noqa: T201
    for line in notes.lines():
        print(f"  {line}")  # noqa: T201
    return 0
