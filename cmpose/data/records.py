"""The internal record types every reader produces.

``PersonRecord`` is the one record a training or test sample is built from: one person in one
keyframe, with everything needed to crop, augment, encode targets and map predictions back.
``Video`` knows how to find any frame of a video on disk, so that neighbour (support) frames can
be located even when the annotation file lists only the labelled frames.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmpose.keypoints import NUM_JOINTS


@dataclass
class Video:
    """Frame layout of one video.

    Args:
        video_id: the video's name (its image folder, e.g. ``012834_mpii_test``).
        num_frames: frames in the video (PoseTrack's ``nframes``).
        frame_paths: when the annotation lists every frame, their paths in temporal order;
            empty when it does not, and the path is derived from ``pattern``.
        pattern: ``(folder, first_number, digits, suffix)``: frame i is
            ``folder / f"{first_number + i:0{digits}d}{suffix}"`` (PoseTrack18: 0-based, 6 digits;
            renamed PoseTrack17: 1-based, 8 digits).
        source: the annotation file this came from (for messages).
    """

    video_id: str
    num_frames: int
    frame_paths: list[Path] = field(default_factory=list)
    pattern: tuple[Path, int, int, str] | None = None
    source: Path | None = None

    def frame_path(self, index: int) -> Path:
        """Path of frame ``index`` (0-based position in the video)."""
        if not 0 <= index < self.num_frames:
            raise IndexError(f"video {self.video_id}: frame {index} outside 0..{self.num_frames - 1}")
        if self.frame_paths:
            return self.frame_paths[index]
        if self.pattern is None:
            raise ValueError(f"video {self.video_id}: neither frame list nor file-name pattern known")
        folder, first, digits, suffix = self.pattern
        return folder / f"{first + index:0{digits}d}{suffix}"


@dataclass
class PersonRecord:
    """One person in one keyframe (J = 17, PoseTrack18 order).

    Args:
        video_id: key into the video table.
        frame_index: 0-based position of the keyframe in its video (also the evaluation's frame key).
        image_path: the keyframe image.
        image_size: (width, height) of the image, from the annotation; None when not given.
        box: (4,) person box x, y, w, h in image pixels (float64).
        keypoints: (J, 3) x, y, visibility; unannotated joints are (0, 0, 0).
        head_box: (4,) x, y, w, h or None (PCKh reference; absent for detector boxes).
        track_id: identity within the video, -1 when unknown.
        ignore_regions: polygons, each (P, 2) x, y, of areas whose people were not annotated.
        image_id: the dataset's image id when it has one.
        box_score: detector confidence (1.0 for ground-truth boxes).
        hard: hard-case labels of this person in this frame (``cmpose synth``'s optional
            ``hard`` field: occlusion, motion_blur, defocus, low_light, truncation); empty when the
            annotation has none.
        visible: (J,) bool, False where an annotated joint is covered by someone or something
            (the optional ``visible`` field of ``cmpose synth``); None when the annotation has none.
    """

    video_id: str
    frame_index: int
    image_path: Path
    image_size: tuple[int, int] | None
    box: np.ndarray
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((NUM_JOINTS, 3)))
    head_box: np.ndarray | None = None
    track_id: int = -1
    ignore_regions: list[np.ndarray] = field(default_factory=list)
    image_id: int | None = None
    box_score: float = 1.0
    hard: tuple[str, ...] = ()
    visible: np.ndarray | None = None

    @property
    def num_annotated(self) -> int:
        return int((self.keypoints[:, 2] > 0).sum())


@dataclass
class Dataset:
    """Everything a reader found: videos by id, people in labelled frames, labelled-frame keys.

    ``labelled_frames`` maps (video_id, frame_index) -> image path for every labelled frame,
    including those without people, so detector boxes can be attached to any of them.
    ``frame_info`` holds (image_id, (width, height) or None, ignore regions) per labelled frame.
    """

    videos: dict[str, Video] = field(default_factory=dict)
    people: list[PersonRecord] = field(default_factory=list)
    labelled_frames: dict[tuple[str, int], Path] = field(default_factory=dict)
    frame_info: dict[tuple[str, int], tuple[int | None, tuple[int, int] | None, list[np.ndarray]]] = field(
        default_factory=dict
    )
    num_listed_frames: int = 0

    def extend(self, other: Dataset) -> None:
        self.videos.update(other.videos)
        self.people.extend(other.people)
        self.labelled_frames.update(other.labelled_frames)
        self.frame_info.update(other.frame_info)
        self.num_listed_frames += other.num_listed_frames


def group_by_frame(records: list[PersonRecord]) -> dict[tuple[str, int], list[PersonRecord]]:
    """``records`` grouped by (video_id, frame_index), in their order within each frame."""
    out: dict[tuple[str, int], list[PersonRecord]] = defaultdict(list)
    for r in records:
        out[(r.video_id, r.frame_index)].append(r)
    return out
