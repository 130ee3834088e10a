"""``cmpose ablate``: single-frame baseline, temporal encoder, + masked-token task, + denoising,
full CM-Pose, from one single-frame-pretrained backbone (see ``cmpose.engine.ablate``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="train the ablation variants (a)-(e) and tabulate mAP, hard-frame mAP, TCIS recall",
        description="Pretrain on single frames once, then train each variant for the same epochs and seed "
        "from that backbone, test each on val (detector boxes) and write ablation.json / ablation.md.",
    )
    p.add_argument("config", type=Path, nargs="?", default=None, help="experiment YAML (default demo_cpu)")
    p.add_argument("--data", type=Path, required=True, help="dataset root (e.g. made by cmpose synth)")
    p.add_argument("--out", type=Path, default=Path("runs/ablate"))
    p.add_argument("--epochs", type=int, default=4, help="epochs of every variant (default 4)")
    p.add_argument("--fte-epochs", type=int, default=1, help="of which FTE in variant (e) (default 1)")
    p.add_argument("--pretrain-minutes", type=float, default=4.0, help="single-frame pretraining budget")
    p.add_argument("--variants", nargs="*", default=None, help="subset of a_single b_temporal c_mask ...")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from cmpose.config import load_config
    from cmpose.demo import CONFIG_DIR
    from cmpose.engine.ablate import VARIANTS, ablation_markdown, run_ablation
    from cmpose.engine.config import ExperimentConfig, StageConfig

    cfg = load_config(ExperimentConfig, args.config or CONFIG_DIR / "demo_cpu.yaml", args.overrides)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(args.data.resolve())))
    pretrain = StageConfig(name="pretrain", kind="single", epochs=1000, minutes=args.pretrain_minutes)
    unknown = set(args.variants or ()) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {list(VARIANTS)}")
    results = run_ablation(
        cfg, args.out, epochs=args.epochs, fte_epochs=args.fte_epochs, pretrain=pretrain,
        variants=tuple(args.variants or VARIANTS),
    )  # fmt: skip
    print(ablation_markdown(results))  # noqa: T201
    return 0
