"""What ``cmpose robustness`` reports: mPC and rPC, the markdown table and the figure.

mPC is the mean of the Total mAP over every (corruption, severity) run, and rPC = mPC / clean
Total mAP: the "mean performance under corruption" and "relative performance under corruption" of
Michaelis et al. 2019 (COCO-C), used for pose by Wang et al., CVPR 2021 (COCO-C / MPII-C) and
PoseBench (2024). mAP is in percent, rPC a fraction.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cmpose.eval.posetrack import COLUMNS
from cmpose.utils.io import atomic_write_bytes

TABLE_KEYS = (*COLUMNS, "Total")

# results: corruption -> severity ("1".."5") -> {"Head": ..., ..., "Total": ...}
Results = dict[str, dict[str, dict[str, float]]]


def map_table(report: dict[str, Any]) -> dict[str, float]:
    """The per-region and Total mAP of an ``evaluate`` report (its other keys dropped)."""
    return {k: float(report[k]) for k in TABLE_KEYS}


def mpc_rpc(clean_total: float, results: Results) -> tuple[float, float | None]:
    """(mPC, rPC): the mean Total mAP over all runs, and mPC / clean Total (None when the clean
    mAP is 0: the ratio is undefined)."""
    totals = [r["Total"] for by_sev in results.values() for r in by_sev.values()]
    if not totals:
        raise ValueError("no corrupted run: mPC is the mean over at least one")
    mpc = sum(totals) / len(totals)
    return mpc, (mpc / clean_total if clean_total > 0 else None)


def robustness_markdown(report: dict[str, Any]) -> str:
    """Total mAP per corruption (rows) and severity (columns), the clean mAP, mPC and rPC."""
    results = report["results"]
    sevs = sorted({s for by_sev in results.values() for s in by_sev}, key=int)
    settings = report.get("settings", {})
    lines = []
    if settings:
        boxes = {"detections": "detector", "gt": "GT"}.get(settings.get("boxes"), "?")
        lines += [
            f"Corruption robustness, PoseTrack mAP (Total), {boxes} boxes, corrupted frames: "
            f"{settings.get('frames', '?')}, T = {settings.get('num_frames', '?')}, "
            f"seed {settings.get('seed', '?')}.",
            "",
        ]
    lines += [
        "| corruption | " + " | ".join(f"s{s}" for s in sevs) + " | mean |",
        "|---|" + "---:|" * (len(sevs) + 1),
    ]
    for name, by_sev in results.items():
        cells = [f"{by_sev[s]['Total']:.1f}" if s in by_sev else "" for s in sevs]
        mean = sum(r["Total"] for r in by_sev.values()) / len(by_sev)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {mean:.1f} |")
    rpc = report["rPC"]
    lines += [
        "",
        f"clean mAP {report['clean']['Total']:.1f}, mPC {report['mPC']:.1f}, "
        + (f"rPC {rpc:.3f}" if rpc is not None else "rPC undefined (clean mAP 0)"),
    ]
    for note in report.get("notes", []):
        lines += ["", f"Note: {note}"]
    return "\n".join(lines) + "\n"


def plot_robustness(report: dict[str, Any], out_png: Path) -> Path:
    """Total mAP against severity, one line per corruption, the clean mAP dashed; into ``out_png``."""
    fig = Figure(figsize=(6.4, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for name, by_sev in report["results"].items():
        sevs = sorted(by_sev, key=int)
        totals = [by_sev[s]["Total"] for s in sevs]
        ax.plot([int(s) for s in sevs], totals, marker="o", markersize=4, label=name)
    clean = report["clean"]["Total"]
    ax.axhline(clean, color="black", linestyle="--", linewidth=1.0, label=f"clean ({clean:.1f})")
    ax.set_xlabel("severity")
    ax.set_ylabel("mAP (Total, %)")
    ax.set_xticks(range(1, 6))
    rpc = report["rPC"]
    ax.set_title(f"mPC {report['mPC']:.1f}" + (f", rPC {rpc:.3f}" if rpc is not None else ""))
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    atomic_write_bytes(Path(out_png), buf.getvalue())
    return Path(out_png)
