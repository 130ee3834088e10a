"""``cmpose ablate``: the parts of CM-Pose switched on one at a time, all from the same
single-frame-pretrained backbone, for the same number of epochs and with the same seed:

(a) single-frame baseline, (b) T frames + encoder without auxiliary tasks, (c) + masked-token
task, (d) + denoising task (full MCL), (e) full CM-Pose: MCL then FTE (the epochs are split
between the two stages, so (e) trains as long as the others).
Reported per variant: mAP on all val frames and on hard frames (detector boxes), TCIS keypoint
recall, and the number of tokens entering the last transformer blocks.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path
from typing import Any

from cmpose.engine.config import ExperimentConfig, StageConfig
from cmpose.engine.run import run_training
from cmpose.engine.stages import build_stage_model
from cmpose.models.tcis import keep_count
from cmpose.models.token_cluster import cluster_count
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

VARIANTS = ("a_single", "b_temporal", "c_mask", "d_mask_noise", "e_cmpose")


def variant_config(
    cfg: ExperimentConfig, name: str, epochs: int, fte_epochs: int, init: Path
) -> ExperimentConfig:
    """The experiment of one variant, initialised from the pretrained checkpoint ``init``."""
    aux = cfg.model.aux
    # Each stage kind at the learning rate the config gives that kind (else optim.lr).
    lr = {s.kind: s.lr for s in cfg.stages}
    if name == "a_single":
        stages = [StageConfig(name="single", kind="single", epochs=epochs, lr=lr.get("single"))]
    elif name == "e_cmpose":
        if not 0 < fte_epochs < epochs:
            raise ValueError(f"fte_epochs must be in 1..{epochs - 1}, got {fte_epochs}")
        stages = [
            StageConfig(name="mcl", kind="mcl", epochs=epochs - fte_epochs, lr=lr.get("mcl")),
            StageConfig(name="fte", kind="fte", epochs=fte_epochs, lr=lr.get("fte")),
        ]
    else:
        stages = [StageConfig(name="mcl", kind="mcl", epochs=epochs, lr=lr.get("mcl"))]
        mask, noise = {"b_temporal": (False, False), "c_mask": (True, False), "d_mask_noise": (True, True)}[
            name
        ]
        aux = dataclasses.replace(aux, mask=mask, noise=noise)
    model = dataclasses.replace(cfg.model, aux=aux)
    run = dataclasses.replace(cfg.run, init=str(init), val_every=0)
    return dataclasses.replace(cfg, model=model, stages=stages, run=run)


def refinement_tokens(cfg: ExperimentConfig, stage: StageConfig) -> int:
    """Tokens in the last transformer blocks: N (single frame), J + T*N (encoder), or
    J + K + M (FTE's refinement)."""
    model = build_stage_model(cfg, stage)
    Hp, Wp = model.grid
    N = Hp * Wp
    if stage.kind == "single":
        return N
    L = model.num_frames * N
    if stage.kind == "mcl":
        return cfg.model.num_joints + L
    K = keep_count(L, cfg.model.fte.keep_ratio)
    M = cluster_count(L - K, cfg.model.fte.cluster_ratio) if cfg.model.fte.cluster and L > K else 0
    return cfg.model.num_joints + K + M


def run_ablation(
    cfg: ExperimentConfig,
    out: Path,
    *,
    epochs: int,
    fte_epochs: int,
    pretrain: StageConfig,
    variants: tuple[str, ...] = VARIANTS,
) -> dict[str, Any]:
    """Pretrain once (reused when ``out/pretrain`` has finished), then train and test each variant."""
    from cmpose.data.build import build_clip_dataset
    from cmpose.engine.checkpointing import load_model
    from cmpose.engine.stages import stage_clip
    from cmpose.engine.tcis_recall import tcis_keypoint_recall
    from cmpose.engine.testing import split_paths

    out = Path(out)
    pre_cfg = dataclasses.replace(cfg, stages=[pretrain], run=dataclasses.replace(cfg.run, val_every=0))
    pre_final = out / "pretrain" / pretrain.name / "final.pt"
    if not pre_final.is_file():
        run_training(pre_cfg, out / "pretrain", resume=(out / "pretrain").exists())
    results: dict[str, Any] = {
        "epochs": epochs,
        "fte_epochs": fte_epochs,
        "seed": cfg.run.seed,
        "variants": {},
    }
    for name in variants:
        vcfg = variant_config(cfg, name, epochs, fte_epochs, pre_final)
        t0 = time.perf_counter()
        summary = run_training(vcfg, out / name, resume=(out / name).exists())
        seconds = time.perf_counter() - t0
        val = summary["stages"][-1]["val"] if summary["stages"] else None
        last = vcfg.stages[-1]
        row: dict[str, Any] = {
            "mAP": val["all"]["Total"] if val else None,
            "mAP_hard": val["hard"]["Total"] if val and val.get("hard") else None,
            "tokens_in_last_blocks": refinement_tokens(vcfg, last),
            "seconds": round(seconds, 1),
        }
        if last.kind != "single":
            model, _ = load_model(Path(summary["final_checkpoint"]), "cpu")
            ann, _ = split_paths(vcfg.data, "val")
            ds = build_clip_dataset(
                ann, train=False, clip=stage_clip(vcfg, last), crop=vcfg.data.crop,
                augment=vcfg.data.augment, loader=vcfg.data.loader,
            )  # fmt: skip
            row["tcis"] = tcis_keypoint_recall(model, ds, vcfg.model.fte.keep_ratio)
        results["variants"][name] = row
        log.info("ablation %s: %s", name, row)
        atomic_write_json(out / "ablation.json", results)
    atomic_write_bytes(out / "ablation.md", ablation_markdown(results).encode())
    return results


def ablation_markdown(results: dict[str, Any]) -> str:
    def num(v: Any) -> str:
        return "-" if v is None else f"{v:.1f}"

    lines = [
        f"{results['epochs']} epochs per variant (e: {results['epochs'] - results['fte_epochs']} MCL + "
        f"{results['fte_epochs']} FTE), seed {results['seed']}, synthetic val, detector boxes.",
        "",
        "| variant | mAP (all) | mAP (hard frames) | TCIS keypoint recall (keep ratio) "
        "| tokens in last blocks | s |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in results["variants"].items():
        t = r.get("tcis")
        tcis = f"{100 * t['recall']:.1f}% ({100 * t['keep_ratio']:.0f}%)" if t else "-"
        lines.append(
            f"| {name} | {num(r['mAP'])} | {num(r['mAP_hard'])} | {tcis} | {r['tokens_in_last_blocks']} | "
            f"{r['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"
