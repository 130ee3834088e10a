"""``cmpose export``: a trained model's inference graph (clip in, heatmaps out) as an ONNX file."""

from __future__ import annotations

import argparse
from pathlib import Path

# The largest heatmap difference ``--check`` accepts (the bound; float32 graphs of the
# tiny and ViT-B models are far below it, docs/inference.md "Export").
CHECK_TOLERANCE = 1e-4


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a model's inference graph to ONNX (clip -> heatmaps)",
        description="Write the inference forward of a single-frame, stage-1 or stage-2 model as ONNX: input "
        "'clip' (batch, T, 3, H, W) float32 normalised RGB crops, output 'heatmaps' (batch, J, Hh, Wh). TCIS "
        "top-K and DPC-KNN clustering are in the graph; cropping, flip test and decoding are not. Needs "
        "pip install 'cmpose[onnx]'. See docs/inference.md, 'Export'.",
    )
    p.add_argument(
        "--checkpoint",
        type=Path,
        required=True,
        help="a cmpose training checkpoint; with --config, also ViTPose/converted weights (as init_model)",
    )
    p.add_argument("--onnx", type=Path, required=True, help="the .onnx file to write (atomically)")
    p.add_argument(
        "--batch", type=int, default=None, metavar="N", help="fix the batch size to N (default: dynamic)"
    )
    p.add_argument("--opset", type=int, default=None, metavar="N", help="ONNX opset (default 18)")
    p.add_argument(
        "--check",
        action="store_true",
        help="run the file in onnxruntime on random clips (batch 1 and 3, or N) and print the largest "
        f"heatmap difference to PyTorch; exit 1 when it is over {CHECK_TOLERANCE:g}",
    )
    p.add_argument(
        "--time",
        action="store_true",
        help="also print PyTorch and onnxruntime CPU latency (median of 5 after 2 warm-ups, batch 1 or N)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads of torch and onnxruntime for --check / --time (default: torch's)",
    )
    p.add_argument(
        "--config",
        default=None,
        help="build the model from this experiment YAML / packaged config instead of the checkpoint's",
    )
    p.add_argument("--stage", default=None, help="with --config: the stage whose model is exported")
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.api import export_onnx

    if args.threads is not None:
        import torch

        from cmpose.errors import CmposeError

        if args.threads < 1:
            raise CmposeError(f"--threads must be >= 1, got {args.threads}")
        torch.set_num_threads(args.threads)
    result = export_onnx(
        args.checkpoint,
        args.onnx,
        config=args.config,
        stage=args.stage,
        overrides=args.overrides,
        batch=args.batch,
        opset=args.opset,
        check=args.check,
        benchmark=args.time,
    )
    shape = ", ".join(str(v) for v in result.input_shape)
    out = ", ".join(str(v) for v in result.output_shape)
    print(  # noqa: T201
        f"{args.checkpoint} -> {result.path}: {result.kind} model, clip ({shape}) float32 -> heatmaps "
        f"({out}), opset {result.opset}, {result.num_bytes / 1e6:.1f} MB"
    )
    worst = 0.0
    for batch, diff in result.max_abs_diff.items():
        print(f"  onnxruntime vs PyTorch, batch {batch}: max |heatmap difference| {diff:.3g}")  # noqa: T201
        worst = max(worst, diff)
    if result.latency is not None:
        torch_s, ort_s = result.latency
        print(  # noqa: T201
            f"  CPU latency, batch {args.batch or 1} (median of 5): PyTorch {torch_s * 1e3:.1f} ms, "
            f"onnxruntime {ort_s * 1e3:.1f} ms (onnxruntime / PyTorch {ort_s / torch_s:.2f})"
        )
    if worst > CHECK_TOLERANCE:
        print(f"  over the tolerance {CHECK_TOLERANCE:g}")  # noqa: T201
        return 1
    return 0
