"""Building datasets and loaders from settings: what the train and test commands call."""

from __future__ import annotations

import logging
import multiprocessing as mp
from pathlib import Path

import cv2
import torch
from torch.utils.data import DataLoader, RandomSampler, Sampler

from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, GapFillConfig, LoaderConfig
from cmpose.data.dataset import CropCorruption, PoseTrackClipDataset
from cmpose.data.detections import load_detections
from cmpose.data.problems import Problems
from cmpose.data.readers import read_annotations
from cmpose.data.sampler import KeyframeGroupedSampler

log = logging.getLogger(__name__)


def build_clip_dataset(
    annotations: Path | list[Path],
    *,
    train: bool,
    clip: ClipConfig,
    crop: CropConfig,
    augment: AugmentConfig,
    loader: LoaderConfig,
    detections: Path | None = None,
    gap_fill: GapFillConfig | None = None,
    image_root: Path | None = None,
    pt17_layout: str = "original",
    seed: int = 0,
    corrupt: CropCorruption | None = None,
) -> PoseTrackClipDataset:
    """Read annotations and pick the samples.

    Training: GT people with at least ``loader.min_keypoints`` annotated joints. Testing: GT
    boxes of every person, or, with ``detections``, the detector boxes scoring at least
    ``loader.det_score_threshold`` on the labelled frames, plus the boxes ``gap_fill`` adds.
    Skipped items are logged with counts. ``corrupt`` (``cmpose robustness``) is handed to the
    dataset, which applies it to every sample's crops.
    """
    problems = Problems()
    data = read_annotations(annotations, image_root, problems, pt17_layout=pt17_layout)
    if detections is not None:
        samples = load_detections(detections, data, loader.det_score_threshold, problems, gap_fill)
    elif train:
        samples = [p for p in data.people if p.num_annotated >= loader.min_keypoints]
        if len(samples) < len(data.people):
            log.info(
                "%d of %d people have fewer than %d annotated joints: not training samples",
                len(data.people) - len(samples),
                len(data.people),
                loader.min_keypoints,
            )
    else:
        samples = list(data.people)
    problems.log_summary(str(annotations))
    log.info("%d samples from %d videos (%s)", len(samples), len(data.videos), "train" if train else "test")
    return PoseTrackClipDataset(
        samples,
        data.videos,
        train=train,
        clip=clip,
        crop=crop,
        augment=augment,
        loader=loader,
        seed=seed,
        corrupt=corrupt,
    )


def worker_init(worker_id: int) -> None:
    """One thread per worker for OpenCV and torch: the workers already use every core, and
    nested thread pools only add contention."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def worker_context() -> str:
    """Start method for loader workers: ``forkserver`` where available, else ``spawn``.

    Not ``fork``: a worker forked from a process whose OpenCV thread pool has run inherits the
    pool's locks but not its threads, and its first OpenCV call can block forever (seen here:
    pthread_cond_destroy in cv2.setNumThreads after the parent had written JPEGs).
    """
    return "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"


def make_loader(
    dataset: PoseTrackClipDataset,
    batch_size: int,
    workers: int,
    *,
    sampler: str | Sampler = "grouped",
    seed: int = 0,
    drop_last: bool = False,
) -> DataLoader:
    """A DataLoader with the project's defaults (pinned memory, single-threaded workers).

    Args:
        sampler: ``grouped`` (``KeyframeGroupedSampler``, the default: a keyframe's people in a
            row reuse its decoded frames, about 1.5x the clips/s of ``random`` here; a batch then
            holds B / P keyframes, like image-centric batches in detection), ``random``,
            ``sequential`` (testing), or a Sampler.
    """
    if sampler == "random":
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(seed))
    elif sampler == "grouped":
        sampler = KeyframeGroupedSampler(dataset.samples, seed=seed)
    elif sampler == "sequential":
        sampler = None
    elif isinstance(sampler, str):
        raise ValueError(f"sampler must be 'random', 'grouped', 'sequential' or a Sampler, got {sampler!r}")
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        worker_init_fn=worker_init if workers > 0 else None,
        pin_memory=torch.cuda.is_available(),
        drop_last=drop_last,
        multiprocessing_context=worker_context() if workers > 0 else None,
        # Not persistent: the dataset's epoch (which seeds the augmentation) reaches the
        # workers only when they start, i.e. once per epoch.
        persistent_workers=False,
    )
