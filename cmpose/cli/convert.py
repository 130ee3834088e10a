"""``cmpose convert``: any supported checkpoint (ViTPose, MAE, mmpretrain / mmpose 1.x, ours) to a
safetensors file in our key layout, written atomically once it is known to load into the model
of a config (default: the ViT-B PoseTrack recipe whose ``run.init`` these files are for)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from cmpose.checkpoint import FORMATS

if TYPE_CHECKING:
    from torch import Tensor, nn

    from cmpose.checkpoint import MapNotes
    from cmpose.engine.config import ExperimentConfig


def parse_grid(text: str) -> tuple[int, int]:
    """'16x12' -> (16, 12): token rows x columns (256x192 input, patch 16, ViTPose padding 2)."""
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"grid must look like 16x12, got {text!r}") from None
    if h < 1 or w < 1:
        raise argparse.ArgumentTypeError(f"grid sides must be positive, got {text!r}")
    return h, w


DEFAULT_CONFIG = "posetrack18_vitb"  # the recipe whose run.init these files are for


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "convert",
        help="checkpoint -> cmpose safetensors, checked against a config's model",
        description="Read a ViTPose (classic or simple head, ViTPose+), MAE, mmpretrain/mmpose-1.x or "
        "cmpose checkpoint (.pth/.pt/.bin/.ckpt read with weights_only=True, or .safetensors), map it to "
        "cmpose's key layout (ViTPose's pos-embed class slot folded in, pos-embed resampled to the model's "
        "grid), check that it loads into the model that --config builds, and write it as safetensors. Exits "
        "non-zero, naming each key, when it would not load. docs/checkpoints.md lists the files that import.",
    )
    p.add_argument("input", type=Path, help="checkpoint to read")
    p.add_argument("output", type=Path, help="file to write (.safetensors)")
    p.add_argument("--format", dest="fmt", choices=("auto", *FORMATS), default="auto", help="source layout")
    p.add_argument(
        "--config",
        default=DEFAULT_CONFIG,
        help="experiment YAML or packaged config name whose model (first stage) the weights must load into; "
        f"'none' converts without a model (default: {DEFAULT_CONFIG})",
    )
    p.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="config override"
    )
    p.add_argument(
        "--grid",
        type=parse_grid,
        default=None,
        help="target token grid, e.g. 16x12; default: the config model's (with --config none: the file's)",
    )
    p.add_argument(
        "--source-grid", type=parse_grid, default=None, help="the checkpoint's grid if neither square nor 4:3"
    )
    p.add_argument(
        "--head", choices=("keep", "drop"), default="keep", help="keep or drop keypoint_head.final_layer"
    )
    p.add_argument(
        "--expert", type=int, default=0, help="ViTPose+ files: the expert merged into the MLP (0 = COCO)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from cmpose.checkpoint import (
        CheckpointError,
        file_metadata,
        map_vitpose_state_dict,
        read_metadata,
        read_state_dict,
        save_state_dict,
    )

    if args.output.suffix.lower() != ".safetensors":
        raise CheckpointError(f"{args.output}: the output must be a .safetensors file")
    cfg, model = _config_model(args.config, args.overrides)
    grid = args.grid or (model.backbone.grid if model is not None else None)
    try:
        sd, notes = map_vitpose_state_dict(
            read_state_dict(args.input),
            grid,
            fmt=args.fmt,
            source_grid=args.source_grid,
            head=args.head,
            expert=args.expert,
            metadata=read_metadata(args.input),
        )
    except CheckpointError as err:
        raise err if str(args.input) in str(err) else CheckpointError(f"{args.input}: {err}") from err
    stage = cfg.stages[0].name if cfg is not None else ""
    if cfg is not None and model is not None:
        problems = check_fit(sd, notes, cfg, model)
        if problems:
            raise CheckpointError(
                f"{args.input}: {len(problems)} tensors cannot load into the model of {args.config} "
                f"(stage '{stage}'; nothing written):\n  " + "\n  ".join(problems) + _hint(sd, model)
            )
    save_state_dict(args.output, sd, metadata=file_metadata(notes))
    print(f"{args.input} -> {args.output}: {len(sd)} tensors")  # noqa: T201
    for line in notes.lines():
        print(f"  {line}")  # noqa: T201
    if cfg is not None:
        print(f"  loads into the model of {args.config} (stage '{stage}')")  # noqa: T201
    return 0


def _config_model(config: str, overrides: list[str]) -> tuple[ExperimentConfig | None, nn.Module | None]:
    """The experiment config and its first stage's model; (None, None) for ``none``."""
    if config.lower() == "none":
        if overrides:
            from cmpose.errors import ConfigError

            raise ConfigError(f"--set {overrides[0]}: there is no config to override with --config none")
        return None, None
    from cmpose.api import resolve_config
    from cmpose.engine.stages import build_stage_model

    cfg = resolve_config(config, overrides)
    return cfg, build_stage_model(cfg, cfg.stages[0])


def check_fit(sd: dict[str, Tensor], notes: MapNotes, cfg: ExperimentConfig, first: nn.Module) -> list[str]:
    """Why ``sd`` would not load into ``first`` (the first stage's model), with
    ``load_pretrained``'s allowances for what the source format cannot hold; [] when it loads.
    Weights in our own format may fit a later stage instead, by the rule between stages
    (``load_previous_stage``): the modules they hold must fit exactly, those they lack are new."""
    from cmpose.checkpoint import fit_problems, format_allowances
    from cmpose.engine.stages import build_stage_model

    own = first.state_dict()
    if notes.format != "cmpose":
        return fit_problems(own, sd, allow_missing=format_allowances(own, notes))
    present = {k.split(".", 1)[0] for k in sd}

    def new_modules(own: dict[str, Tensor]) -> tuple[str, ...]:
        return tuple(sorted({f"{k.split('.', 1)[0]}." for k in own if k.split(".", 1)[0] not in present}))

    problems = fit_problems(own, sd, allow_missing=new_modules(own))
    for stage in cfg.stages[1:] if problems else ():
        later = build_stage_model(cfg, stage).state_dict()
        if not fit_problems(later, sd, allow_missing=new_modules(later)):
            return []
    return problems


def _hint(sd: dict[str, Tensor], model: nn.Module) -> str:
    """The usual cause when ViTPose's two heads are mixed up."""
    file_simple = "keypoint_head.final_layer.weight" in sd and not any(
        k.startswith("keypoint_head.deconv_layers.") for k in sd
    )
    model_simple = not hasattr(model.keypoint_head, "deconv_layers")
    if any(k.startswith("keypoint_head.") for k in sd) and file_simple != model_simple:
        kind = "simple" if file_simple else "classic"
        return f"\n(the file holds ViTPose's {kind} head: try --set model.head.kind={kind})"
    return ""
