"""The ablation report: per variant the mean over seeds with its 95 % interval and the seed
spread, per comparison the paired bootstrap interval of the difference, TCIS recall against the
centre prior, and the training each variant got in its budget.

Intervals (``cmpose.eval.bootstrap``): one draw of ``num_boot`` resamples of the val videos is
applied to every model of every seed and every column, so every comparison is paired. A
variant's interval is the percentile interval of its resampled mAP averaged over seeds; a
difference's, that of the resampled difference averaged over seeds. They cover the val-set
sampling of a seed-averaged number; the spread across seeds (the training's own variance) is
reported beside them (min..max over seeds), and each difference also gets a two-level interval
that resamples the seeds as well (``resample_seeds``; coarse with 3 seeds, so a check on the
first interval rather than a replacement).
"""

from __future__ import annotations

import io
import logging
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from cmpose.engine.ablate import LABELS, PAIRS, AblationPlan, fte_step_split
from cmpose.engine.ablate_measure import column_scores, count_people, prepare_columns
from cmpose.engine.config import ExperimentConfig
from cmpose.eval.bootstrap import (
    bootstrap_map,
    difference_from_resamples,
    effect_words,
    percentile_interval,
    resample_counts,
    sample_map,
    seeds_effect,
)
from cmpose.utils.io import atomic_write_bytes, atomic_write_json

log = logging.getLogger(__name__)

# The joint class of the headline target (part 1: hidden in the keyframe, visible in
# another frame of the clip), when ``cmpose.eval.joint_classes`` provides it.
HIDDEN_CLASS = "hidden_here_visible_in_window"


def column_label(col: str, window: int | None) -> str:
    """A column's heading in the markdown report."""
    return {
        "all": "all frames",
        "hard": "hard frames",
        "visible": "visible joints",
        HIDDEN_CLASS: f"hidden here, visible within +-{window} frames",
        "hidden_throughout": "hidden throughout",
    }.get(col, col)


def _letter(variant: str) -> str:
    return f"({variant[0]})"


def score_rows(
    out: Path, cfg: ExperimentConfig, plan: AblationPlan, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Score every (variant, seed) on every column and resample it; the statistics the report
    is made of: {"columns", "val", "variants": {name: {col: stats}}, "pairs": [...]}."""
    cols = prepare_columns(cfg, out / "gt")
    runs: dict[str, dict[int, dict[str, Any]]] = defaultdict(dict)
    for r in rows:
        runs[r["variant"]][r["seed"]] = r
    seeds = list(plan.seeds)
    point: dict[tuple[str, str], list[float]] = defaultdict(list)
    boot: dict[tuple[str, str], list[np.ndarray]] = defaultdict(list)
    counts = None
    jobs = [(name, s) for name in runs for s in seeds]
    for name, s in tqdm(jobs, desc="bootstrap", unit="run"):
        r = runs[name][s]
        scores = column_scores(cols, out / f"seed{s}" / name / r["val_dir"] / "predictions")
        for col, us in scores.items():
            if counts is None:
                counts = resample_counts(us.num_units, plan.num_boot, plan.boot_seed)
            point[(name, col)].append(sample_map(us))
            boot[(name, col)].append(bootstrap_map(us, counts))
        rescored = point[(name, "all")][-1]
        if abs(rescored - r["mAP"]) > 1e-6:
            log.warning("%s seed %d: rescored mAP %.4f, the run's %.4f", name, s, rescored, r["mAP"])
    assert counts is not None
    variants: dict[str, Any] = {}
    for name, by_seed in runs.items():
        stats: dict[str, Any] = {}
        for col in cols.names:
            p = point[(name, col)]
            lo, hi = percentile_interval(np.mean(boot[(name, col)], axis=0))
            stats[col] = {
                "mean": float(np.mean(p)),
                "low": lo,
                "high": hi,
                "per_seed": p,
                "min": float(np.min(p)),
                "max": float(np.max(p)),
                "std": float(np.std(p)),
            }
        stats["training"] = _training(by_seed, seeds)
        stats["tcis"] = _tcis(by_seed, seeds)
        stats["robustness"] = _robustness(by_seed, seeds)
        variants[name] = stats
    pairs = []
    for x, y, what in PAIRS:
        if x in runs and y in runs:
            diffs = {
                col: difference_from_resamples(
                    point[(x, col)], point[(y, col)], np.stack(boot[(x, col)]), np.stack(boot[(y, col)])
                )
                for col in cols.names
            }
            pairs.append({"x": x, "y": y, "what": what, "columns": diffs})
    return {
        "columns": cols.names,
        "class_window": cols.window if cols.classes is not None else None,
        "val": {"gt": str(cols.gt_all), "videos": int(counts.shape[1]), "people": count_people(cols.gt_all)},
        "variants": variants,
        "pairs": pairs,
    }


def _mean(values: list[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.mean(v)) if v else None


def _training(by_seed: dict[int, dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    rows = [by_seed[s] for s in seeds]
    out: dict[str, Any] = {
        k: _mean([r[k] for r in rows]) for k in ("steps", "samples", "frames", "train_seconds")
    }
    out["per_seed_steps"] = [r["steps"] for r in rows]
    out["stages"] = [
        {
            "kind": st["kind"],
            "budget_minutes": st["budget_minutes"],
            "budget_steps": st.get("budget_steps"),
            "steps": _mean([r["stages"][i]["steps"] for r in rows]),
        }
        for i, st in enumerate(rows[0]["stages"])
    ]
    out["load"] = [[r["load_start"][0], r["load_end"][0]] for r in rows]
    out["tokens_refinement"] = rows[0]["tokens_refinement"]
    return out


def _tcis(by_seed: dict[int, dict[str, Any]], seeds: list[int]) -> dict[str, Any] | None:
    rows = [by_seed[s]["tcis"] for s in seeds]
    if any(r is None for r in rows):
        return None
    return {
        ratio: {k: _mean([r["ratios"][ratio][k] for r in rows]) for k in ("tcis", "centre")}
        for ratio in rows[0]["ratios"]
    }


def _robustness(by_seed: dict[int, dict[str, Any]], seeds: list[int]) -> dict[str, Any] | None:
    rows = [by_seed[s].get("robustness") for s in seeds]
    if any(r is None for r in rows):
        return None
    return {k: _mean([r[k] for r in rows]) for k in ("mPC", "rPC")}


def targets(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """The issue's targets for (e) against (a), each with what the run shows."""
    pair = next((p for p in stats["pairs"] if (p["x"], p["y"]) == ("e_cmpose", "a_single")), None)
    if pair is None:
        return [("(e) vs (a)", "not measured: run both variants")]

    def check(col: str, need: float) -> str:
        d = pair["columns"].get(col)
        if d is None:
            return "not measured (no such column in this val set)"
        ok = d["diff"] >= need and d["low"] > 0
        text = f"{'met' if ok else 'not met'}: {effect_words(d)}"
        if len(d["per_seed"]) > 1 and "seeds_low" in d:
            text += f"; with the seeds' variance {effect_words(seeds_effect(d))}"
        return text

    out = [
        (
            "(e) - (a) >= +5 on joints hidden in the keyframe, visible in the clip, interval > 0",
            check(HIDDEN_CLASS, 5.0),
        ),
        ("(e) - (a) >= +1.5 on all frames, interval > 0", check("all", 1.5)),
    ]
    ra, re_ = stats["variants"]["a_single"]["robustness"], stats["variants"]["e_cmpose"]["robustness"]
    if ra and re_ and ra["rPC"] is not None and re_["rPC"] is not None:
        verdict = f"{'met' if re_['rPC'] > ra['rPC'] else 'not met'}: {re_['rPC']:.2f} vs {ra['rPC']:.2f}"
    else:
        verdict = "not measured (run with --robustness)"
    out.append(("rPC of (e) above that of (a)", verdict))
    return out


def _cell(s: dict[str, Any], spread: bool) -> str:
    text = f"{s['mean']:.1f} [{s['low']:.1f}, {s['high']:.1f}]"
    if spread and len(s["per_seed"]) > 1:
        text += f" ({s['min']:.1f}..{s['max']:.1f})"
    return text


def report_markdown(stats: dict[str, Any], plan: AblationPlan) -> str:
    cols = stats["columns"]
    heads = [column_label(c, stats.get("class_window")) for c in cols]
    val = stats["val"]
    fte_min = plan.minutes * plan.fte_share
    start = (
        f"a {plan.pretrain_minutes:g}-min single-frame pretraining ({plan.pretrain} pretraining)"
        if plan.init is None
        else f"no pretraining: every seed starts from the given checkpoint `{plan.init}`"
    )
    if plan.steps:
        mcl_steps, fte_steps = fte_step_split(plan.steps, plan.fte_share)
        split = f"{mcl_steps} MCL + {fte_steps} FTE steps"
        budget = (
            f"- Budget: {plan.steps} optimizer steps per variant after {start} (equal steps and samples, "
            f"not equal time: a variant's seconds show its step cost); (e) and (f): {split}; (a) trains "
            "single frames for all of them."
        )
    else:
        budget = (
            f"- Budget: {plan.minutes:g} min of training per variant after {start}; (e) and (f): "
            f"{plan.minutes - fte_min:g} min MCL + {fte_min:g} min FTE; (a) trains single frames for the "
            "whole budget."
        )
    lines = [
        "# Ablation (`cmpose ablate`)",
        "",
        budget,
        f"- Seeds: {', '.join(map(str, plan.seeds))}. Val: {val['videos']} videos, {val['people']} annotated "
        f"people ({val['gt']}).",
        "- Steps, samples (clips; frames = clips x T) and stage seconds (training and each stage's final "
        "validation): means over seeds; load: the machine's 1-minute load average at a run's start → end.",
        f"- Cells: mean over seeds [95 % paired bootstrap interval over the val videos, {plan.num_boot} "
        "resamples] (min..max over seeds). Differences whose interval includes 0: no measurable effect.",
        "",
        "## mAP per variant",
        "",
        "| variant | "
        + " | ".join(heads)
        + " | mPC | rPC | steps | samples (frames) | stage s | load per seed |",
        "| --- " * (len(cols) + 7) + "|",
    ]
    for name, v in stats["variants"].items():
        t, rob = v["training"], v["robustness"]
        mpc = f"{rob['mPC']:.1f}" if rob and rob["mPC"] is not None else "-"
        rpc = f"{rob['rPC']:.2f}" if rob and rob["rPC"] is not None else "-"
        load = "; ".join(f"{a:.1f} → {b:.1f}" for a, b in t["load"])
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(_cell(v[c], True) for c in cols)
            + f" | {mpc} | {rpc} | {t['steps']:.0f} | {t['samples']:.0f} ({t['frames']:.0f}) | "
            f"{t['train_seconds']:.0f} | {load} |"
        )  # fmt: skip
    ratios = next((list(v["tcis"]) for v in stats["variants"].values() if v["tcis"]), [])
    lines += [
        "",
        "## TCIS keypoint recall (TCIS / centre prior) and tokens entering refinement",
        "",
        "| variant | " + " | ".join(f"keep {r}" for r in ratios) + " | tokens entering refinement |",
        "| --- " * (len(ratios) + 2) + "|",
    ]
    for name, v in stats["variants"].items():
        tc = v["tcis"]
        cells = [
            f"{100 * tc[r]['tcis']:.1f} % / {100 * tc[r]['centre']:.1f} %" if tc else "-" for r in ratios
        ]
        lines.append(
            f"| {LABELS[name]} | " + " | ".join(cells) + f" | {v['training']['tokens_refinement']} |"
        )
    lines += [
        "",
        "## Differences (paired, mean over seeds)",
        "",
        "| comparison | " + " | ".join(heads) + " | per seed (all) |",
        "| --- " * (len(cols) + 2) + "|",
    ]
    for p in stats["pairs"]:
        per = ", ".join(f"{d:+.1f}" for d in p["columns"]["all"]["per_seed"])
        lines.append(
            f"| {_letter(p['x'])} - {_letter(p['y'])}: {p['what']} | "
            + " | ".join(effect_words(p["columns"][c]) for c in cols) + f" | {per} |"
        )  # fmt: skip
    if len(plan.seeds) > 1:
        lines += [
            "",
            "## Differences with the seeds' variance in the interval",
            "",
            "Two-level bootstrap (`cmpose.eval.bootstrap.resample_seeds`): each resample draws the "
            "seeds with replacement as well as the val videos, so the interval also covers the "
            f"training's variance across seeds (coarse with {len(plan.seeds)} seeds; a check on the "
            "intervals above).",
            "",
            "| comparison | " + " | ".join(heads) + " |",
            "| --- " * (len(cols) + 1) + "|",
        ]
        for p in stats["pairs"]:
            lines.append(
                f"| {_letter(p['x'])} - {_letter(p['y'])}: {p['what']} | "
                + " | ".join(effect_words(seeds_effect(p["columns"][c])) for c in cols) + " |"
            )  # fmt: skip
    lines += ["", "## Targets (issue 15)", ""]
    if plan.steps:
        # At equal steps (a) gets about 1/T of a temporal variant's compute: not the control.
        lines += ["- not checked: the targets compare (e) with the *time-matched* (a); here steps match"]
    else:
        lines += [f"- {what}: {verdict}" for what, verdict in targets(stats)]
    absent = {"joint classes": HIDDEN_CLASS not in cols, "mPC/rPC": not plan.robustness}
    missing = [h for h, gone in absent.items() if gone]
    if missing:
        lines += ["", f"Not in this report: {', '.join(missing)} (see docs/results.md, Ablation)."]
    return "\n".join(lines) + "\n"


def plot_gains(stats: dict[str, Any], out_png: Path) -> None:
    """Bars of each comparison's difference per column, with its 95 % interval."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cols, pairs = stats["columns"], stats["pairs"]
    # Width grows with the bars, capped so that seven comparisons stay readable in a page.
    fig = Figure(figsize=(min(16.0, max(6.0, 0.4 * len(cols) * max(1, len(pairs)) + 3)), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(pairs))
    x = np.arange(len(cols))
    for i, p in enumerate(pairs):
        d = [p["columns"][c] for c in cols]
        mid = np.array([e["diff"] for e in d])
        err = np.array([[e["diff"] - e["low"] for e in d], [e["high"] - e["diff"] for e in d]])
        ax.bar(x + (i - (len(pairs) - 1) / 2) * width, mid, width, yerr=np.clip(err, 0, None), capsize=3,
               label=f"{_letter(p['x'])} - {_letter(p['y'])}")  # fmt: skip
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x)
    ax.set_xticklabels([column_label(c, stats.get("class_window")) for c in cols], rotation=20, ha="right")
    ax.set_ylabel("mAP difference (95 % interval)")
    plan = stats.get("plan") or {}
    budget = f"{plan['steps']} steps" if plan.get("steps") else f"{plan['minutes']:g} min" if plan else None
    title = "Ablation: gains per column, mean over seeds"
    ax.set_title(title + (f" ({budget} per variant)" if budget else ""))
    if pairs:
        ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(out_png, buf.getvalue())


def write_report(
    out: Path, cfg: ExperimentConfig, plan: AblationPlan, rows: list[dict[str, Any]]
) -> dict[str, Any]:
    """Score, write ``ablation.json`` / ``ablation.md`` / ``ablation_gains.png``; returns the stats."""
    import dataclasses

    stats = score_rows(out, cfg, plan, rows)
    stats["plan"] = {**dataclasses.asdict(plan), "init": None if plan.init is None else str(plan.init)}
    stats["rows"] = rows
    atomic_write_json(out / "ablation.json", stats)
    atomic_write_bytes(out / "ablation.md", report_markdown(stats, plan).encode())
    plot_gains(stats, out / "ablation_gains.png")
    return stats
