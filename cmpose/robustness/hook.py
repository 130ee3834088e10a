"""The corruption a test dataset applies to each sample's crops (``PoseTrackClipDataset``'s
``corrupt`` argument): one corruption at one severity, on the keyframe or on every clip frame.

Every draw comes from a generator seeded with (seed, corruption, severity, sample index), so a
sample's corrupted pixels do not depend on the loader's worker count or order, and a rerun gives
the same numbers.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

import numpy as np

from cmpose.data.records import PersonRecord
from cmpose.ops.boxes import box_iou
from cmpose.ops.geometry import apply_affine
from cmpose.robustness import CORRUPTIONS, SEVERITIES
from cmpose.robustness import corruptions as C

FRAMES = ("key", "all")

# A detector box is matched to the keyframe's GT person it overlaps most, if at least this much
# (the usual true-positive IoU); an unmatched box gets its occluders anywhere in the crop.
OCCLUSION_MATCH_IOU = 0.5

# (video id, frame index) -> [(box (4,) xywh, keypoints (J, 3))] of the GT people there.
GTPeople = dict[tuple[str, int], list[tuple[np.ndarray, np.ndarray]]]


def gt_people_by_frame(people: list[PersonRecord]) -> GTPeople:
    """The GT boxes and joints of every labelled frame, for occluding the joints of detector boxes."""
    table: GTPeople = {}
    for p in people:
        table.setdefault((p.video_id, p.frame_index), []).append((np.asarray(p.box), np.asarray(p.keypoints)))
    return table


@dataclass(frozen=True)
class ClipCorruption:
    """``name`` at ``severity`` on the keyframe only (``frames="key"``) or every frame (``"all"``).

    ``frame_drop`` always acts on the neighbours (``frames`` does not apply) and is the identity
    for T = 1. ``occlusion`` pastes the same patches on every corrupted frame (a static occluder)
    over the sample's annotated keyframe joints; a sample without joints (a detector box) takes the
    joints of the GT person in ``gt_people`` its box matches. A picklable callable, so loader
    workers get a copy.
    """

    name: str
    severity: int
    frames: str = "all"
    seed: int = 0
    gt_people: GTPeople = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.name not in CORRUPTIONS:
            raise ValueError(f"unknown corruption {self.name!r}; expected one of {', '.join(CORRUPTIONS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"severity must be one of {SEVERITIES}, got {self.severity!r}")
        if self.frames not in FRAMES:
            raise ValueError(f"frames must be 'key' or 'all', got {self.frames!r}")

    def rng(self, index: int) -> np.random.Generator:
        # crc32, not hash(): Python salts str hashes per process, so workers would disagree.
        return np.random.default_rng((self.seed, zlib.crc32(self.name.encode()), self.severity, index))

    def __call__(
        self, crops: np.ndarray, index: int, person: PersonRecord, to_crop: np.ndarray
    ) -> np.ndarray:
        """(T, H, W, 3) uint8 crops (keyframe at T // 2) -> corrupted copy."""
        rng = self.rng(index)
        key = len(crops) // 2
        if self.name == "frame_drop":
            return C.drop_frames(crops, self.severity, rng, key)
        # The keyframe draws first, so it is corrupted alike with "key" and "all": the two differ
        # only by the neighbours.
        targets = [key] + ([t for t in range(len(crops)) if t != key] if self.frames == "all" else [])
        out = crops.copy()
        if self.name == "occlusion":
            joints = self.crop_joints(person, to_crop, crops.shape[1:3])
            patches = C.occluders(crops.shape[1:3], self.severity, rng, joints)
            for t in targets:
                out[t] = C.paste(crops[t], patches)
            return out
        corrupt = C.IMAGE_CORRUPTIONS[self.name]
        for t in targets:
            out[t] = corrupt(crops[t], self.severity, rng)
        return out

    def crop_joints(self, person: PersonRecord, to_crop: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        """(N, 2) annotated keyframe joints of ``person`` (or of its matched GT person) in crop
        pixels, those inside the (H, W) crop only."""
        kps = np.asarray(person.keypoints)
        if not (kps[:, 2] > 0).any():
            kps = self._matched_gt(person)
        xy = apply_affine(kps[kps[:, 2] > 0, :2], np.asarray(to_crop)[:2])
        h, w = shape
        inside = (xy[:, 0] >= 0) & (xy[:, 0] < w) & (xy[:, 1] >= 0) & (xy[:, 1] < h)
        return xy[inside]

    def _matched_gt(self, person: PersonRecord) -> np.ndarray:
        gt = self.gt_people.get((person.video_id, person.frame_index), [])
        if not gt:
            return np.zeros((0, 3))
        iou = box_iou(np.asarray(person.box)[None], np.stack([b for b, _ in gt]))[0]
        best = int(np.argmax(iou))
        return gt[best][1] if iou[best] >= OCCLUSION_MATCH_IOU else np.zeros((0, 3))
