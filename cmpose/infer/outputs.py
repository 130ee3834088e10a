"""The standard files of a video run besides the overlay MP4 and the JSON lines: a PoseTrack18
per-video JSON (what ``cmpose evaluate`` and poseval read) and a COCO keypoint results JSON.

Both are pure functions of the poses of the whole video, kept in memory as :class:`FramePoses`
(no images: about 250 bytes per person and frame, so a 2-hour video with 5 people in view
needs about 250 MB), plus the frame naming of :func:`posetrack_images`. ``PoseRecorder`` collects
them from the ``FrameResult`` stream while the MP4 and the JSON lines are written.

Shapes: P people in a frame, J the model's joints (17), F frames.
"""

from __future__ import annotations

import heapq
import logging
import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cmpose.errors import CmposeError, DataError
from cmpose.keypoints import PT18_NAMES
from cmpose.ops.nms import rescore

log = logging.getLogger(__name__)

FORMATS: tuple[str, ...] = ("mp4", "jsonl", "posetrack", "coco")
# poseval asserts every track id is below this (eval_helpers.MAX_TRACK_ID; cmpose.eval.writer).
MAX_TRACK_ID = 10000
# PoseTrack video folders: <6-digit id>_<source>_<split> (../shared/data/README.md); the image id
# is T * 10^10 + video * 10^4 + frame with T = 1 mpii, 2 bonn, 3 mpiinew.
_POSETRACK_NAME = re.compile(r"^(\d{6})_(mpii|bonn|mpiinew)_[A-Za-z]+$")
_SOURCE_CODE = {"mpii": 1, "bonn": 2, "mpiinew": 3}
_SPLITS = ("train", "val", "test")
# HRNet / DCPose instance rescoring threshold (test.rescore_threshold of the packaged configs).
RESCORE_THRESHOLD = 0.2


def parse_formats(spec: str) -> tuple[str, ...]:
    """``"mp4,posetrack"`` -> ("mp4", "posetrack") in ``FORMATS`` order; ``"all"`` -> every format.

    Raises:
        CmposeError: an unknown or empty entry, naming the known ones.
    """
    names = [s.strip().lower() for s in str(spec).split(",")]
    if names == ["all"]:
        return FORMATS
    bad = [n for n in names if n not in FORMATS]
    if bad or not names:
        raise CmposeError(f"--format {spec!r}: expected a comma list of {', '.join(FORMATS)} (or 'all')")
    return tuple(f for f in FORMATS if f in names)


# --- poses of a video ----------------------------------------------------------------------------
@dataclass(slots=True)  # no per-instance dict: a long video holds one per frame
class FramePoses:
    """The people of one frame: track_ids (P,), boxes (P, 4) x, y, w, h, box_scores (P,),
    keypoints (P, J, 2) image pixels, scores (P, J) heatmap maxima."""

    frame_index: int
    track_ids: np.ndarray
    boxes: np.ndarray
    box_scores: np.ndarray
    keypoints: np.ndarray
    scores: np.ndarray

    @classmethod
    def of(cls, result: Any, num_joints: int = len(PT18_NAMES)) -> FramePoses:
        """From a ``cmpose.infer.video.FrameResult`` (its image and maps are not kept)."""
        people = result.people
        return cls(
            int(result.frame_index),
            np.array([p.track_id for p in people], np.int64),
            np.array([p.box for p in people], np.float32).reshape(-1, 4),
            np.array([p.box_score for p in people], np.float32),
            np.array([p.keypoints for p in people], np.float32).reshape(-1, num_joints, 2),
            np.array([p.scores for p in people], np.float32).reshape(-1, num_joints),
        )

    def person_scores(self) -> np.ndarray:
        """(P,) box score x mean joint score above 0.2 (HRNet's rescoring, as ``cmpose test``)."""
        if not len(self.track_ids):
            return np.zeros(0)
        return rescore(self.box_scores, self.scores, RESCORE_THRESHOLD)


class PoseRecorder:
    """``recorder(result)`` for each ``FrameResult`` of a run keeps its poses (``frames``)."""

    def __init__(self, num_joints: int = len(PT18_NAMES)) -> None:
        self.num_joints = num_joints
        self.frames: list[FramePoses] = []

    def __call__(self, result: Any) -> None:
        self.frames.append(FramePoses.of(result, self.num_joints))


def compact_track_ids(frames: Sequence[FramePoses], limit: int = MAX_TRACK_ID) -> dict[int, int]:
    """Tracker id -> an id below ``limit`` (poseval's bound), each new track taking the smallest
    id whose previous track has ended (last seen in an earlier frame), so ids stay unique within
    every frame and a long video with many short tracks still fits.

    Raises:
        CmposeError: more than ``limit`` tracks alive at once.
    """
    first: dict[int, int] = {}
    last: dict[int, int] = {}
    for f in frames:
        for t in f.track_ids.tolist():
            first.setdefault(t, f.frame_index)
            last[t] = f.frame_index
    out: dict[int, int] = {}
    free: list[int] = []  # ids whose track has ended, smallest first
    alive: list[tuple[int, int]] = []  # (last frame, id) of the tracks holding an id
    for t in sorted(first, key=lambda t: (first[t], t)):
        while alive and alive[0][0] < first[t]:
            heapq.heappush(free, heapq.heappop(alive)[1])
        if free:
            new = heapq.heappop(free)
        elif len(alive) < limit:
            new = len(alive)
        else:
            raise CmposeError(f"more than {limit} tracks at once: PoseTrack files cannot hold them")
        heapq.heappush(alive, (last[t], new))
        out[t] = new
    return out


# --- frame naming --------------------------------------------------------------------------------
def _frame_numbers(frame_names: Sequence[str] | None, count: int) -> list[int]:
    """A frame folder's numbers (``000012.jpg`` -> 12) when every name has a distinct one, else
    the positions 0..count-1 (a video file, or names without numbers)."""
    if frame_names is not None:
        found = [re.search(r"(\d+)$", posixpath.splitext(n)[0]) for n in frame_names[:count]]
        numbers = [int(m.group(1)) for m in found if m]
        if len(numbers) == count and len(set(numbers)) == count:
            return numbers
    return list(range(count))


def posetrack_images(
    video: Path,
    name: str,
    count: int,
    size: tuple[int, int],
    frame_names: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """PoseTrack18 ``images`` entries for the first ``count`` frames of a video.

    A PoseTrack video folder (``.../images/val/012834_mpii_test``) gets the dataset's own ids
    (``T * 10^10 + video * 10^4 + frame``) and file names (``images/val/012834_mpii_test/000000.jpg``),
    so the file lines up with its GT; any other video gets video number 0 (``10^10 + frame``)
    and ``images/val/<name>/<frame:06d>.jpg``, the shape poseval needs (docs/evaluation.md).

    Args:
        video: the input (a frame folder or a video file); its parent folder's name gives the split
            when it is train / val / test.
        name: the video's name (folder name or file stem).
        count: frames.
        size: (W, H).
        frame_names: the folder's file names in order (None for a video file).
    """
    m = _POSETRACK_NAME.match(name)
    code, number = (_SOURCE_CODE[m.group(2)], int(m.group(1))) if m else (1, 0)
    parent = Path(video).resolve().parent.name
    split = parent if parent in _SPLITS else "val"
    numbers = _frame_numbers(frame_names, count)
    images = []
    for pos, n in enumerate(numbers):
        base = frame_names[pos] if frame_names is not None and m else f"{n:06d}.jpg"
        image_id = code * 10**10 + number * 10**4 + n
        images.append(
            {
                "id": image_id,
                "frame_id": image_id,
                "vid_id": m.group(1) if m else name,
                "file_name": f"images/{split}/{name}/{base}",
                "nframes": count,
                "width": int(size[0]),
                "height": int(size[1]),
            }
        )
    return images


def gt_images(annotation: Path, name: str) -> list[dict[str, Any]] | None:
    """The ``images`` of video ``name`` in a PoseTrack18/21 annotation file (all of them for a
    one-video file), in file order; None for a file of another format or without that video."""
    from cmpose.data.jsonio import load_json

    data = load_json(Path(annotation))
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        return None
    folders = [posixpath.basename(posixpath.dirname(str(i.get("file_name", "")))) for i in images]
    if len(set(folders)) == 1:
        return images
    own = [im for im, folder in zip(images, folders, strict=True) if folder == name]
    return own or None


# --- the two formats -----------------------------------------------------------------------------
def _pt18_columns(joint_names: Sequence[str]) -> list[int | None]:
    """For each PoseTrack18 joint, the model's joint of that name (None: the model has none).
    Names, not positions: a COCO model's eyes sit in the slots of PoseTrack's head_bottom and
    head_top, which they are not."""
    return [joint_names.index(n) if n in joint_names else None for n in PT18_NAMES]


def posetrack_json(
    frames: Sequence[FramePoses],
    images: Sequence[dict[str, Any]],
    joint_names: Sequence[str] = PT18_NAMES,
) -> dict[str, Any]:
    """A PoseTrack18 per-video file: ``images`` as given (frame position -> entry), one
    annotation per person with ``track_id`` (below 10000, see ``compact_track_ids``), the 17
    PoseTrack18 joints as x, y, v (``0, 0, 0`` for a joint the model does not predict, or a NaN
    joint; v = 1 otherwise), per-joint ``scores`` (heatmap maxima), ``score`` (the rescored
    person) and ``bbox``.

    Raises:
        DataError: a frame past the end of ``images``.
    """
    from cmpose.eval.writer import PT18_CATEGORY

    cols = _pt18_columns(joint_names)
    ids = compact_track_ids(frames)
    annotations = []
    for f in frames:
        if not 0 <= f.frame_index < len(images):
            raise DataError(f"frame {f.frame_index} has no image entry (the video has {len(images)})")
        image_id = images[f.frame_index]["id"]
        person = f.person_scores()
        for p, tid in enumerate(f.track_ids.tolist()):
            xyv, sc = [], []
            for c in cols:
                # a NaN joint is not predicted (as in cmpose.eval.writer)
                if c is None or not np.isfinite(f.keypoints[p, c]).all():
                    xyv += [0.0, 0.0, 0]
                    sc.append(0.0)
                else:
                    x, y = f.keypoints[p, c]
                    xyv += [round(float(x), 2), round(float(y), 2), 1]
                    sc.append(round(float(f.scores[p, c]), 4))
            annotations.append(
                {
                    "image_id": image_id,
                    "id": len(annotations),
                    "track_id": ids[tid],
                    "category_id": 1,
                    "keypoints": xyv,
                    "scores": sc,
                    "score": round(float(person[p]), 4),
                    "bbox": [round(float(v), 2) for v in f.boxes[p]],
                }
            )
    return {"images": list(images), "annotations": annotations, "categories": [PT18_CATEGORY]}


def coco_results(frames: Sequence[FramePoses], image_ids: Sequence[int]) -> list[dict[str, Any]]:
    """COCO keypoint results: one ``{"image_id", "category_id": 1, "keypoints": [x, y, s] x J,
    "score", "bbox", "track_id"}`` per person. The keypoints keep the model's own joint order
    (COCO's for ViTPose weights; PoseTrack18's, COCO's slots with head_bottom / head_top for the
    eyes, for cmpose models), the third value is the joint's score (as mmpose writes it; COCOeval
    ignores it), ``score`` is the rescored person (box x mean confident joint score)."""
    out = []
    for f in frames:
        person = f.person_scores()
        for p, tid in enumerate(f.track_ids.tolist()):
            kp = np.concatenate([f.keypoints[p], f.scores[p][:, None]], axis=1)
            out.append(
                {
                    "image_id": int(image_ids[f.frame_index]),
                    "category_id": 1,
                    "keypoints": [round(float(v), 4 if i % 3 == 2 else 2) for i, v in enumerate(kp.ravel())],
                    "score": round(float(person[p]), 4),
                    "bbox": [round(float(v), 2) for v in f.boxes[p]],
                    "track_id": int(tid),
                }
            )
    return out
