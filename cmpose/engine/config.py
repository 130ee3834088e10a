"""Experiment settings for ``cmpose train`` / ``cmpose test``: one YAML file, dataclass sections.

A run is a list of stages, each initialised from the previous one's weights:
``single`` (single-frame pretraining or the single-frame baseline: no encoder, T = 1),
``mcl`` (CM-Pose stage 1, multitask coarse learning) and ``fte`` (stage 2, fine token
enhancement). Real-data configs start ``mcl`` from ViTPose COCO weights (``init``); the demo
trains its own ``single`` stage first.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, GapFillConfig, LoaderConfig
from cmpose.models.config import ModelConfig


@dataclass
class DataConfig:
    """Where the data is, relative to ``root`` unless absolute.

    Args:
        train / val: annotation folder or merged file of each split.
        val_detections: detector boxes for testing on val (None = GT boxes).
        image_root: image root when it is not ``root``; pt17_layout: PoseTrack17 frame naming.
        batch_size: per process (per GPU); workers: loader processes per process.
        sampler: grouped (reuses decoded frames within a keyframe) or random.
    """

    root: str = "data/synth"
    train: str = "annotations/train"
    val: str = "annotations/val"
    val_detections: str | None = None
    image_root: str | None = None
    pt17_layout: Literal["original", "renamed"] = "original"
    batch_size: int = 32
    workers: int = 2
    sampler: Literal["grouped", "random"] = "grouped"
    clip: ClipConfig = field(default_factory=ClipConfig)
    crop: CropConfig = field(default_factory=CropConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    loader: LoaderConfig = field(default_factory=LoaderConfig)

    def __post_init__(self) -> None:
        # batch_size 0 divided by zero and -4 trained 0 steps and exited 0 (issue 18).
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0, got {self.workers}")


@dataclass
class OptimConfig:
    """AdamW with ViTPose's layer-wise learning-rate decay.

    Args:
        lr: base learning rate for a total batch of ``batch_size`` x processes (not rescaled).
        layer_decay: ViT layer-wise decay (ViTPose-B 0.75); None = off (from-scratch training).
        clip_grad: max gradient norm (ViTPose: 1.0); 0 = off.
        schedule: ``step`` (x gamma at each milestone epoch) or ``cosine``.
        warmup_steps: linear warmup (ViTPose: 500 iterations from 0.001 x lr).
    """

    lr: float = 5e-4
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.999)
    layer_decay: float | None = 0.75
    clip_grad: float = 1.0
    schedule: Literal["step", "cosine"] = "step"
    milestones: tuple[int, ...] = (16,)
    gamma: float = 0.1
    warmup_steps: int = 500
    min_lr_factor: float = 0.0

    def __post_init__(self) -> None:
        for name in ("lr", "weight_decay", "clip_grad", "gamma", "min_lr_factor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):  # NaN fails both
                raise ValueError(f"{name} must be a finite number >= 0, got {value}")
        if self.layer_decay is not None and not (0 < self.layer_decay <= 1):
            raise ValueError(f"layer_decay must be in (0, 1] or null, got {self.layer_decay}")
        if not all(0 <= b < 1 for b in self.betas):
            raise ValueError(f"betas must be in [0, 1), got {list(self.betas)}")
        if self.warmup_steps < 0 or any(m < 0 for m in self.milestones):
            raise ValueError("warmup_steps and milestones must be >= 0")


@dataclass
class StageConfig:
    """One training stage.

    Args:
        name: folder name inside the run folder (unique within a run).
        kind: single / mcl / fte (see the module docstring).
        epochs: passes over the training samples.
        minutes: wall-time budget of the stage (0 = none). With a budget the schedule is fitted
            to the steps that fit: the step time is measured over the first steps.
        steps: length of the stage in optimizer steps (0 = ``epochs`` x steps per epoch). When
            set it replaces ``epochs`` (the cosine schedule and the warm-up are fitted to it, as
            to a wall-time budget; ``optim.milestones`` stay in epochs), so that runs on machines of
            different speed, or variants of different step cost, train the same number of steps.
            With ``minutes`` too, whichever ends first ends the stage.
        lr: overrides ``optim.lr`` for this stage when set.
        freeze: parameter-name prefixes that get no gradient (e.g. ``backbone.``).
        batch_size: overrides ``data.batch_size`` when set.
    """

    name: str = "mcl"
    kind: Literal["single", "mcl", "fte"] = "mcl"
    epochs: int = 20
    minutes: float = 0.0
    steps: int = 0
    lr: float | None = None
    freeze: tuple[str, ...] = ()
    batch_size: int | None = None

    def __post_init__(self) -> None:
        # The name becomes RUN/<name>/: anything but a plain folder name ('../x', '/tmp/x', 'a/b')
        # would put the stage's checkpoints outside the run folder.
        n = self.name
        if not n or n in (".", "..") or "/" in n or "\\" in n or "\0" in n or n != n.strip():
            raise ValueError(f"stage name {n!r} must be a plain folder name (no '/', '\\', '..')")
        if self.epochs < 1:
            raise ValueError(f"stage '{n}': epochs must be >= 1, got {self.epochs}")
        if not self.minutes >= 0:  # also NaN
            raise ValueError(f"stage '{n}': minutes must be >= 0, got {self.minutes}")
        if self.steps < 0:
            raise ValueError(f"stage '{n}': steps must be >= 0 (0 = epochs decide), got {self.steps}")
        if self.lr is not None and not (self.lr >= 0 and math.isfinite(self.lr)):
            raise ValueError(f"stage '{n}': lr must be a finite number >= 0, got {self.lr}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"stage '{n}': batch_size must be >= 1, got {self.batch_size}")


@dataclass
class TestConfig:
    """Inference settings (``cmpose test`` and validation during training).

    Args:
        flip_test: average with the prediction of the mirrored clip (ViTPose/HRNet default).
        boxes: ``detections`` (``data.val_detections``) or ``gt``.
        rescore_threshold: joints above it count in the person score (HRNet: 0.2).
        oks_nms: OKS-NMS threshold (HRNet/DCPose: 0.9); 0 = off.
        joint_scores: the per-joint scores written for the PoseTrack AP, which ranks every joint
            prediction by them. ``heatmap``: the heatmap maxima (HRNet/DCPose's files);
            ``heatmap_x_person``: those times the person score, so the joints of a doubtful
            detection (a false positive, a duplicate that survives NMS) rank below those of a
            confident one (+1.9 mAP with detector boxes on the synthetic benchmark,
            docs/results.md). The person score itself plays no part in poseval's AP.
        gap_fill: with detector boxes, add boxes from neighbouring labelled frames where the
            detector missed a person (off unless ``gap_fill.max_gap > 0``).
        batch_size, workers: of the test loader.
    """

    flip_test: bool = True
    boxes: Literal["detections", "gt"] = "detections"
    rescore_threshold: float = 0.2
    oks_nms: float = 0.9
    joint_scores: Literal["heatmap", "heatmap_x_person"] = "heatmap"
    gap_fill: GapFillConfig = field(default_factory=GapFillConfig)
    batch_size: int = 64
    workers: int = 2

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.workers < 0:
            raise ValueError(
                f"batch_size must be >= 1 and workers >= 0, got {self.batch_size}, {self.workers}"
            )


@dataclass
class RunConfig:
    """How training runs.

    Args:
        seed: seeds data order, augmentation and the auxiliary tasks' masks.
        amp: mixed precision: ``auto`` = bf16 where the device supports it (the CPU, Ampere and
            later GPUs), else fp16 with a grad scaler; ``off`` = float32.
        ema: EMA decay of the weights (0 = off); the EMA weights are evaluated and saved.
        checkpoint_steps: extra checkpoint every N steps (0 = per epoch only).
        val_every: validate every N epochs (0 = only at the end of each stage).
        log_every: TensorBoard scalar every N steps.
        init: weights to start the first stage from (ViTPose / MAE / cmpose checkpoint).
        device: ``auto`` = cuda if available (each process its LOCAL_RANK GPU), else cpu.
    """

    seed: int = 0
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"
    ema: float = 0.0
    checkpoint_steps: int = 0
    val_every: int = 1
    log_every: int = 20
    init: str | None = None
    device: str = "auto"

    def __post_init__(self) -> None:
        if not 0 <= self.ema < 1:
            raise ValueError(f"ema must be in [0, 1), got {self.ema}")
        if self.checkpoint_steps < 0 or self.val_every < 0 or self.log_every < 1:
            raise ValueError("checkpoint_steps and val_every must be >= 0, log_every >= 1")


@dataclass
class ExperimentConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    stages: list[StageConfig] = field(default_factory=lambda: [StageConfig()])
    run: RunConfig = field(default_factory=RunConfig)
    test: TestConfig = field(default_factory=TestConfig)

    def __post_init__(self) -> None:
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        if not self.stages:
            raise ValueError("stages: at least one stage is needed")
