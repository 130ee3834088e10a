"""Settings of the data pipeline. Each dataclass goes to the one component that uses it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ClipConfig:
    """Which frames form a clip (see ``cmpose.data.clip``).

    Args:
        num_frames: T, odd; the keyframe is in the middle.
        train_step: (lo, hi): in training the step d is drawn uniformly from lo..hi per sample.
        test_step: the fixed d at test time.
    """

    num_frames: int = 3
    train_step: tuple[int, int] = (1, 2)
    test_step: int = 1

    def __post_init__(self) -> None:
        if self.num_frames < 1 or self.num_frames % 2 == 0:
            raise ValueError(f"num_frames must be odd and >= 1, got {self.num_frames}")
        lo, hi = self.train_step
        if not 0 <= lo <= hi:
            raise ValueError(f"train_step must be (lo, hi) with 0 <= lo <= hi, got {self.train_step}")
        if self.test_step < 0:
            raise ValueError(f"test_step must be >= 0, got {self.test_step}")


@dataclass
class CropConfig:
    """Top-down crop and heatmap geometry (ViTPose 256x192 defaults).

    Args:
        image_size: crop (width, height); its ratio is the box aspect (3:4).
        heatmap_size: heatmap (Wh, Hh).
        sigma: Gaussian target sigma in heatmap pixels.
        padding: box enlargement (x1.25, the HRNet/ViTPose convention).
        mean, std: per-channel RGB normalisation in 0..1 units (ImageNet).
    """

    image_size: tuple[int, int] = (192, 256)
    heatmap_size: tuple[int, int] = (48, 64)
    sigma: float = 2.0
    padding: float = 1.25
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class AugmentConfig:
    """Training augmentation, drawn once per clip and applied to all T frames alike.

    Defaults follow ViTPose's COCO recipe (rotation 40 deg with prob 0.6, scale factor 0.5,
    half-body 0.3 with > 8 joints, flip 0.5); colour jitter is cmpose's addition. ``shift``
    moves the crop centre by up to that fraction of the crop region with probability
    ``shift_prob`` (mmpose 1.x's RandomBBoxTransform: 0.16 with 0.3; ViTPose's own 0.x recipe has
    none, hence the default 0); meant for detector boxes that miss the person's centre.
    """

    flip_prob: float = 0.5
    rotation: float = 40.0
    rotation_prob: float = 0.6
    scale: float = 0.5
    half_body_prob: float = 0.3
    half_body_min_joints: int = 8
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    shift: float = 0.0
    shift_prob: float = 0.3

    @classmethod
    def disabled(cls) -> AugmentConfig:
        """Every augmentation off (rotation keeps its range, but is never drawn)."""
        return cls(
            flip_prob=0.0,
            rotation_prob=0.0,
            scale=0.0,
            half_body_prob=0.0,
            brightness=0.0,
            contrast=0.0,
            saturation=0.0,
            shift=0.0,
        )

    def __post_init__(self) -> None:
        for name in ("flip_prob", "rotation_prob", "half_body_prob", "shift_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], got {getattr(self, name)}")
        for name in ("scale", "brightness", "contrast", "saturation", "shift"):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} is a relative range in [0, 1), got {getattr(self, name)}")
        if self.rotation < 0:
            raise ValueError(f"rotation must be >= 0 degrees, got {self.rotation}")


@dataclass
class LoaderConfig:
    """How samples are built and frames decoded.

    Args:
        min_keypoints: training people with fewer annotated joints are skipped.
        det_score_threshold: detector boxes below this score are dropped at test time.
        frame_cache_size: decoded frames kept per worker (LRU).
        max_decode_reduction: largest JPEG DCT down-scaling (1 turns it off).
    """

    min_keypoints: int = 1
    det_score_threshold: float = 0.2
    frame_cache_size: int = 16
    max_decode_reduction: int = 4

    def __post_init__(self) -> None:
        if self.max_decode_reduction not in (1, 2, 4, 8):
            raise ValueError(f"max_decode_reduction must be 1, 2, 4 or 8, got {self.max_decode_reduction}")
        if self.frame_cache_size < 0 or self.min_keypoints < 0:
            raise ValueError("frame_cache_size and min_keypoints must be >= 0")


@dataclass
class GapFillConfig:
    """Filling the detector's gaps from neighbouring labelled frames at test time
    (``cmpose.ops.gap_fill``): a person missed in a frame but found in the frames around it gets
    the box it has there. Off by default, as in the published PoseTrack protocols, which test on
    the detector's boxes as given.

    Args:
        max_gap: largest distance in frames to the neighbour a box comes from (0 = off). Boxes
            come only from labelled frames, which detection files cover (PoseTrack's and the
            synthetic benchmark's); the synthetic benchmark labels every 4th frame, so it needs 4.
        min_score: neighbour boxes scoring less fill nothing.
        link_iou: the IoU at which two boxes are taken for one person.
        score_decay: an added box scores this times its sources' (lower) score.
    """

    max_gap: int = 0
    min_score: float = 0.5
    link_iou: float = 0.3
    score_decay: float = 0.8

    def __post_init__(self) -> None:
        if self.max_gap < 0:
            raise ValueError(f"max_gap must be >= 0, got {self.max_gap}")
        if not 0.0 < self.link_iou <= 1.0 or not 0.0 < self.score_decay <= 1.0:
            raise ValueError("link_iou and score_decay must be in (0, 1]")
