"""The training rehearsal's data (``cmpose bench train``): a synthetic PoseTrack18-layout set
written by ``cmpose.synth`` at full frame size (1280x720 JPEG by default), reused when a folder
of the same settings already holds a finished set.

A set's folder is named after its settings; ``synth.json`` (written last by ``generate``, with
the generator's config) is the manifest: a folder whose manifest is missing (an interrupted
run) or differs is written again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cmpose.engine.config import ExperimentConfig
from cmpose.errors import ConfigError
from cmpose.synth import SynthConfig, generate

log = logging.getLogger(__name__)

# What "PoseTrack-scale" means, for readers of the report: PoseTrack18 has 593 training and 170
# validation videos; a training video has about 30 densely labelled frames in its middle, a
# validation video every 4th frame labelled (Andriluka et al., CVPR 2018). ``cmpose synth``
# labels every frame of a training video, so --videos 741 --frames 30 gives about as many
# training keyframes as PoseTrack18 train (593 x 30) with 148 val videos.
POSETRACK18_SCALE = {"train_videos": 593, "val_videos": 170, "labelled_frames_per_train_video": 30}


@dataclass
class RehearsalData:
    """A written (or reused) set: its root, the generator's settings, and how long writing took."""

    root: Path
    synth: SynthConfig
    reused: bool
    seconds: float

    def report(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "synth": _plain(self.synth),
            "reused": self.reused,
            "write_seconds": round(self.seconds, 2),
            "posetrack18_scale": POSETRACK18_SCALE,
        }


def _plain(config: SynthConfig) -> dict[str, Any]:
    """The generator's settings as ``generate`` writes them to ``synth.json``."""
    return config.as_json()


def synth_config(
    videos: int, frames: int, people: str | int, size: tuple[int, int], seed: int = 0
) -> SynthConfig:
    """The generator's settings, with its own checks reported as a ``ConfigError``."""
    try:
        return SynthConfig(videos=videos, frames=frames, people=people, size=size, seed=seed)
    except ValueError as err:
        raise ConfigError(f"cmpose bench train: {err}") from err


def set_folder(work_dir: Path, config: SynthConfig) -> Path:
    """``WORK/synth_1280x720_4v30f4-4p_s0``: one folder per set of settings."""
    (w, h), (lo, hi) = config.size, config.people
    name = f"synth_{w}x{h}_{config.videos}v{config.frames}f{lo}-{hi}p_s{config.seed}_q{config.quality}"
    return Path(work_dir) / name


def manifest_matches(root: Path, config: SynthConfig) -> bool:
    """Whether ``root`` holds a finished set written with exactly ``config``."""
    try:
        manifest = json.loads((root / "synth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (
        isinstance(manifest, dict)
        and manifest.get("config") == _plain(config)
        and (root / "annotations" / "train").is_dir()
    )


def ensure_set(work_dir: Path, config: SynthConfig, progress: bool = False) -> RehearsalData:
    """Write the set under ``work_dir`` unless a finished one with the same settings is there."""
    root = set_folder(work_dir, config)
    if manifest_matches(root, config):
        log.info("reusing the synthetic set in %s", root)
        return RehearsalData(root, config, reused=True, seconds=0.0)
    log.info(
        "writing a synthetic set (%d videos x %d frames at %dx%d) to %s",
        config.videos, config.frames, *config.size, root,
    )  # fmt: skip
    t0 = time.perf_counter()
    generate(root, config, progress=progress)
    return RehearsalData(root, config, reused=False, seconds=time.perf_counter() - t0)


def point_at(cfg: ExperimentConfig, root: Path) -> ExperimentConfig:
    """``cfg`` with its data read from the synthetic set (the PoseTrack18 layout that ``generate``
    writes: annotations/{train,val}/, detections/val_boxes.json, frames under ``root``)."""
    data = dataclasses.replace(
        cfg.data,
        root=str(root),
        train="annotations/train",
        val="annotations/val",
        val_detections="detections/val_boxes.json",
        image_root=None,
        pt17_layout="original",
    )
    return dataclasses.replace(cfg, data=data)
