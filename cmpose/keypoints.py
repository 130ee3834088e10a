"""Keypoint conventions shared by data, models and evaluation.

The internal order is PoseTrack18's 17 joints (COCO slots with the eyes replaced by
head_bottom / head_top; the ears are never annotated in PoseTrack18). PoseTrack17 and poseval
use 15 joints in a different order; ``PT17_NAMES`` maps them in (poseval's "neck" is
PoseTrack18's head_bottom).
"""

from __future__ import annotations

PT18_NAMES: tuple[str, ...] = (
    "nose",
    "head_bottom",
    "head_top",
    "left_ear",
    "right_ear",
    "left_shoulder",
    "right_shoulder",
    "left_elbow",
    "right_elbow",
    "left_wrist",
    "right_wrist",
    "left_hip",
    "right_hip",
    "left_knee",
    "right_knee",
    "left_ankle",
    "right_ankle",
)
NUM_JOINTS = len(PT18_NAMES)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(PT18_NAMES)}


def _flip_pairs(names: tuple[str, ...]) -> tuple[tuple[int, int], ...]:
    """Index pairs (left, right) found by name, so the table cannot drift from the names."""
    pairs = []
    for i, name in enumerate(names):
        if name.startswith("left_"):
            pairs.append((i, names.index("right_" + name[len("left_") :])))
    return tuple(pairs)


FLIP_PAIRS: tuple[tuple[int, int], ...] = _flip_pairs(PT18_NAMES)
# FLIP_INDEX[j] = the joint that j becomes after a horizontal flip.
FLIP_INDEX: tuple[int, ...] = tuple(
    next((b if a == j else a for a, b in FLIP_PAIRS if j in (a, b)), j) for j in range(NUM_JOINTS)
)

# 0-based limbs for drawing (PoseTrack18's category skeleton without the never-annotated ears).
SKELETON: tuple[tuple[int, int], ...] = (
    (15, 13), (13, 11), (16, 14), (14, 12), (11, 12), (5, 11), (6, 12), (5, 6),
    (5, 7), (6, 8), (7, 9), (8, 10), (1, 2), (0, 1), (0, 2), (1, 5), (1, 6),
)  # fmt: skip

# Joints whose distance to the body centre defines the upper body (half-body augmentation).
UPPER_BODY: tuple[int, ...] = tuple(range(0, 11))
LOWER_BODY: tuple[int, ...] = tuple(range(11, 17))

# PoseTrack17 / poseval joint ids 0..14 (poseval eval_helpers.Joint), as PoseTrack18 names.
PT17_NAMES: tuple[str, ...] = (
    "right_ankle",
    "right_knee",
    "right_hip",
    "left_hip",
    "left_knee",
    "left_ankle",
    "right_wrist",
    "right_elbow",
    "right_shoulder",
    "left_shoulder",
    "left_elbow",
    "left_wrist",
    "head_bottom",  # poseval: "neck"
    "nose",
    "head_top",
)
# PT17 id -> PoseTrack18 index.
PT17_TO_PT18: tuple[int, ...] = tuple(JOINT_INDEX[n] for n in PT17_NAMES)

# The 15 joints the PoseTrack mAP scores (every PoseTrack18 joint but the ears).
SCORED_NAMES: tuple[str, ...] = tuple(n for n in PT18_NAMES if not n.endswith("_ear"))
