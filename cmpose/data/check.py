"""``cmpose data check``: scan a PoseTrack-format dataset, count it and list every problem."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cmpose.data.problems import Problems
from cmpose.data.readers.auto import find_annotation_files, read_annotations
from cmpose.data.records import Dataset
from cmpose.errors import DataError
from cmpose.keypoints import PT18_NAMES


@dataclass
class CheckReport:
    """Counts and problems of one annotation source (a split folder or a merged file)."""

    source: str
    videos: int = 0
    frames: int = 0  # frames of all videos (``nframes``)
    listed_frames: int = 0  # frames the annotation lists
    labelled_frames: int = 0
    people: int = 0
    annotated_joints: int = 0
    problems: Problems = field(default_factory=Problems)

    def counts(self) -> dict[str, int]:
        keys = ("videos", "frames", "listed_frames", "labelled_frames", "people", "annotated_joints")
        return {k: getattr(self, k) for k in keys}


def discover_sources(root: Path) -> dict[str, list[Path]]:
    """Annotation sources under ``root``, by name.

    - a file: itself;
    - a folder holding ``*.json``: that folder (one video per file, or merged files);
    - a dataset root: each split folder ``annotations/<split>/`` (PoseTrack18) or
      ``posetrack_data/<split>/`` (PoseTrack21), plus merged files directly in ``annotations/``.
    Detection files (lists of boxes) are left out.
    """
    root = Path(root)
    if root.is_file():
        return {root.name: [root]}
    if not root.is_dir():
        raise DataError("no such file or folder", path=root)
    sources: dict[str, list[Path]] = {}
    for sub in ("annotations", "posetrack_data"):
        base = root / sub
        if not base.is_dir():
            continue
        for split in sorted(p for p in base.iterdir() if p.is_dir()):
            if any(split.glob("*.json")):
                sources[f"{sub}/{split.name}"] = [split]
        for merged in sorted(base.glob("*.json")):
            sources[f"{sub}/{merged.name}"] = [merged]
    if not sources and any(root.glob("*.json")):
        sources[root.name] = [root]
    if not sources:
        raise DataError("found no annotations (expected annotations/<split>/*.json or *.json)", path=root)
    return sources


def _peek(path: Path) -> bytes | None:
    """The first bytes of a file (None when it cannot be read: a folder named ``*.json``, a
    symlink loop, no permission). Peek, do not parse: merged files can be hundreds of MB."""
    try:
        with open(path, "rb") as f:
            return f.read(4096).lstrip()
    except OSError:
        return None


def _is_detection_file(path: Path) -> bool:
    """Detection files are non-empty JSON lists of objects; annotation files are objects."""
    head = _peek(path)
    return head is not None and head.startswith(b"[") and head[1:].lstrip().startswith(b"{")


def check_source(
    name: str,
    paths: list[Path],
    image_root: Path | None = None,
    all_frames: bool = False,
    pt17_layout: str = "original",
) -> CheckReport | None:
    """Read one source leniently and look for problems a training or evaluation run would hit.
    Returns None for a source of detection files only (not annotations)."""
    report = CheckReport(source=name)
    probs = report.problems
    files = [f for p in paths for f in find_annotation_files(p)]
    lists = [f for f in files if _is_detection_file(f)]
    if len(lists) == len(files):
        return None  # a folder of detection files
    # A list among annotations is what training would refuse: an error, not a silent skip.
    for f in lists:
        probs.error("unreadable file", "a JSON list (detections?) among annotation files", path=f)
    files = [f for f in files if f not in lists]
    data = Dataset()
    # One file at a time: a broken file must not hide the others' problems.
    for f in tqdm(files, desc=f"checking {name}", unit="file", disable=None if len(files) > 20 else True):
        if _peek(f) is None:
            probs.error(
                "unreadable file", "cannot be read (a folder, a symlink loop, no permission?)", path=f
            )
            continue
        try:
            part = read_annotations(f, image_root, probs, pt17_layout=pt17_layout)
        except DataError as err:
            probs.error("unreadable file", str(err))
            continue
        duplicate = sorted(set(part.videos) & set(data.videos))
        if duplicate:
            probs.error("duplicate video", f"video(s) {duplicate} already read from another file", path=f)
            continue
        data.extend(part)
    report.videos = len(data.videos)
    report.frames = sum(v.num_frames for v in data.videos.values())
    report.listed_frames = data.num_listed_frames
    report.labelled_frames = len(data.labelled_frames)
    report.people = len(data.people)
    report.annotated_joints = sum(p.num_annotated for p in data.people)

    for (video_id, frame), path in sorted(data.labelled_frames.items()):
        if not path.is_file():
            probs.error(
                "missing image",
                "labelled frame's image not found",
                path=path,
                record=f"video {video_id} frame {frame}",
            )
    if all_frames:
        for video in data.videos.values():
            for i in range(video.num_frames):
                if (video.video_id, i) not in data.labelled_frames and not video.frame_path(i).is_file():
                    probs.warning(
                        "missing frame",
                        "unlabelled frame not found (clips there reuse the keyframe)",
                        path=video.frame_path(i),
                    )
    labelled_videos = {v for v, _ in data.labelled_frames}
    for video_id in sorted(set(data.videos) - labelled_videos):
        probs.warning(
            "no labelled frames",
            "video has no labelled frame",
            path=data.videos[video_id].source,
            record=video_id,
        )

    tracks: Counter = Counter()
    for p in data.people:
        rec = f"video {p.video_id} frame {p.frame_index} track {p.track_id}"
        if p.num_annotated == 0:
            probs.warning(
                "person without joints",
                "no annotated joints (not a pose sample)",
                path=p.image_path,
                record=rec,
            )
        if p.head_box is None:
            probs.warning(
                "missing head box",
                "no bbox_head: PCKh cannot be computed for this person",
                path=p.image_path,
                record=rec,
                field="bbox_head",
            )
        elif p.head_box[2] <= 0 or p.head_box[3] <= 0:
            probs.warning(
                "zero-size head box",
                f"bbox_head {p.head_box.tolist()} has zero size",
                path=p.image_path,
                record=rec,
                field="bbox_head",
            )
        if p.image_size is not None and p.num_annotated:
            vis = p.keypoints[:, 2] > 0
            xy = p.keypoints[vis, :2]
            w, h = p.image_size
            out = (xy[:, 0] < -1) | (xy[:, 1] < -1) | (xy[:, 0] > w) | (xy[:, 1] > h)
            if out.any():
                joints = np.flatnonzero(vis)[out]
                where = ", ".join(
                    f"{PT18_NAMES[j]} at ({x:.0f}, {y:.0f})"
                    for j, (x, y) in zip(joints, xy[out], strict=True)
                )
                probs.warning(
                    "joint outside image",
                    f"annotated {where} outside the {w}x{h} image",
                    path=p.image_path,
                    record=rec,
                    field="keypoints",
                )
        if p.track_id >= 0:
            tracks[(p.video_id, p.frame_index, p.track_id)] += 1
    for (video_id, frame, track), n in sorted(tracks.items()):
        if n > 1:
            probs.warning(
                "repeated track id",
                f"track id {track} used by {n} people in one frame",
                path=data.videos[video_id].source,
                record=f"video {video_id} frame {frame}",
                field="track_id",
            )
    return report
