"""Training-curve PNGs from hand-made scalars and from a TensorBoard run folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest
from torch.utils.tensorboard import SummaryWriter

from cmpose.errors import DataError
from cmpose.viz.curves import plot_curves, read_tensorboard_scalars


def _scalars() -> dict[str, list[tuple[int, float]]]:
    steps = range(0, 200, 5)
    return {
        "val/mAP": [(100, 52.5), (200, 61.0)],
        "loss/total": [(s, 2.0 / (1 + s)) for s in steps],
        "loss/heatmap": [(s, 1.0 / (1 + s)) for s in steps],
        "lr/group_0": [(s, 5e-4 * min(1.0, (s + 1) / 50)) for s in steps],
        "empty/series": [],
    }


def test_plot_from_hand_scalars(tmp_path: Path) -> None:
    out = plot_curves(_scalars(), tmp_path / "plots" / "curves.png", title="run 1")
    assert out == tmp_path / "plots" / "curves.png"
    img = cv2.imread(str(out))
    assert img is not None
    assert img.shape == (360, 1500, 3)  # three groups side by side, 5 x 3.6 inches at 100 dpi
    assert img.std() > 5  # something was drawn
    assert [p.name for p in out.parent.iterdir()] == ["curves.png"]  # written atomically, no leftovers

    # A loss that touches 0 falls back to a linear axis instead of failing.
    plot_curves({"loss/total": [(0, 1.0), (1, 0.0)]}, tmp_path / "zero.png")
    assert cv2.imread(str(tmp_path / "zero.png")).shape == (360, 500, 3)
    with pytest.raises(ValueError):
        plot_curves({"loss/total": []}, tmp_path / "none.png")


def test_tensorboard_round_trip(tmp_path: Path) -> None:
    run = tmp_path / "run"
    writer = SummaryWriter(log_dir=str(run))
    for step in range(0, 30, 3):
        writer.add_scalar("loss/total", 1.0 / (step + 1), step)
        writer.add_scalar("lr/group_0", 1e-3, step)
    writer.add_scalar("val/mAP", 40.0, 15)
    writer.add_scalar("val/mAP", 45.0, 30)
    writer.add_scalar("val/mAP", 47.0, 30)  # the same step again: the later value wins
    writer.close()

    scalars = read_tensorboard_scalars(run)
    assert set(scalars) == {"loss/total", "lr/group_0", "val/mAP"}
    assert [s for s, _ in scalars["loss/total"]] == list(range(0, 30, 3))
    assert scalars["loss/total"][2][1] == pytest.approx(1.0 / 7)
    assert scalars["val/mAP"] == [(15, 40.0), (30, 47.0)]

    out = plot_curves(scalars, tmp_path / "curves.png")
    assert cv2.imread(str(out)) is not None
    with pytest.raises(DataError, match="nowhere"):
        read_tensorboard_scalars(tmp_path / "nowhere")


def test_staged_tags_make_a_grid(tmp_path: Path) -> None:
    """stage/group/name tags: one column per stage, one row per group (losses, lr, val)."""
    scalars = {}
    for stage in ("pretrain", "mcl"):
        scalars[f"{stage}/loss/total"] = [(s, 1.0 / (1 + s)) for s in range(0, 50, 5)]
        scalars[f"{stage}/lr"] = [(s, 1e-3) for s in range(0, 50, 5)]
        scalars[f"{stage}/val/mAP"] = [(50, 40.0)]
    scalars["mcl/loss/mask"] = [(s, 0.5) for s in range(0, 50, 5)]
    out = plot_curves(scalars, tmp_path / "grid.png", staged=True)
    img = cv2.imread(str(out))
    assert img.shape == (780, 1000, 3)  # 3 rows (loss, lr, val) x 2 stages, 5 x 2.6 inches each
