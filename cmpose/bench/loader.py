"""Data-loader throughput: clips per second through a real DataLoader with worker processes.

Data: a toy PoseTrack18-format set of JPEG frames (``cmpose.data.toy``) at a chosen resolution,
every frame labelled, ``people`` per frame. Each repeat is one full training epoch (random step
and augmentation) through ``DataLoader(num_workers=workers)``; the rate counts the clips after
the first batch, divided by the time from the first batch to the last (steady state, worker
start-up excluded; it is reported separately).
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from cmpose.data.build import make_loader
from cmpose.data.config import ClipConfig
from cmpose.data.dataset import PoseTrackClipDataset
from cmpose.data.readers import read_annotations
from cmpose.data.toy import write_toy_posetrack

log = logging.getLogger(__name__)


def _epoch(loader: DataLoader) -> tuple[float, float, int]:
    """(start-up seconds, steady-state clips/s, clips) of one pass."""
    t0 = time.perf_counter()
    it = iter(loader)
    first = next(it)
    t1 = time.perf_counter()
    n = 0
    for batch in it:
        n += batch["clip"].shape[0]
    t2 = time.perf_counter()
    return t1 - t0, n / max(t2 - t1, 1e-9), n + first["clip"].shape[0]


def run_loader_benchmark(
    work_dir: Path,
    image_size: tuple[int, int] = (1280, 720),
    videos: int = 8,
    frames: int = 30,
    people: int = 6,
    workers: int = 2,
    batch_size: int = 32,
    sampler: str = "random",
    num_frames: int = 3,
    repeats: int = 5,
    seed: int = 0,
) -> dict:
    """Measure loader throughput; returns settings, per-repeat rates and their median."""
    if sampler not in ("random", "grouped"):
        raise ValueError(f"sampler must be 'random' or 'grouped', got {sampler!r}")
    data_dir = Path(work_dir) / f"toy_{image_size[0]}x{image_size[1]}_{videos}v{frames}f{people}p"
    ann = data_dir / "annotations" / "train"
    if not ann.is_dir():
        log.info("writing toy dataset to %s", data_dir)
        write_toy_posetrack(data_dir, videos, frames, people, image_size, split="train", seed=seed)
    data = read_annotations(ann)
    ds = PoseTrackClipDataset(
        data.people, data.videos, train=True, clip=ClipConfig(num_frames=num_frames), seed=seed
    )
    rates, startups = [], []
    for r in range(repeats + 1):  # the first pass is a warm-up (page cache, imports)
        ds.set_epoch(r)
        loader = make_loader(ds, batch_size, workers, sampler=sampler, seed=seed + r)
        startup, rate, n = _epoch(loader)
        if r > 0:
            rates.append(rate)
            startups.append(startup)
        log.info("pass %d: %.1f clips/s (%d clips, start-up %.2f s)", r, rate, n, startup)
    return {
        "benchmark": "loader",
        "image_size": list(image_size),
        "clip_frames": num_frames,
        "crop": [192, 256],
        "videos": videos,
        "frames_per_video": frames,
        "people_per_frame": people,
        "clips_per_epoch": len(ds),
        "workers": workers,
        "batch_size": batch_size,
        "sampler": sampler,
        "repeats": repeats,
        "clips_per_s": rates,
        "median_clips_per_s": statistics.median(rates),
        "median_startup_s": statistics.median(startups),
        "torch": torch.__version__,
    }
