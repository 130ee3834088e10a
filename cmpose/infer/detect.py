"""Person boxes per frame for ``cmpose infer``.

Sources, all callables ``source(frame_index, bgr_frame) -> (boxes (D, 4) xywh, scores (D,))``:

* :class:`FileBoxes`: a detector's boxes from a JSON file: a list of ``{frame_index | image_name
  | image_id, bbox: [x, y, w, h], score, category_id?}`` (the COCO results format, PoseTrack /
  mmpose ``*_human_detections.json``, DCPose's ``image_name`` variant). This is the way to get
  good results: run a real person detector (e.g. a Faster R-CNN / YOLO / DETR of your choice)
  and pass its boxes.
* :class:`HogDetector`: OpenCV's HOG + linear SVM people detector
  (``cv2.HOGDescriptor_getDefaultPeopleDetector``), the only detector that needs no model
  download. It is **weak**: it finds upright, unoccluded, roughly frontal or side-view
  pedestrians between about 100 and a few hundred pixels tall, misses sitting, bending, small,
  occluded or truncated people, and gives loose boxes. It is the fallback for a quick look, not
  for results worth measuring.
* :class:`GTBoxes`: the ground-truth boxes of a PoseTrack annotation file (one dataset video),
  linearly interpolated per track between its labelled frames.

More readers (MOT-challenge text, Ultralytics YOLO labels and JSON) are in
:mod:`cmpose.infer.detect_files`, the ONNX YOLO detector in :mod:`cmpose.infer.detect_onnx`;
:func:`box_source_from_spec` picks one from a command-line spec.

Frame indices are 0-based positions in the video (or in the sorted frame folder).
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Protocol

import cv2
import numpy as np

from cmpose.data.jsonio import load_json, number, number_list
from cmpose.errors import DataError
from cmpose.ops.boxes import box_iou

log = logging.getLogger(__name__)

__all__ = [
    "BoxSource",
    "FileBoxes",
    "GTBoxes",
    "HogDetector",
    "box_source_from_spec",
    "nms",
]

_EMPTY = (np.zeros((0, 4)), np.zeros(0))
_TRAILING_NUMBER = re.compile(r"(\d+)$")


class BoxSource(Protocol):
    """``source(frame_index, bgr_frame) -> (boxes (D, 4) xywh float64, scores (D,) float64)``."""

    name: str

    def __call__(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]: ...


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; returns the kept indices, best score first."""
    order = np.argsort(-np.asarray(scores), kind="stable")
    iou = box_iou(boxes, boxes)
    keep: list[int] = []
    suppressed = np.zeros(len(order), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(int(i))
        suppressed |= iou[i] > iou_threshold
    return np.array(keep, dtype=np.intp)


def _frame_number(name: str) -> int | None:
    """``000012.jpg`` / ``frame_12.png`` -> 12 (the trailing number of the file stem)."""
    m = _TRAILING_NUMBER.search(PurePosixPath(name).stem)
    return int(m.group(1)) if m else None


class FileBoxes:
    """Boxes from a detections JSON file (see the module docstring), kept in memory by frame.

    Args:
        path: the JSON file.
        video_name: the video's name (file stem or frame folder name). Entries that name
            another video (``image_name`` with a different folder, or a PoseTrack ``image_id``
            of another video number) are skipped, so a split-wide file can be passed as it is.
        frame_names: for a frame folder, its file names in order: ``image_name`` is then looked
            up by file name; otherwise (a video file) the trailing number of the name's stem is
            the frame index.
        score_threshold: boxes below it are dropped (DCPose on PoseTrack: 0.2).

    How an entry's frame is found: ``frame_index`` (0-based) if present, else ``image_name``,
    else a PoseTrack ``image_id`` (``id = T * 10^10 + video * 10^4 + frame``). Only category 1
    (person) is kept when ``category_id`` is present.
    """

    name = "file"

    def __init__(
        self,
        path: Path,
        video_name: str | None = None,
        frame_names: Sequence[str] | None = None,
        score_threshold: float = 0.2,
    ) -> None:
        self.path = Path(path)
        data = load_json(self.path)
        if isinstance(data, dict) and isinstance(data.get("detections"), list):
            data = data["detections"]
        if not isinstance(data, list):
            raise DataError("expected a JSON list of {frame_index | image_name, bbox, score}", path=self.path)
        by_name = {n: i for i, n in enumerate(frame_names)} if frame_names is not None else None
        video_number = None
        if video_name and re.match(r"^\d{6}", video_name):
            video_number = int(video_name[:6])
        boxes: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
        low = other_video = unknown_frame = 0
        for i, det in enumerate(data):
            rec = f"[{i}]"
            if not isinstance(det, dict):
                raise DataError("expected an object", path=self.path, record=rec)
            if (
                "category_id" in det
                and int(number(det["category_id"], path=self.path, record=rec, field="category_id")) != 1
            ):
                continue
            box = number_list(det.get("bbox"), 4, path=self.path, record=rec, field="bbox")
            score = number(det.get("score", 1.0), path=self.path, record=rec, field="score")
            frame: int | None = None
            if "frame_index" in det:
                frame = int(number(det["frame_index"], path=self.path, record=rec, field="frame_index"))
            elif isinstance(det.get("image_name"), str):
                p = PurePosixPath(det["image_name"].replace("\\", "/"))
                if video_name and len(p.parts) > 1 and p.parent.name != video_name:
                    other_video += 1
                    continue
                frame = by_name.get(p.name) if by_name is not None else _frame_number(p.name)
            elif "image_id" in det:
                image_id = int(number(det["image_id"], path=self.path, record=rec, field="image_id"))
                if video_number is not None and (image_id // 10_000) % 1_000_000 != video_number:
                    other_video += 1
                    continue
                frame = image_id % 10_000
            else:
                raise DataError("needs one of frame_index, image_name, image_id", path=self.path, record=rec)
            if frame is None or frame < 0:
                unknown_frame += 1
                continue
            if score < score_threshold:
                low += 1
                continue
            if box[2] <= 0 or box[3] <= 0:
                continue
            boxes[frame].append((box, score))
        self._boxes = {
            f: (np.array([b for b, _ in v], np.float64), np.array([s for _, s in v], np.float64))
            for f, v in boxes.items()
        }
        kept = sum(len(v[1]) for v in self._boxes.values())
        log.info(
            "%s: %d boxes on %d frames kept (%d below score %.2f, %d of other videos, %d on unknown frames)",
            self.path,
            kept,
            len(self._boxes),
            low,
            score_threshold,
            other_video,
            unknown_frame,
        )
        if not kept:
            log.warning("%s: no boxes for this video: every frame will have no people", self.path)

    @property
    def frames(self) -> list[int]:
        """Frame indices that have boxes, ascending."""
        return sorted(self._boxes)

    def __call__(self, frame_index: int, frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes.get(frame_index, _EMPTY)


class HogDetector:
    """OpenCV's HOG people detector (weak; see the module docstring), run on a downscaled copy
    of the frame for speed, with greedy NMS.

    Args:
        max_width: frames wider than this are downscaled to it before detection (people must
            then still be >= 128 px tall, the detector's window, to be found).
        score_threshold: minimum SVM margin (the detector's "weight"; not a probability).
        nms_iou: IoU above which the lower-scoring of two boxes is dropped.
        scale: image pyramid factor of ``detectMultiScale`` (smaller = slower, finds more).
        win_stride: window step in pixels (8 = OpenCV's default).
        shrink: the 64x128 window holds the person with a margin; the box is shrunk to
            (width, height) x ``shrink`` about its centre, closer to a person box (the crop adds
            its own x1.25 padding).
    """

    name = "hog"

    def __init__(
        self,
        max_width: int = 640,
        score_threshold: float = 0.3,
        nms_iou: float = 0.4,
        scale: float = 1.05,
        win_stride: int = 8,
        shrink: tuple[float, float] = (0.6, 0.85),
    ) -> None:
        self.max_width = max_width
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.scale = scale
        self.win_stride = win_stride
        self.shrink = shrink
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frame.shape[:2]
        f = min(1.0, self.max_width / w)
        small = (
            cv2.resize(frame, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA) if f < 1 else frame
        )
        if small.shape[0] < 128 or small.shape[1] < 64:
            return _EMPTY
        rects, weights = self._hog.detectMultiScale(
            small, winStride=(self.win_stride, self.win_stride), scale=self.scale
        )
        if len(rects) == 0:
            return _EMPTY
        boxes = np.asarray(rects, np.float64).reshape(-1, 4) / f
        scores = np.asarray(weights, np.float64).reshape(-1)
        ok = scores >= self.score_threshold
        boxes, scores = boxes[ok], scores[ok]
        keep = nms(boxes, scores, self.nms_iou)
        boxes, scores = boxes[keep], scores[keep]
        sw, sh = self.shrink
        cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
        boxes[:, 2] *= sw
        boxes[:, 3] *= sh
        boxes[:, 0], boxes[:, 1] = cx - boxes[:, 2] / 2, cy - boxes[:, 3] / 2
        return boxes, scores


class GTBoxes:
    """Ground-truth boxes of one video of a PoseTrack annotation file (18/21 or 17 format).

    Boxes exist on the labelled frames; between two labelled frames of the same track at most
    ``max_gap`` frames apart they are interpolated linearly (PoseTrack labels every 4th frame
    of most val videos). Frames outside a track's labelled span have no box for it.

    Args:
        annotation: the annotation file.
        video_name: which video of the file (its image folder name); may be None when the file
            holds one video.
    """

    name = "gt"

    def __init__(self, annotation: Path, video_name: str | None = None, max_gap: int = 8) -> None:
        from cmpose.data.readers.auto import read_annotations

        data = read_annotations(Path(annotation))
        if video_name not in data.videos:
            if len(data.videos) == 1:
                video_name = next(iter(data.videos))
            else:
                raise DataError(
                    f"video {video_name!r} is not in this annotation file (it has {sorted(data.videos)[:5]})",
                    path=annotation,
                )
        tracks: dict[int, list[tuple[int, np.ndarray]]] = defaultdict(list)
        untracked: dict[int, list[np.ndarray]] = defaultdict(list)
        for p in data.people:
            if p.video_id != video_name or p.box[2] <= 0 or p.box[3] <= 0:
                continue
            if p.track_id >= 0:
                tracks[p.track_id].append((p.frame_index, np.asarray(p.box, np.float64)))
            else:
                untracked[p.frame_index].append(np.asarray(p.box, np.float64))
        per_frame: dict[int, list[np.ndarray]] = defaultdict(list)
        for f, bs in untracked.items():
            per_frame[f].extend(bs)
        for seq in tracks.values():
            seq.sort(key=lambda fb: fb[0])
            for (f0, b0), (f1, b1) in zip(seq[:-1], seq[1:], strict=True):
                per_frame[f0].append(b0)
                if 1 < f1 - f0 <= max_gap:
                    for f in range(f0 + 1, f1):
                        a = (f - f0) / (f1 - f0)
                        per_frame[f].append((1 - a) * b0 + a * b1)
            per_frame[seq[-1][0]].append(seq[-1][1])
        self._boxes = {f: (np.array(bs), np.ones(len(bs))) for f, bs in per_frame.items()}
        log.info("%s: GT boxes of video %s on %d frames", annotation, video_name, len(self._boxes))

    @property
    def frames(self) -> list[int]:
        return sorted(self._boxes)

    def __call__(self, frame_index: int, frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes.get(frame_index, _EMPTY)


def box_source_from_spec(
    spec: str,
    video_name: str | None = None,
    frame_names: Sequence[str] | None = None,
    score_threshold: float = 0.2,
    image_size: tuple[int, int] | None = None,
) -> BoxSource:
    """A box source from its command-line spec:

    * ``hog`` -> :class:`HogDetector`; ``onnx:MODEL.onnx`` (or a path ending ``.onnx``) ->
      :class:`cmpose.infer.detect_onnx.OnnxDetector`;
    * ``gt:ANNOTATION.json`` -> :class:`GTBoxes`;
    * ``coco:FILE`` -> :class:`FileBoxes`; ``mot:FILE`` -> :class:`~cmpose.infer.detect_files.MotBoxes`;
      ``yolo:DIR_OR_FILE`` -> :class:`~cmpose.infer.detect_files.YoloTxtBoxes` (a folder or
      ``.txt``) or :class:`~cmpose.infer.detect_files.YoloJsonBoxes` (``.json``);
    * any other path: the reader is chosen from the extension and the content
      (:func:`cmpose.infer.detect_files.sniff_box_file`).

    ``image_size`` (W, H) of the frames is needed by YOLO label files (normalised coordinates).
    """
    from cmpose.infer import detect_files as df

    if spec == "hog":
        return HogDetector()
    prefix, sep, rest = spec.partition(":")
    kind = prefix if sep and prefix in ("gt", "onnx", "coco", "mot", "yolo") else None
    path = Path(rest if kind else spec)
    if kind is None and path.suffix.lower() == ".onnx":
        kind = "onnx"
    if kind == "gt":
        return GTBoxes(path, video_name)
    if kind == "onnx":
        from cmpose.infer.detect_onnx import OnnxDetector

        return OnnxDetector(path, score_threshold=score_threshold)
    if kind is None:
        kind = df.sniff_box_file(path)
    elif kind == "yolo" and path.suffix.lower() == ".json":
        kind = "yolo-json"
    if kind == "mot":
        return df.MotBoxes(path, score_threshold)
    if kind == "yolo":
        if image_size is None:
            raise DataError(
                "YOLO label files need the video's frame size (their boxes are normalised)", path=path
            )
        return df.YoloTxtBoxes(path, image_size, video_name, frame_names, score_threshold)
    if kind == "yolo-json":
        return df.YoloJsonBoxes(path, image_size, score_threshold)
    return FileBoxes(path, video_name, frame_names, score_threshold)
