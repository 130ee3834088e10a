"""Training curves as a PNG: one subplot per scalar group (the tag's prefix before '/', as
TensorBoard groups them), e.g. ``loss/*`` (log y), ``lr/*``, ``val/*`` (mAP). With
``staged=True`` the tags' first part is a stage (``pretrain/loss/pose``, as ``cmpose train``
logs them) and the plot is a grid: one column per stage, one row per group, so losses, learning
rates and mAP each get their own axis.

Drawn with matplotlib's object API on an Agg canvas (no pyplot: no global figure state, no
display needed), rendered to bytes and written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FormatStrFormatter

from cmpose.errors import DataError
from cmpose.utils.io import atomic_write_bytes

Scalars = dict[str, list[tuple[int, float]]]


def _split(tag: str, staged: bool) -> tuple[str, str, str]:
    """(column, group, label) of a tag: ``stage/group/name`` when ``staged``, else ``group/name``."""
    parts = tag.split("/")
    if staged and len(parts) >= 2:
        return parts[0], parts[1], "/".join(parts[2:]) or parts[1]
    return "", parts[0], "/".join(parts[1:]) or tag


def _group_rank(group: str) -> int:
    """Losses first, then learning rates, then the rest (validation metrics)."""
    name = group.lower()
    if "loss" in name:
        return 0
    if name.startswith(("lr", "learning_rate")):
        return 1
    return 2


def plot_curves(scalars: Scalars, out_png: Path, title: str = "", staged: bool = False) -> Path:
    """Plot scalar series, one subplot per group of tags, into ``out_png``.

    Args:
        scalars: tag -> [(step, value), ...], e.g. from ``read_tensorboard_scalars``; tags
            sharing the prefix before '/' share a subplot, labelled by the rest of the tag.
        out_png: the PNG to write (its folder is created).
        title: figure title (e.g. the run name).
        staged: the tags' first part is a stage (``stage/group/name``): one column per stage.

    Returns:
        ``out_png``.

    Raises:
        ValueError: no tag has any point.
    """
    series = {tag: sorted(points) for tag, points in scalars.items() if points}
    if not series:
        raise ValueError("no scalars to plot")
    cells: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (column, group) -> [(tag, label)]
    columns: list[str] = []
    for tag in series:  # first-appearance order of the stages
        column, group, label = _split(tag, staged)
        if column not in columns:
            columns.append(column)
        cells.setdefault((column, group), []).append((tag, label))
    groups = sorted({g for _, g in cells}, key=lambda g: (_group_rank(g), g))

    if staged:  # rows = groups, columns = stages
        nrows, ncols = len(groups), len(columns)
        where = {(c, g): r * ncols + i + 1 for r, g in enumerate(groups) for i, c in enumerate(columns)}
    else:  # the groups side by side, at most 3 per row
        ncols = min(3, len(groups))
        nrows = math.ceil(len(groups) / ncols)
        where = {("", g): i + 1 for i, g in enumerate(groups)}
    fig = Figure(figsize=(5.0 * ncols, (2.6 if staged else 3.6) * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    for (column, group), tags in cells.items():
        ax = fig.add_subplot(nrows, ncols, where[(column, group)])
        all_positive = True
        for tag, label in tags:
            steps = [s for s, _ in series[tag]]
            values = [v for _, v in series[tag]]
            all_positive &= all(v > 0 for v in values if math.isfinite(v))
            # Markers for sparse series (validation every few epochs), plain lines for dense ones.
            ax.plot(
                steps,
                values,
                label=label,
                linewidth=1.2,
                marker="o" if len(steps) <= 30 else None,
                markersize=3,
            )
        if _group_rank(group) == 0 and all_positive:
            ax.set_yscale("log")  # losses span orders of magnitude; log shows late progress
            ax.yaxis.set_major_formatter(FormatStrFormatter("%.3g"))  # 5 rather than 5x10^0
            lo, hi = ax.get_ylim()
            if hi / lo < 10:  # within a decade only minor ticks are labelled; beyond, they crowd
                ax.yaxis.set_minor_formatter(FormatStrFormatter("%.3g"))
        ax.set_title(f"{column}: {group}" if column else group)
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize="small")
    if title:
        fig.suptitle(title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    out_png = Path(out_png)
    atomic_write_bytes(out_png, buf.getvalue())
    return out_png


def read_tensorboard_scalars(log_dir: Path) -> Scalars:
    """All scalar series in a TensorBoard run folder (its own event files, not subfolders).

    A step logged twice (a run resumed from an earlier checkpoint appends to the same folder)
    keeps its last-written value.

    Returns:
        tag -> [(step, value), ...] sorted by step.

    Raises:
        DataError: ``log_dir`` is not a folder.
    """
    # Imported here: only this function needs TensorBoard's reader.
    from tensorboard.backend.event_processing.event_accumulator import SCALARS, EventAccumulator

    log_dir = Path(log_dir)
    if not log_dir.is_dir():
        raise DataError("no such TensorBoard log folder", path=log_dir)
    acc = EventAccumulator(str(log_dir), size_guidance={SCALARS: 0})  # 0 = keep every point
    acc.Reload()
    out: Scalars = {}
    for tag in acc.Tags()[SCALARS]:
        by_step = {int(e.step): float(e.value) for e in acc.Scalars(tag)}  # later writes win
        out[tag] = sorted(by_step.items())
    return out
