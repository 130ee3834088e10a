"""Exact resume (issue 18, item 1): a sample's pixels are a function of (seed, epoch, index) alone,
whatever the frame cache holds, so a resumed process (empty cache, other workers) feeds the very
batches an uninterrupted one did."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tiny_configs import TINY_CROP, TINY_MODEL

from cmpose.cli.main import main
from cmpose.data.build import build_clip_dataset
from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig
from cmpose.data.toy import write_toy_posetrack
from cmpose.engine.checkpointing import read_checkpoint


@pytest.fixture(scope="module")
def crowded(tmp_path_factory) -> Path:
    """Four people of different heights per frame: their crops ask for different decode factors."""
    root = tmp_path_factory.mktemp("crowded")
    return write_toy_posetrack(
        root, num_videos=1, num_frames=4, people=4, image_size=(640, 360), split="train"
    )


def _dataset(ann: Path):
    return build_clip_dataset(
        ann,
        train=True,
        clip=ClipConfig(),
        crop=CropConfig(image_size=(48, 64), heatmap_size=(12, 16)),
        augment=AugmentConfig(),
        loader=LoaderConfig(),  # the defaults: decode reduction up to 4, a 16-frame cache
        image_root=ann.parents[1],
        seed=3,
    )


def test_sample_pixels_do_not_depend_on_the_cache(crowded: Path) -> None:
    warm = _dataset(crowded)
    warm.set_epoch(1)
    order = list(range(len(warm)))
    first = {i: warm[i]["clip"] for i in order}  # every frame cached at some factor
    again = {i: warm[i]["clip"] for i in reversed(order)}  # another cache history
    factors = set()
    for i in order:
        cold = _dataset(crowded)  # a fresh process: nothing cached
        cold.set_epoch(1)
        clip = cold[i]["clip"]
        factors.update(f for _, f in cold.cache._items)  # noqa: SLF001 - which factors were decoded
        assert torch.equal(clip, first[i]), f"sample {i} differs from the warm-cache one"
        assert torch.equal(clip, again[i]), f"sample {i} differs after another cache history"
    assert len(factors) > 1, "the test needs samples that decode at different factors"


# --- kill -9 and resume, in real processes -----------------------------------------------------------------


def _config(root: Path, path: Path) -> Path:
    """A tiny 2-epoch mcl stage on 4 frames x 4 people (4 steps of 4 per epoch) with the default
    loader settings (``data.loader``: decode reduction, frame cache) and a checkpoint every step.
    No loader workers: starting them takes seconds per epoch here, and the resume is exact
    whatever their number (``test_worker_count_does_not_change_the_batches``)."""
    cfg = {
        "data": {"root": str(root), "batch_size": 4, "workers": 0, "crop": TINY_CROP},
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 2, "schedule": "cosine"},
        "stages": [{"name": "mcl", "kind": "mcl", "epochs": 2}],
        "run": {"val_every": 0, "log_every": 1, "amp": "off", "checkpoint_steps": 1, "ema": 0.9},
        "test": {"boxes": "gt", "workers": 0, "batch_size": 8, "flip_test": False},
    }
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def _train(config: Path, out: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    cmd = [sys.executable, "-m", "cmpose", "train", str(config), "--out", str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


STEPS_PER_EPOCH = 4


@pytest.mark.usefixtures("one_torch_thread")
def test_kill_9_then_resume_gives_the_same_weights_bit_for_bit(tmp_path: Path) -> None:
    """SIGKILL (no handler runs: no final save, maybe a half-written temporary) as soon as the first
    checkpoint exists, then ``--resume``: the final weights, EMA and optimizer moments equal those
    of an uninterrupted run bit for bit. Before the fix 39 of 43 tensors differed (issue 18)."""
    root = tmp_path / "data"
    write_toy_posetrack(root, num_videos=1, num_frames=4, people=4, image_size=(640, 360), split="train")
    write_toy_posetrack(root, num_videos=1, num_frames=2, people=1, image_size=(160, 96), split="val", seed=1)
    config = _config(root, tmp_path / "tiny.yaml")

    killed = _train(config, tmp_path / "killed")
    last = tmp_path / "killed" / "mcl" / "last.pt"
    while not last.exists() and killed.poll() is None:
        time.sleep(0.002)
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (tmp_path / "killed" / "mcl" / "final.pt").exists()
    step = read_checkpoint(last)["step"]
    assert 1 <= step < 2 * STEPS_PER_EPOCH
    resumed = _train(config, tmp_path / "killed", "--resume")
    # The uninterrupted reference, in this process meanwhile (one process start less).
    assert main(["train", str(config), "--out", str(tmp_path / "straight")]) == 0
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()[-2000:]
    a = read_checkpoint(tmp_path / "straight" / "mcl" / "final.pt")
    b = read_checkpoint(tmp_path / "killed" / "mcl" / "final.pt")
    assert a["step"] == b["step"] == 2 * STEPS_PER_EPOCH
    differ = [
        f"{part} {k}" for part in ("model", "ema") for k in a[part] if not torch.equal(a[part][k], b[part][k])
    ]
    moments_a, moments_b = a["optimizer"]["state"], b["optimizer"]["state"]
    differ += [
        f"optimizer {i} {k}"
        for i in moments_a
        for k in ("exp_avg", "exp_avg_sq")
        if not torch.equal(moments_a[i][k], moments_b[i][k])
    ]
    assert differ == [], f"resumed at step {step}: {len(differ)} tensors differ"
    assert not list((tmp_path / "killed").rglob(".*.tmp"))  # a killed write's temporary is gone
