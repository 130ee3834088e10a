"""``cmpose ablate``: single frame, temporal encoder, + masked-token task, + denoising, full
CM-Pose, FTE dropping instead of clustering; equal wall time (or equal steps) per variant, several
seeds, paired bootstrap intervals (see ``cmpose.engine.ablate``)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ablate",
        help="train the ablation variants (a)-(f) at equal wall time and report mAP with 95 %% intervals",
        description="Pretrain on single frames (per seed, or once), then train each variant for the same "
        "wall time from that checkpoint: (a) single frame, (b) T frames + encoder, (c) + masking, "
        "(d) + denoising, (e) + FTE, (f) FTE dropping the non-causal tokens. Test each on val, and write "
        "ablation.json / ablation.md / ablation_gains.png: per variant the mean over seeds with a 95 % "
        "paired bootstrap interval over the val videos and the seed spread, per comparison the interval "
        "of the difference, TCIS recall against a centre prior, tokens entering refinement, and the "
        "steps and samples each variant got in its budget. Finished runs in --out are reused.",
    )
    p.add_argument("config", type=Path, nargs="?", default=None, help="experiment YAML (default demo_cpu)")
    p.add_argument("--data", type=Path, required=True, help="dataset root (e.g. made by cmpose synth)")
    p.add_argument("--out", type=Path, default=Path("runs/ablate"))
    p.add_argument(
        "--budget-minutes", type=float, default=15.0, help="training wall time of every variant (default 15)"
    )
    p.add_argument(
        "--budget-steps",
        type=int,
        default=0,
        metavar="N",
        help="train every variant N optimizer steps instead of --budget-minutes (equal steps and samples, "
        "not equal time: the control for a part's step cost; independent of the machine's speed)",
    )
    p.add_argument(
        "--fte-share", type=float, default=0.4, help="share of (e)'s and (f)'s budget for FTE (default 0.4)"
    )
    p.add_argument("--pretrain-minutes", type=float, default=4.0, help="single-frame pretraining budget")
    p.add_argument(
        "--pretrain",
        choices=("per-seed", "shared"),
        default="per-seed",
        help="per-seed: one pretraining per seed (the seeds cover the whole pipeline); shared: one "
        "pretraining with the first seed for all (isolates the variants' variance; cheaper)",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CKPT",
        help="start every seed from this single-frame checkpoint instead of a pretraining (e.g. one "
        "trained to a plateau, or on PoseTrack); --pretrain and --pretrain-minutes are then unused",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds (default 0 1 2)")
    p.add_argument("--variants", default=None, help="subset, e.g. a,b,e or a_single,e_cmpose (default all)")
    p.add_argument("--boot", type=int, default=1000, help="bootstrap resamples of the val videos")
    p.add_argument("--boot-seed", type=int, default=0)
    p.add_argument(
        "--tcis-ratios", type=float, nargs="+", default=[0.2, 0.3, 0.5], help="keep ratios of the TCIS recall"
    )
    p.add_argument("--tcis-samples", type=int, default=None, help="val people for the TCIS recall (all)")
    p.add_argument(
        "--robustness",
        action="store_true",
        help="also mPC / rPC under image corruptions (finished runs in --out are measured, not retrained)",
    )
    p.add_argument(
        "--robustness-severities", type=int, nargs="+", default=[1, 2, 3, 4, 5], help="with --robustness"
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from cmpose.config import load_config
    from cmpose.demo import CONFIG_DIR
    from cmpose.engine.ablate import AblationPlan, run_ablation
    from cmpose.engine.ablate_report import report_markdown
    from cmpose.engine.config import ExperimentConfig
    from cmpose.errors import ConfigError

    try:
        plan = AblationPlan(
            minutes=args.budget_minutes,
            fte_share=args.fte_share,
            pretrain_minutes=args.pretrain_minutes,
            seeds=tuple(args.seeds),
            pretrain=args.pretrain,
            variants=tuple((args.variants or "a,b,c,d,e,f").split(",")),
            num_boot=args.boot,
            boot_seed=args.boot_seed,
            tcis_ratios=tuple(args.tcis_ratios),
            tcis_samples=args.tcis_samples,
            robustness=args.robustness,
            robustness_severities=tuple(args.robustness_severities),
            init=args.init,
            steps=args.budget_steps,
        )
    except ValueError as err:
        raise ConfigError(f"cmpose ablate: {err}") from err
    cfg = load_config(ExperimentConfig, args.config or CONFIG_DIR / "demo_cpu.yaml", args.overrides)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(args.data.resolve())))
    stats = run_ablation(cfg, args.out, plan)
    print(report_markdown(stats, plan))  # noqa: T201
    return 0
