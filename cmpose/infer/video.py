"""Streaming pose estimation on a video of any length, with backbone tokens computed once per crop.

CM-Pose predicts a keyframe t from the clip ``t - d*(T//2) .. t + d*(T//2)`` (step d). With the
real backbone sizes its cost is dominated by the ViT, which runs on every frame of the clip. In a
video every frame is the keyframe of one clip and a neighbour in T - 1 others, so
:class:`VideoPoseRunner` crops each tracked person in each frame **once**, runs the backbone once
on that crop (and once on its mirror image for the flip test), caches the tokens, and assembles
every clip from the cache:
per (frame, person) the cost is one backbone pass (two with the flip test) plus one pass of the
spatio-temporal encoder / FTE over the clip's tokens, instead of T (2T) backbone passes.

**Deliberate difference to training.** In training (and in ``cmpose test``) all T frames of a
clip are cropped with the *keyframe's* box. Here each frame is cropped with *its own* (smoothed)
track box, so that its tokens are the same whichever clip uses them; otherwise each frame would
need T different crops and T backbone passes, the cost the cache exists to avoid. With the
tracker's box smoothing, consecutive boxes of a track differ by a few pixels, and the model
sees the person at a slightly different place in the neighbour crops than it did in training
(where the neighbours show the motion relative to a fixed window). The keypoints are always
decoded in the keyframe's crop and mapped back with the keyframe crop's inverse affine, so
the neighbours' boxes never enter the coordinates. See docs/inference.md.

Borders and gaps: a clip frame outside the video, or where the track has no box, is replaced by
the nearest frame of the track towards the keyframe (at most the keyframe itself), as the
training data clamps clips at the video borders.

Memory is bounded independently of the video's length: the runner keeps the frames from the
oldest keyframe not yet emitted minus the clip radius up to the newest frame read, i.e. at most
``step * (T - 1) + lookahead`` frames (their tokens, and the BGR frames not yet yielded).
``lookahead`` frames are read ahead so the backbone gets batches across frames.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from cmpose.data.augment import AugmentParams, color_normalize
from cmpose.data.clip import clip_offsets
from cmpose.data.config import CropConfig
from cmpose.data.frames import reduced_to_full, reduction_factor
from cmpose.engine.predict import decode_to_image, predict_tokens
from cmpose.infer.tracker import TrackedBox
from cmpose.ops.geometry import box_to_center_scale, get_affine_matrix, invert_affine
from cmpose.ops.heatmap import HeatmapCodec

log = logging.getLogger(__name__)

__all__ = ["FrameResult", "PersonPose", "VideoPoseRunner", "crop_person"]


# --- results -------------------------------------------------------------------------------------
@dataclass
class PersonPose:
    """One person in one frame.

    Attributes:
        track_id: the tracker's id.
        box: (4,) x, y, w, h: the (smoothed) box the keyframe crop was made from.
        keypoints: (J, 2) image pixels; scores: (J,) heatmap maxima.
        box_score: the detection's score.
        crop_to_image: (2, 3) affine of the keyframe crop.
        clip_frames: the frame indices the clip's T crops came from (after border clamping).
        heatmaps (J, Hh, Wh), importance (T, Hp, Wp), cluster_ids (T, Hp, Wp; -1 = kept):
            the keyframe's outputs, filled when the runner has ``keep_maps`` (importance needs
            the encoder, cluster_ids stage 2).
        crops: (T, H, W, 3) uint8 BGR clip crops when the runner has ``keep_crops``.
    """

    track_id: int
    box: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray
    box_score: float = 1.0
    crop_to_image: np.ndarray | None = None
    clip_frames: list[int] = field(default_factory=list)
    heatmaps: np.ndarray | None = None
    importance: np.ndarray | None = None
    cluster_ids: np.ndarray | None = None
    crops: np.ndarray | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "track_id": int(self.track_id),
            "box": [round(float(v), 2) for v in self.box],
            "box_score": round(float(self.box_score), 4),
            "keypoints": [[round(float(x), 2), round(float(y), 2)] for x, y in self.keypoints],
            "scores": [round(float(s), 4) for s in self.scores],
        }


@dataclass
class FrameResult:
    """frame_index: the frame's index in the video; frame: (H, W, 3) uint8 BGR; people."""

    frame_index: int
    frame: np.ndarray
    people: list[PersonPose]


# --- cropping ------------------------------------------------------------------------------------
def crop_person(
    frame: np.ndarray,
    box: Sequence[float],
    crop: CropConfig,
    max_reduction: int = 4,
    reduced: dict[int, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a person as the test data does: the box grown to the crop's aspect and x padding
    (``box_to_center_scale``), UDP affine, bilinear sampling, black outside the frame.

    When the crop shrinks the region by 2x or more, the frame is first block-averaged by that
    power of two (the training data decodes JPEGs at reduced size for the same reason: no
    aliasing). ``reduced`` caches the averaged frames between the people of one frame.

    Returns:
        crop (H, W, 3) uint8 BGR and crop_to_image (2, 3) float64 (the crop's inverse affine).
    """
    out_w, out_h = crop.image_size
    center, scale = box_to_center_scale(box, out_w / out_h, crop.padding)
    to_crop = np.vstack([get_affine_matrix(center, scale, 0.0, (out_w, out_h)).astype(np.float64), [0, 0, 1]])
    factor = reduction_factor(scale, (out_w, out_h), max_reduction)
    src = frame
    if factor > 1:
        if reduced is not None and factor in reduced:
            src = reduced[factor]
        else:
            h, w = frame.shape[:2]
            src = cv2.resize(
                frame[: h // factor * factor, : w // factor * factor],
                (w // factor, h // factor),
                interpolation=cv2.INTER_AREA,
            )
            if reduced is not None:
                reduced[factor] = src
        warp = (to_crop @ reduced_to_full(factor))[:2]
    else:
        warp = to_crop[:2]
    out = cv2.warpAffine(
        src,
        warp.astype(np.float32),
        (out_w, out_h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
    )
    crop_to_image = invert_affine(get_affine_matrix(center, scale, 0.0, (out_w, out_h)).astype(np.float64))
    return out, crop_to_image


# --- the runner ----------------------------------------------------------------------------------
@dataclass
class _Crop:
    track_id: int
    box: np.ndarray
    score: float
    crop_to_image: np.ndarray
    image: np.ndarray | None  # uint8 crop: until encoded, and kept with keep_crops
    tokens: Tensor | None = None  # (N, C)
    flip_tokens: Tensor | None = None


@dataclass
class _Frame:
    index: int
    image: np.ndarray
    people: dict[int, _Crop]


@dataclass
class _Stream:
    frames: dict[int, _Frame] = field(default_factory=dict)  # by position in the stream
    pending: list[_Crop] = field(default_factory=list)  # cropped, not yet through the backbone
    last: int = -1  # newest position read
    encoded: int = -1  # newest position whose crops are all encoded
    next_key: int = 0  # next keyframe position to emit


class VideoPoseRunner:
    """Pose estimation over a stream of frames with tracked boxes (see the module docstring).

    Args:
        model: a ``CMPose`` (put in eval mode and moved to ``device``).
        crop: crop geometry and normalisation (``cfg.data.crop``).
        num_frames: T (``cfg.data.clip.num_frames``).
        step: the clip step d, in frames of the stream (``cfg.data.clip.test_step``).
        device: where the model runs.
        batch_size: crops per backbone call (x2 images with the flip test) and clips per
            encoder call.
        flip_test: average with the prediction of the mirrored clip.
        lookahead: frames read ahead of the clip's end before the backbone runs, so its batches
            span frames (1 = run after every frame: the smallest memory, the smallest batches).
        keep_maps: fill ``PersonPose.heatmaps / importance / cluster_ids``.
        keep_crops: fill ``PersonPose.crops`` (for token-map pictures).
        max_reduction: largest block-averaging factor before cropping (1 = off).
        amp_dtype: autocast dtype (``cmpose.engine.trainer.amp_dtype``, as ``cmpose test`` uses),
            None = float32.

    ``stats`` holds counters of the last run: frames, crops (backbone inputs, without flips),
    backbone_calls, clips, max_cached_frames, and seconds spent in crop / backbone / encoder /
    decode.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        crop: CropConfig,
        num_frames: int,
        step: int,
        device: str | torch.device,
        batch_size: int = 32,
        flip_test: bool = True,
        *,
        lookahead: int = 8,
        keep_maps: bool = False,
        keep_crops: bool = False,
        max_reduction: int = 4,
        amp_dtype: torch.dtype | None = None,
    ) -> None:
        if batch_size < 1 or lookahead < 1:
            raise ValueError(f"batch_size and lookahead must be >= 1, got {batch_size}, {lookahead}")
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.crop = crop
        self.num_frames = num_frames
        self.step = step
        self.offsets = clip_offsets(num_frames, step)
        self.radius = step * (num_frames // 2)
        self.batch_size = batch_size
        self.flip_test = flip_test
        self.lookahead = lookahead
        self.keep_maps = keep_maps
        self.keep_crops = keep_crops
        self.max_reduction = max_reduction
        self.amp_dtype = amp_dtype
        self.codec = HeatmapCodec(crop.image_size, crop.heatmap_size, crop.sigma)
        self._mean = np.asarray(crop.mean, np.float32)
        self._std = np.asarray(crop.std, np.float32)
        self.stats: dict[str, float] = {}
        model_t = getattr(model, "num_frames", num_frames)
        if model_t != num_frames:
            raise ValueError(f"the model was built for T={model_t} frames, the runner was given {num_frames}")

    @property
    def span(self) -> int:
        """Frames a clip spans: step * (T - 1) + 1."""
        return 2 * self.radius + 1

    def run(self, frames: Iterable[tuple[int, np.ndarray, Sequence[TrackedBox]]]) -> Iterator[FrameResult]:
        """Poses for a stream of ``(frame_index, bgr_frame, tracked boxes)``, one result per frame, in
        order. Each tracked box needs ``track_id``, ``box`` (x, y, w, h) and ``score``; a track id
        appears at most once per frame. Positions in the stream, not ``frame_index``, define the
        clip (a stream that skips frames has clips over the frames it holds)."""
        self.stats = dict.fromkeys(
            ("frames", "crops", "backbone_calls", "clips", "max_cached_frames"), 0
        ) | dict.fromkeys(("crop_s", "backbone_s", "encoder_s", "decode_s"), 0.0)
        s = _Stream()
        for pos, (index, image, people) in enumerate(frames):
            self._ingest(s, pos, index, image, people)
            if len(s.pending) >= self.batch_size or s.last - s.encoded >= self.lookahead:
                self._encode(s)
                yield from self._emit(s, end=False)
        self._encode(s)
        yield from self._emit(s, end=True)

    # --- steps ------------------------------------------------------------------------------------
    def _ingest(
        self, s: _Stream, pos: int, index: int, image: np.ndarray, people: Sequence[TrackedBox]
    ) -> None:
        t0 = time.perf_counter()
        reduced: dict[int, np.ndarray] = {}
        frame = _Frame(int(index), image, {})
        for p in people:
            tid = int(p.track_id)
            if tid in frame.people:
                raise ValueError(f"frame {index}: track id {tid} given twice")
            box = np.asarray(p.box, np.float64).reshape(4)
            if not (np.all(np.isfinite(box)) and box[2] > 0 and box[3] > 0):
                continue
            img, c2i = crop_person(image, box, self.crop, self.max_reduction, reduced)
            c = _Crop(tid, box, float(getattr(p, "score", 1.0)), c2i, img)
            frame.people[tid] = c
            s.pending.append(c)
        s.frames[pos] = frame
        s.last = pos
        self.stats["frames"] += 1
        self.stats["crop_s"] += time.perf_counter() - t0

    @torch.no_grad()
    def _encode(self, s: _Stream) -> None:
        """Backbone on every pending crop (and its mirror image), in batches."""
        t0 = time.perf_counter()
        pending, s.pending = s.pending, []
        for i in range(0, len(pending), self.batch_size):
            chunk = pending[i : i + self.batch_size]
            x = color_normalize(np.stack([c.image for c in chunk]), AugmentParams(), self._mean, self._std)
            x = torch.from_numpy(x).to(self.device)
            if self.flip_test:
                x = torch.cat([x, x.flip(-1)])
            with self._autocast():
                tokens = self.model.encode_frames(x)
            n = len(chunk)
            for j, c in enumerate(chunk):
                c.tokens = tokens[j]
                c.flip_tokens = tokens[n + j] if self.flip_test else None
                if not self.keep_crops:
                    c.image = None
            self.stats["crops"] += n
            self.stats["backbone_calls"] += 1
        s.encoded = s.last
        self.stats["backbone_s"] += time.perf_counter() - t0

    def _autocast(self) -> torch.autocast:
        return torch.autocast(
            self.device.type, dtype=self.amp_dtype or torch.float32, enabled=self.amp_dtype is not None
        )

    def _clip_positions(self, s: _Stream, key: int, tid: int) -> list[int]:
        """Positions of the clip of track ``tid`` at keyframe position ``key``: each offset walks
        towards the keyframe until it finds a frame that exists and holds the track."""
        out = []
        for o in self.offsets:
            p = key + o
            direction = -1 if o > 0 else 1
            while p != key and (p < 0 or p > s.last or tid not in s.frames[p].people):
                p += direction
            out.append(p)
        return out

    def _emit(self, s: _Stream, end: bool) -> Iterator[FrameResult]:
        last_key = s.last if end else s.encoded - self.radius
        if last_key < s.next_key:
            return
        self.stats["max_cached_frames"] = max(self.stats["max_cached_frames"], len(s.frames))
        keys = range(s.next_key, last_key + 1)
        jobs = [(k, tid, self._clip_positions(s, k, tid)) for k in keys for tid in s.frames[k].people]
        results: dict[tuple[int, int], PersonPose] = {}
        for i in range(0, len(jobs), self.batch_size):
            self._predict(s, jobs[i : i + self.batch_size], results)
        for k in keys:
            f = s.frames[k]
            yield FrameResult(f.index, f.image, [results[(k, tid)] for tid in sorted(f.people)])
            f.image = None  # yielded: the caller owns it now
        s.next_key = last_key + 1
        for p in [p for p in s.frames if p < s.next_key - self.radius]:
            del s.frames[p]

    @torch.no_grad()
    def _predict(
        self, s: _Stream, jobs: list[tuple[int, int, list[int]]], results: dict[tuple[int, int], PersonPose]
    ) -> None:
        t0 = time.perf_counter()
        clips = [[s.frames[p].people[tid] for p in ps] for _, tid, ps in jobs]
        tokens = torch.stack([torch.stack([c.tokens for c in clip]) for clip in clips])
        flip = (
            torch.stack([torch.stack([c.flip_tokens for c in clip]) for clip in clips])
            if self.flip_test
            else None
        )
        with self._autocast():
            heatmaps, out = predict_tokens(self.model, tokens, flip)
        heatmaps = heatmaps.float()
        t1 = time.perf_counter()
        keys = [clip[len(clip) // 2] for clip in clips]
        kps, scores = decode_to_image(
            self.codec, heatmaps.cpu().numpy(), np.stack([c.crop_to_image for c in keys])
        )
        maps = {}
        if self.keep_maps:
            maps["heatmaps"] = heatmaps.cpu().numpy()
            for name in ("importance", "cluster_ids"):
                if out.get(name) is not None:
                    m = out[name].cpu()
                    maps[name] = (m.float() if m.is_floating_point() else m).numpy()
        for b, (k, tid, ps) in enumerate(jobs):
            key = keys[b]
            results[(k, tid)] = PersonPose(
                track_id=tid,
                box=key.box,
                keypoints=kps[b],
                scores=scores[b],
                box_score=key.score,
                crop_to_image=key.crop_to_image,
                clip_frames=[s.frames[p].index for p in ps],
                heatmaps=maps["heatmaps"][b] if "heatmaps" in maps else None,
                importance=maps["importance"][b] if "importance" in maps else None,
                cluster_ids=maps["cluster_ids"][b] if "cluster_ids" in maps else None,
                crops=np.stack([c.image for c in clips[b]]) if self.keep_crops else None,
            )
        self.stats["clips"] += len(jobs)
        self.stats["encoder_s"] += t1 - t0
        self.stats["decode_s"] += time.perf_counter() - t1
