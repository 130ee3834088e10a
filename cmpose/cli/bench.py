"""``cmpose bench``: speed benchmarks whose results are written to a JSON file."""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from cmpose.utils.io import atomic_write_json

log = logging.getLogger(__name__)
T = TypeVar("T")


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    return w, h


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="speed benchmarks (results written to a JSON file)")
    bsub = p.add_subparsers(dest="bench", metavar="BENCHMARK")
    bsub.required = True

    lo = bsub.add_parser("loader", help="training data-loader throughput (clips/s)")
    lo.add_argument(
        "--image-size", type=_size, nargs="+", default=[(1280, 720)], help="frame sizes, e.g. 1280x720"
    )
    lo.add_argument("--sampler", choices=["random", "grouped", "both"], default="both")
    lo.add_argument("--workers", type=int, default=2)
    lo.add_argument("--batch-size", type=int, default=32)
    lo.add_argument("--videos", type=int, default=8)
    lo.add_argument("--frames", type=int, default=30)
    lo.add_argument("--people", type=int, default=6)
    lo.add_argument("--repeats", type=int, default=5)
    lo.add_argument(
        "--work-dir", type=Path, default=None, help="where the toy JPEGs go (default: a temp dir)"
    )
    lo.add_argument("--out", type=Path, default=Path("outputs/bench/loader.json"))
    lo.set_defaults(func=run_loader)

    ev = bsub.add_parser("eval", help="PoseTrack mAP evaluation time on a full-size generated load")
    ev.add_argument("--videos", type=int, default=170)
    ev.add_argument("--frames", type=int, default=30)
    ev.add_argument("--people", type=int, default=10)
    ev.add_argument("--repeats", type=int, default=5)
    ev.add_argument("--work-dir", type=Path, default=None)
    ev.add_argument("--out", type=Path, default=Path("outputs/bench/eval.json"))
    ev.set_defaults(func=run_eval)

    mo = bsub.add_parser("model", help="model parameters, FLOPs per clip and CPU latency per clip")
    mo.add_argument(
        "--sizes", nargs="+", choices=["tiny", "small", "base"], default=["tiny", "small", "base"]
    )
    mo.add_argument(
        "--variants",
        nargs="+",
        choices=["single", "stage1", "stage2"],
        default=["single", "stage1", "stage2"],
    )
    mo.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8])
    mo.add_argument("--repeats", type=int, default=5, help="timed runs per batch size (median reported)")
    mo.add_argument("--warmup", type=int, default=1, help="untimed runs before the timed ones")
    mo.add_argument("--threads", type=int, default=2, help="torch threads")
    mo.add_argument(
        "--base-batch-sizes", type=int, nargs="+", default=[1], help="batch sizes for base (slow on a CPU)"
    )
    mo.add_argument("--base-repeats", type=int, default=None, help="repeats for base (default: --repeats)")
    mo.add_argument("--out", type=Path, default=Path("outputs/bench/model.json"))
    mo.set_defaults(func=run_model)

    st = bsub.add_parser(
        "step", help="CPU training-step time per stage, attention by SDPA or by the plain product (bf16)"
    )
    st.add_argument(
        "--config", type=Path, default=None, help="experiment YAML (default: configs/demo_cpu.yaml)"
    )
    st.add_argument("--kinds", nargs="+", choices=["single", "mcl", "fte"], default=["single", "mcl", "fte"])
    st.add_argument("--batch-size", type=int, default=None, help="default: the config's data.batch_size")
    st.add_argument("--repeats", type=int, default=7)
    st.add_argument("--warmup", type=int, default=2)
    st.add_argument("--threads", type=int, default=2)
    st.add_argument("--out", type=Path, default=Path("outputs/bench/step.json"))
    st.set_defaults(func=run_step)


def _with_work_dir(work_dir: Path | None, fn: Callable[[Path], T]) -> T:
    if work_dir is not None:
        return fn(work_dir)
    with tempfile.TemporaryDirectory(prefix="cmpose-bench-") as tmp:
        return fn(Path(tmp))


def run_loader(args: argparse.Namespace) -> int:
    from cmpose.bench.loader import run_loader_benchmark

    samplers = ["random", "grouped"] if args.sampler == "both" else [args.sampler]
    results = []

    def go(work: Path) -> None:
        for size in args.image_size:
            for sampler in samplers:
                r = run_loader_benchmark(
                    work,
                    image_size=size,
                    videos=args.videos,
                    frames=args.frames,
                    people=args.people,
                    workers=args.workers,
                    batch_size=args.batch_size,
                    sampler=sampler,
                    repeats=args.repeats,
                )
                results.append(r)
                print(  # noqa: T201
                    f"{size[0]}x{size[1]} sampler={sampler:8s} workers={args.workers}: "
                    f"median {r['median_clips_per_s']:.1f} clips/s "
                    f"(runs: {', '.join(f'{x:.1f}' for x in r['clips_per_s'])})"
                )

    _with_work_dir(args.work_dir, go)
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results})
    log.info("results written to %s", args.out)
    return 0


def run_eval(args: argparse.Namespace) -> int:
    from cmpose.bench.eval_speed import run_eval_benchmark

    r = _with_work_dir(
        args.work_dir,
        lambda work: run_eval_benchmark(work, args.videos, args.frames, args.people, args.repeats),
    )
    print(f"evaluate: {r}")  # noqa: T201
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "result": r})
    log.info("results written to %s", args.out)
    return 0


def run_model(args: argparse.Namespace) -> int:
    from cmpose.bench.model import markdown_table, run_model_benchmark

    results = run_model_benchmark(
        sizes=args.sizes,
        variants=args.variants,
        batch_sizes=args.batch_sizes,
        repeats=args.repeats,
        warmup=args.warmup,
        threads=args.threads,
        base_batch_sizes=args.base_batch_sizes,
        base_repeats=args.base_repeats,
    )
    columns = sorted({x["batch_size"] for r in results for x in r["latency"]})
    print(markdown_table(results, columns))  # noqa: T201
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results})
    log.info("results written to %s", args.out)
    return 0


def run_step(args: argparse.Namespace) -> int:
    from cmpose.bench.train_step import run_step_benchmark
    from cmpose.config import load_config
    from cmpose.demo import CONFIG_DIR
    from cmpose.engine.config import ExperimentConfig

    cfg = load_config(ExperimentConfig, args.config or CONFIG_DIR / "demo_cpu.yaml")
    results = run_step_benchmark(cfg, args.kinds, args.batch_size, args.repeats, args.warmup, args.threads)
    for r in results:
        m = r["median_s"]
        print(  # noqa: T201
            f"{r['kind']:6s} batch {r['batch_size']}: math {m['math']:.3f} s/step, "
            f"sdpa {m['sdpa']:.3f} s/step (sdpa / math = {r['sdpa_over_math']:.2f})"
        )
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results})
    log.info("results written to %s", args.out)
    return 0
