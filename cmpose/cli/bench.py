"""``cmpose bench``: speed benchmarks whose results are written to a JSON file."""

from __future__ import annotations

import argparse
import logging
import os
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
    ev.add_argument(
        "--track", action="store_true", help="time the pose-tracking metrics (evaluate --track) instead"
    )
    ev.add_argument("--work-dir", type=Path, default=None)
    ev.add_argument(
        "--out",
        type=Path,
        default=None,
        help="default outputs/bench/eval.json (eval_track.json with --track)",
    )
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
    _timing_args(mo, repeats=5, warmup=1)
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
    _timing_args(st, repeats=7, warmup=2)
    st.add_argument("--out", type=Path, default=Path("outputs/bench/step.json"))
    st.set_defaults(func=run_step)

    rc = bsub.add_parser(
        "recipes",
        help="training-step time of several recipes (stage kind + overrides) side by side, as ratios "
        "to the first (default: single frame against MCL / FTE with and without the cheaper-step settings)",
    )
    rc.add_argument("--config", default="demo_cpu", help="experiment YAML, or a packaged config's name")
    rc.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value for every recipe (repeatable)")  # fmt: skip
    rc.add_argument("--recipe", dest="recipes", action="append", default=[], metavar="LABEL=KIND[:K=V,...]",
                    help="a recipe (repeatable; the first is the reference; default: built-in)")  # fmt: skip
    rc.add_argument("--batch-size", type=int, default=None, help="default: the config's data.batch_size")
    _timing_args(rc, repeats=5, warmup=2)
    rc.add_argument("--out", type=Path, default=Path("outputs/bench/recipes.json"))
    rc.set_defaults(func=run_recipes)

    gr = bsub.add_parser(
        "grads",
        help="per-term gradient norms on the shared layers (encoder, last backbone block) at chosen steps",
    )
    gr.add_argument("config", type=Path, help="experiment YAML (its data.root must hold a dataset)")
    gr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, as for cmpose train (repeatable)")  # fmt: skip
    gr.add_argument("--stage", default="mcl", help="stage name (default mcl)")
    gr.add_argument("--at", type=int, nargs="+", default=[0, 200], help="steps to measure before")
    gr.add_argument("--device", default="cpu")
    gr.add_argument("--out", type=Path, default=Path("outputs/bench/grads.json"))
    gr.set_defaults(func=run_grads)

    tr = bsub.add_parser(
        "train",
        help="training rehearsal at real size: the config's stages for N steps on a synthetic "
        "PoseTrack18-layout set of 1280x720 JPEGs (clips/s, data wait vs compute, memory, losses)",
    )
    tr.add_argument(
        "--config", default="posetrack18_vitb", help="experiment YAML, or a packaged config's name"
    )
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, as for cmpose train (repeatable)")  # fmt: skip
    tr.add_argument("--stages", nargs="+", default=None, metavar="NAME", help="default: every stage")
    tr.add_argument("--steps", type=int, default=3, help="timed steps per stage")
    tr.add_argument("--warmup", type=int, default=1, help="untimed steps before them")
    tr.add_argument("--batch-size", type=int, default=None, help="per process (default: the config's)")
    tr.add_argument("--workers", type=int, default=None, help="loader processes (default: data.workers)")
    tr.add_argument("--amp", choices=["auto", "bf16", "fp16", "off"], default=None, help="default: run.amp")
    tr.add_argument("--compile", action="store_true", help="torch.compile the model")
    tr.add_argument("--ddp", action="store_true", help="wrap the model in DDP on a 1-process group")
    tr.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: run.device)")
    tr.add_argument("--videos", type=int, default=4,
                    help="synthetic videos, train and val (PoseTrack18: 593 train + 170 val)")  # fmt: skip
    tr.add_argument("--frames", type=int, default=30, help="frames per video, all labelled in train")
    tr.add_argument("--people", default="4", help="people per video: a count or a range ('2-6')")
    tr.add_argument("--image-size", type=_size, default=(1280, 720), help="frame size (default 1280x720)")
    tr.add_argument("--seed", type=int, default=0, help="synthetic set's seed")
    tr.add_argument("--data-dir", type=Path, default=Path("outputs/bench/rehearsal_data"),
                    help="where the synthetic sets are written and reused")  # fmt: skip
    tr.add_argument("--out", type=Path, default=Path("outputs/bench/train.json"))
    tr.set_defaults(func=run_train)

    inf = bsub.add_parser(
        "infer",
        help="video inference speed: frames/s and cost per person-frame of CM-Pose against the "
        "single-frame ViT, and what the token cache saves against recomputing every clip",
    )
    inf.add_argument(
        "--sizes", nargs="+", choices=["tiny", "small", "base"], default=["tiny", "small", "base"]
    )
    inf.add_argument("--people", type=int, nargs="+", default=[1, 5], help="people per frame")
    inf.add_argument("--frames", type=int, default=12, help="frames of the synthetic stream")
    inf.add_argument("--base-frames", type=int, default=6, help="frames for base (slow on a CPU)")
    inf.add_argument("--repeats", type=int, default=5, help="timed rounds (median reported)")
    inf.add_argument("--warmup", type=int, default=1, help="untimed rounds before them")
    inf.add_argument("--batch-size", type=int, default=32, help="crops per backbone call, as cmpose infer")
    inf.add_argument("--flip", action="store_true", help="with the flip test (cmpose infer's default)")
    inf.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    inf.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    inf.add_argument(
        "--amp",
        choices=["auto", "bf16", "fp16", "off"],
        default="off",
        help="autocast (default off: float32)",
    )
    inf.add_argument("--out", type=Path, default=Path("outputs/bench/infer.json"))
    inf.set_defaults(func=run_infer)


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
        lambda work: run_eval_benchmark(
            work, args.videos, args.frames, args.people, args.repeats, track=args.track
        ),
    )
    print(f"evaluate: {r}")  # noqa: T201
    out = args.out or Path("outputs/bench/eval_track.json" if args.track else "outputs/bench/eval.json")
    atomic_write_json(out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "result": r})
    log.info("results written to %s", out)
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


def run_grads(args: argparse.Namespace) -> int:
    import torch

    from cmpose.bench.grad_share import measure_gradient_shares
    from cmpose.config import load_config
    from cmpose.engine.config import ExperimentConfig

    cfg = load_config(ExperimentConfig, args.config, args.overrides)
    r = measure_gradient_shares(cfg, args.stage, sorted(set(args.at)), torch.device(args.device))
    for m in r["measurements"]:
        for group, norms in m["norms"].items():
            terms = ", ".join(f"{k} {v:.3g}" for k, v in norms.items())
            print(f"step {m['step']} {group}: gradient norms {terms}")  # noqa: T201
    r.update(config=str(args.config), overrides=args.overrides, load=list(os.getloadavg()))
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "result": r})
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


def run_recipes(args: argparse.Namespace) -> int:
    from cmpose.api import resolve_config
    from cmpose.bench.step_recipes import DEFAULT_RECIPES, parse_recipe, run_recipe_benchmark

    cfg = resolve_config(args.config, args.overrides)
    recipes = [parse_recipe(r) for r in args.recipes] or list(DEFAULT_RECIPES)
    load_start = os.getloadavg()
    results = run_recipe_benchmark(cfg, recipes, args.batch_size, args.repeats, args.warmup, args.threads)
    for r in results:
        print(f"{r['label']:48s} {r['median_s']:.3f} s/step  x{r['ratio_to_first']:.2f}")  # noqa: T201
    atomic_write_json(
        args.out,
        {
            "date": time.strftime("%Y-%m-%d %H:%M:%S"),
            "config": str(args.config),
            "overrides": args.overrides,
            # 1-, 5-, 15-minute load averages before and after: a busy machine slows every recipe.
            "load": [list(load_start), list(os.getloadavg())],
            "results": results,
        },
    )
    log.info("results written to %s", args.out)
    return 0


def run_train(args: argparse.Namespace) -> int:
    from cmpose.api import config_path, resolve_config
    from cmpose.bench.rehearsal import RehearsalOptions, run_rehearsal, table
    from cmpose.bench.rehearsal_data import ensure_set, synth_config

    path = config_path(args.config)
    cfg = resolve_config(path, args.overrides)
    opts = RehearsalOptions(
        steps=args.steps,
        warmup=args.warmup,
        stages=args.stages,
        batch_size=args.batch_size,
        workers=args.workers,
        amp=args.amp,
        device=args.device,
        compile=args.compile,
        ddp=args.ddp,
    )
    synth = synth_config(args.videos, args.frames, args.people, args.image_size, args.seed)
    report = run_rehearsal(cfg, opts, ensure_set(args.data_dir, synth), str(path), args.overrides)
    print(table(report))  # noqa: T201
    atomic_write_json(args.out, report)
    log.info("results written to %s", args.out)
    return 0


def run_infer(args: argparse.Namespace) -> int:
    from cmpose.bench.infer_speed import markdown_table, run_infer_benchmark
    from cmpose.errors import CmposeError

    if min(args.people) < 1 or args.frames < 1 or args.base_frames < 1 or args.repeats < 1:
        raise CmposeError("--people, --frames, --base-frames and --repeats must be >= 1")
    import torch

    from cmpose.engine.dist import parse_device
    from cmpose.engine.trainer import amp_dtype

    device = parse_device(args.device)
    results = run_infer_benchmark(
        device=device,
        amp=amp_dtype(args.amp, torch.device(device)),
        sizes=args.sizes,
        people=args.people,
        frames=args.frames,
        repeats=args.repeats,
        warmup=args.warmup,
        batch_size=args.batch_size,
        flip=args.flip,
        threads=args.threads,
        base_frames=args.base_frames,
    )
    print(markdown_table(results))  # noqa: T201
    atomic_write_json(args.out, {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "results": results})
    log.info("results written to %s", args.out)
    return 0


def _timing_args(parser: argparse.ArgumentParser, repeats: int, warmup: int, threads: int = 2) -> None:
    """--repeats / --warmup / --threads of a timing benchmark (its medians are over the repeats)."""
    parser.add_argument("--repeats", type=int, default=repeats, help="timed runs (median reported)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed runs before the timed ones")
    parser.add_argument("--threads", type=int, default=threads, help="torch threads")
