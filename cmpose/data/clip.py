"""Which frames form a clip: pure functions, shared by training, testing and video inference."""

from __future__ import annotations

from collections.abc import Sequence


def clip_offsets(num_frames: int, step: int) -> list[int]:
    """Offsets of a T-frame clip around its keyframe, in temporal order.

    T = 3 gives (-d, 0, +d) (CM-Pose, DCPose); T = 5 gives (-2d, -d, 0, d, 2d). The keyframe sits
    in the middle, so T must be odd.

    Args:
        num_frames: T, odd and >= 1.
        step: d >= 0, the distance between neighbouring clip frames.
    """
    if num_frames < 1 or num_frames % 2 == 0:
        raise ValueError(f"clip length T must be odd and >= 1, got {num_frames}")
    if step < 0:
        raise ValueError(f"clip step d must be >= 0, got {step}")
    half = num_frames // 2
    return [k * step for k in range(-half, half + 1)]


def clip_frame_indices(keyframe: int, offsets: Sequence[int], video_length: int) -> list[int]:
    """Frame indices of the clip, clipped at the video borders.

    At the borders the index is clamped to [0, video_length - 1] (mmpose's PoseTrack18 video
    dataset does the same), so at the first and last frame the keyframe itself repeats.
    """
    if not 0 <= keyframe < video_length:
        raise ValueError(f"keyframe {keyframe} outside the video (0..{video_length - 1})")
    return [min(max(keyframe + o, 0), video_length - 1) for o in offsets]
