"""Training curves as a PNG: one subplot per scalar group (the tag's prefix before '/', as
TensorBoard groups them), e.g. ``loss/*`` (log y), ``lr/*``, ``val/*`` (mAP).

Drawn with matplotlib's object API on an Agg canvas (no pyplot: no global figure state, no
display needed), rendered to bytes and written atomically.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from cmpose.errors import DataError
from cmpose.utils.io import atomic_write_bytes

Scalars = dict[str, list[tuple[int, float]]]


def _group_of(tag: str) -> str:
    return tag.split("/", 1)[0]


def _group_rank(group: str) -> int:
    """Losses first, then learning rates, then the rest (validation metrics)."""
    name = group.lower()
    if "loss" in name:
        return 0
    if name.startswith(("lr", "learning_rate")):
        return 1
    return 2


def plot_curves(scalars: Scalars, out_png: Path, title: str = "") -> Path:
    """Plot scalar series, one subplot per group of tags, into ``out_png``.

    Args:
        scalars: tag -> [(step, value), ...], e.g. from ``read_tensorboard_scalars``; tags
            sharing the prefix before '/' share a subplot, labelled by the rest of the tag.
        out_png: the PNG to write (its folder is created).
        title: figure title (e.g. the run name).

    Returns:
        ``out_png``.

    Raises:
        ValueError: no tag has any point.
    """
    series = {tag: sorted(points) for tag, points in scalars.items() if points}
    if not series:
        raise ValueError("no scalars to plot")
    groups: dict[str, list[str]] = {}
    for tag in series:  # first-appearance order, then sorted by kind below (sort is stable)
        groups.setdefault(_group_of(tag), []).append(tag)
    ordered = sorted(groups, key=_group_rank)

    ncols = min(3, len(ordered))
    nrows = math.ceil(len(ordered) / ncols)
    fig = Figure(figsize=(5.0 * ncols, 3.6 * nrows), layout="constrained")
    FigureCanvasAgg(fig)  # attaches the Agg canvas to the figure
    for i, group in enumerate(ordered):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        all_positive = True
        for tag in groups[group]:
            steps = [s for s, _ in series[tag]]
            values = [v for _, v in series[tag]]
            all_positive &= all(v > 0 for v in values if math.isfinite(v))
            label = tag.split("/", 1)[1] if "/" in tag else tag
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
        ax.set_title(group)
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
