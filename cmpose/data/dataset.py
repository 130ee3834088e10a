"""Top-down video clip dataset: one sample per person in a labelled keyframe.

A sample is T frames around the keyframe (``cmpose.data.clip``), every frame cropped with the
keyframe's box and the same augmentation, plus the keyframe's heatmap targets. Randomness comes
only from ``__getitem__``: a generator seeded with (seed, epoch, index), so a run is reproducible
whatever the number of workers; call ``set_epoch`` before each epoch's iterator is created.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from cmpose.data.augment import AugmentParams, color_normalize, draw_augment, half_body_region
from cmpose.data.clip import clip_frame_indices, clip_offsets
from cmpose.data.config import AugmentConfig, ClipConfig, CropConfig, LoaderConfig
from cmpose.data.frames import FrameCache, reduced_to_full, reduction_factor
from cmpose.data.records import PersonRecord, Video
from cmpose.errors import DataError
from cmpose.keypoints import FLIP_INDEX
from cmpose.ops.geometry import apply_affine, box_to_center_scale, get_affine_matrix, invert_affine
from cmpose.ops.heatmap import HeatmapCodec

log = logging.getLogger(__name__)

# Half-body crops are grown x1.5 around the chosen joints (HRNet's half_body_transform).
HALF_BODY_PADDING = 1.5

# A test-time corruption of a sample's crops (``cmpose robustness``): called with the (T, H, W, 3)
# uint8 BGR crops (keyframe at T // 2), the sample index, its record and the (3, 3) image -> crop
# affine; returns the corrupted crops. Seeded by the index, so workers and order do not matter.
CropCorruption = Callable[[np.ndarray, int, PersonRecord, np.ndarray], np.ndarray]


class PoseTrackClipDataset(TorchDataset):
    """Clips for top-down video pose estimation.

    Args:
        samples: one record per person (GT people for training, detector boxes for testing).
        videos: frame layout of every video the samples refer to.
        train: draw the clip step and the augmentation at random (else fixed step, no aug).
        clip: clip length and steps.
        crop: crop/heatmap geometry and normalisation.
        augment: augmentation ranges (used only when ``train``).
        loader: decode cache and decode reduction settings.
        seed: base seed of the per-sample generators.
        corrupt: an optional ``CropCorruption`` applied to the crops before normalisation.

    Each item is a dict:
        clip: (T, 3, H, W) float32, normalised RGB, frames in temporal order;
        target: (J, Hh, Wh) float32 keyframe heatmaps; target_weight: (J,) float32;
        meta: dict of tensors to map predictions back to the image and to the dataset:
            crop_to_image (2, 3) affine of the keyframe crop (before the flip), flipped (bool),
            center (2,), scale (2,), rotation, keypoints (J, 3) GT in image pixels,
            frame_indices (T,), frame_index, index, image_id (-1 if none), box_score, track_id.
    """

    def __init__(
        self,
        samples: Sequence[PersonRecord],
        videos: dict[str, Video],
        *,
        train: bool,
        clip: ClipConfig | None = None,
        crop: CropConfig | None = None,
        augment: AugmentConfig | None = None,
        loader: LoaderConfig | None = None,
        seed: int = 0,
        corrupt: CropCorruption | None = None,
    ) -> None:
        self.samples = list(samples)
        self.videos = videos
        self.train = train
        self.clip = clip or ClipConfig()
        self.crop = crop or CropConfig()
        self.augment = augment or AugmentConfig()
        self.loader = loader or LoaderConfig()
        self.seed = seed
        self.corrupt = corrupt
        self.epoch = 0
        missing = {s.video_id for s in self.samples} - set(videos)
        if missing:
            raise DataError(f"samples refer to videos with no frame layout: {sorted(missing)[:5]}")
        self.codec = HeatmapCodec(self.crop.image_size, self.crop.heatmap_size, self.crop.sigma)
        self._mean = np.asarray(self.crop.mean, np.float32)
        self._std = np.asarray(self.crop.std, np.float32)
        self._cache = FrameCache(self.loader.frame_cache_size)
        self._missing_frames: set[str] = set()

    def __len__(self) -> int:
        return len(self.samples)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of the next epoch (deterministic in (seed, epoch, index))."""
        self.epoch = epoch

    @property
    def cache(self) -> FrameCache:
        return self._cache

    # --- the sample -----------------------------------------------------------------------------
    def frame_indices(self, index: int, rng: np.random.Generator | None = None) -> list[int]:
        """The clip's frame indices for sample ``index`` (step drawn from ``rng`` in training)."""
        person = self.samples[index]
        if self.train:
            lo, hi = self.clip.train_step
            rng = rng if rng is not None else np.random.default_rng((self.seed, self.epoch, index))
            step = int(rng.integers(lo, hi + 1))
        else:
            step = self.clip.test_step
        offsets = clip_offsets(self.clip.num_frames, step)
        return clip_frame_indices(person.frame_index, offsets, self.videos[person.video_id].num_frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        person = self.samples[index]
        indices = self.frame_indices(index, rng)
        aspect = self.crop.image_size[0] / self.crop.image_size[1]
        center, scale = box_to_center_scale(person.box, aspect, self.crop.padding)
        params = draw_augment(self.augment, rng) if self.train else AugmentParams()
        if params.half_body:
            region = half_body_region(
                person.keypoints, aspect, HALF_BODY_PADDING, self.augment.half_body_min_joints, rng
            )
            if region is not None:
                center, scale = region
        center = center + np.asarray(params.shift) * scale  # scale: the region's (w, h) in pixels
        scale = scale * params.scale
        out_w, out_h = self.crop.image_size
        to_crop = np.vstack([get_affine_matrix(center, scale, params.rotation, (out_w, out_h)), [0, 0, 1]])
        if params.flip:
            # Flip the crop instead of the frames: one warp per frame, x -> W - 1 - x (pixel centres).
            to_crop = np.array([[-1.0, 0.0, out_w - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]) @ to_crop

        factor = reduction_factor(scale, (out_w, out_h), self.loader.max_decode_reduction)
        # Exactly this sample's factor, for every frame, never a sharper copy that happens to be
        # cached: the pixels must be a function of (seed, epoch, index) alone, or a resumed run
        # (empty cache) sees other batches than the uninterrupted one (issue 18).
        keyframe = self._cache.get(person.image_path, factor)
        warp = (to_crop @ reduced_to_full(factor))[:2].astype(np.float32)
        crops = np.empty((len(indices), out_h, out_w, 3), np.uint8)
        # A frame that repeats at a border is decoded once.
        decoded: dict[int, np.ndarray] = {person.frame_index: keyframe}
        for t, fi in enumerate(indices):
            if fi not in decoded:
                decoded[fi] = self._load_frame(person, fi, factor)
            cv2.warpAffine(
                decoded[fi],
                warp,
                (out_w, out_h),
                dst=crops[t],
                flags=cv2.INTER_LINEAR,
                borderMode=cv2.BORDER_CONSTANT,
            )
        if self.corrupt is not None:
            crops = self.corrupt(crops, index, person, to_crop)
        clip = color_normalize(crops, params, self._mean, self._std)

        kps = person.keypoints
        crop_kps = apply_affine(kps[:, :2], to_crop[:2])  # (J, 2)
        vis = kps[:, 2] > 0
        if params.flip:
            crop_kps, vis = crop_kps[list(FLIP_INDEX)], vis[list(FLIP_INDEX)]
        target, weight = self.codec.encode(crop_kps, vis)

        unflipped = get_affine_matrix(center, scale, params.rotation, (out_w, out_h))
        meta = {
            "crop_to_image": torch.from_numpy(invert_affine(unflipped).astype(np.float64)),
            "flipped": torch.tensor(params.flip),
            "center": torch.from_numpy(center.astype(np.float64)),
            "scale": torch.from_numpy(np.asarray(scale, np.float64)),
            "rotation": torch.tensor(params.rotation, dtype=torch.float64),
            "keypoints": torch.from_numpy(kps.astype(np.float64)),
            "frame_indices": torch.tensor(indices),
            "frame_index": torch.tensor(person.frame_index),
            "index": torch.tensor(index),
            "image_id": torch.tensor(
                person.image_id if person.image_id is not None else -1, dtype=torch.int64
            ),
            "box_score": torch.tensor(person.box_score, dtype=torch.float64),
            "track_id": torch.tensor(person.track_id),
        }
        return {
            "clip": torch.from_numpy(clip),
            "target": torch.from_numpy(target),
            "target_weight": torch.from_numpy(weight),
            "meta": meta,
        }

    def _load_frame(self, person: PersonRecord, frame_index: int, factor: int) -> np.ndarray:
        """Decode a neighbour frame; a missing one falls back to the keyframe (with a warning).
        (A missing keyframe raises ``DataError`` naming the file, in ``__getitem__``.)"""
        path = self.videos[person.video_id].frame_path(frame_index)
        try:
            return self._cache.get(path, factor)
        except DataError:
            if str(path) not in self._missing_frames:
                self._missing_frames.add(str(path))
                log.warning(
                    "video %s: neighbour frame %s unreadable; using the keyframe (%d such frames so far)",
                    person.video_id,
                    path,
                    len(self._missing_frames),
                )
            return self._cache.get(person.image_path, factor)

    @property
    def num_missing_frames(self) -> int:
        """Neighbour frames replaced by the keyframe so far (in this process)."""
        return len(self._missing_frames)
