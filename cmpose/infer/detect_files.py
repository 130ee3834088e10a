"""Person boxes from the result files of common detectors, besides the COCO results JSON of
:class:`cmpose.infer.detect.FileBoxes`:

* :class:`MotBoxes`: MOT-challenge text files (``det/det.txt`` of MOT16/17/20, or ``gt/gt.txt``).
* :class:`YoloTxtBoxes`: Ultralytics YOLO label files (``yolo predict save_txt=True save_conf=True``).
* :class:`YoloJsonBoxes`: the JSON of Ultralytics ``Results.to_json()`` collected per frame.

All give ``source(frame_index, frame) -> (boxes (D, 4) xywh pixels, scores (D,))`` with 0-based
frame indices, and ``frames`` (the frame indices that have boxes). The formats and how frame
numbers are mapped are in docs/inference.md ("Person boxes").
"""

from __future__ import annotations

import json
import logging
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cmpose.errors import DataError
from cmpose.infer.detect import _EMPTY

log = logging.getLogger(__name__)

__all__ = ["MotBoxes", "YoloJsonBoxes", "YoloTxtBoxes", "sniff_box_file"]

# MOT-challenge gt.txt rows: frame, id, x, y, w, h, consider flag, class, visibility (MOT16
# paper, Milan et al. 2016, table 3 and sec. 3.4); class 1 = pedestrian.
_MOT_GT_COLUMNS = 9
_MOT_PEDESTRIAN = 1
# Ultralytics names a video's label files <stem>_<n>.txt with n the 1-based count of frames read.
_STEM_FRAME = re.compile(r"^(.*)_(\d+)$")


class _Boxes:
    """Boxes held in memory by 0-based frame index."""

    name = "file"

    def _store(self, boxes: dict[int, list[tuple[list[float], float]]]) -> None:
        self._boxes = {
            f: (
                np.array([b for b, _ in v], np.float64).reshape(-1, 4),
                np.array([s for _, s in v], np.float64),
            )
            for f, v in boxes.items()
            if v
        }

    @property
    def frames(self) -> list[int]:
        """Frame indices that have boxes, ascending."""
        return sorted(self._boxes)

    @property
    def num_boxes(self) -> int:
        return sum(len(s) for _, s in self._boxes.values())

    def __call__(self, frame_index: int, frame: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        return self._boxes.get(frame_index, _EMPTY)


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read: {err}", path=path) from err


def _floats(fields: list[str], path: Path, line: int, expected: str) -> list[float]:
    try:
        values = [float(v) for v in fields]
    except ValueError:
        raise DataError(
            f"expected {expected}, got {' '.join(fields)!r}", path=path, record=f"line {line}"
        ) from None
    if not all(np.isfinite(values)):
        raise DataError(f"not a finite number in {' '.join(fields)!r}", path=path, record=f"line {line}")
    return values


class MotBoxes(_Boxes):
    """A MOT-challenge detection or ground-truth text file.

    Rows are ``frame, id, x, y, w, h, conf, ...`` with 1-based frame numbers (frame 1 is frame
    index 0) and pixel boxes (the MOT convention's 1-based pixel coordinates are kept as they
    are; half a pixel is below any detector's accuracy).

    * det files (``det.txt``: 10 columns ``..., conf, x, y, z`` with id -1, or 7 columns
      ``..., conf``): every row is a person detection of score ``conf``.
    * gt files (``gt.txt``: 9 columns ``..., consider, class, visibility``): only rows with the
      consider flag 1 and class 1 (pedestrian) are kept, with score 1.
    * 6 columns (no score): score 1.

    Args:
        path: the text file.
        score_threshold: detections below it are dropped. MOT17's public DPM detections have
            unbounded scores (some negative); pass a threshold that suits your detector.
    """

    name = "mot"

    def __init__(self, path: Path, score_threshold: float = 0.2) -> None:
        self.path = Path(path)
        boxes: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
        low = other_class = 0
        for n, raw in enumerate(_read_text(self.path).splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            fields = [f.strip() for f in line.split(",")]
            if len(fields) < 6:
                raise DataError(
                    f"expected 6 or more comma-separated values 'frame,id,x,y,w,h[,conf,...]', got {line!r}",
                    path=self.path,
                    record=f"line {n}",
                )
            values = _floats(fields, self.path, n, "numbers 'frame,id,x,y,w,h[,conf,...]'")
            frame = values[0]
            if frame != int(frame) or frame < 1:
                raise DataError(
                    f"frame number must be an integer >= 1 (MOT frames are 1-based), got {fields[0]!r}",
                    path=self.path,
                    record=f"line {n}",
                )
            box = values[2:6]
            score = 1.0
            if len(values) == _MOT_GT_COLUMNS:
                if values[6] == 0 or int(values[7]) != _MOT_PEDESTRIAN:
                    other_class += 1
                    continue
            elif len(values) >= 7:
                score = values[6]
            if score < score_threshold:
                low += 1
                continue
            if box[2] <= 0 or box[3] <= 0:
                continue
            boxes[int(frame) - 1].append((box, score))
        self._store(boxes)
        log.info(
            "%s: %d boxes on %d frames (%d below score %.2f, %d ignored or not pedestrians)",
            self.path, self.num_boxes, len(self._boxes), low, score_threshold, other_class,
        )  # fmt: skip


def _label_frame(stem: str, video_name: str | None, by_stem: dict[str, int] | None) -> int | None:
    """The 0-based frame of a YOLO label file, or None when it belongs to another video/image."""
    if by_stem is not None:
        return by_stem.get(stem)
    m = _STEM_FRAME.match(stem)
    if m is None or (video_name is not None and m.group(1) != video_name):
        return None
    return int(m.group(2)) - 1


class YoloTxtBoxes(_Boxes):
    """Ultralytics YOLO label files, as ``yolo predict save_txt=True save_conf=True`` writes them
    into ``runs/detect/predict*/labels/``: one file per image or video frame, one row per box,
    ``class cx cy w h [conf]`` with the box centre and size normalised by the image width and
    height (https://docs.ultralytics.com/modes/predict/, ``save_txt``).

    Which file is which frame:

    * frame folder (``frame_names`` given): ``<image stem>.txt`` is that image's frame (YOLO run
      on the same folder); files of other names are skipped;
    * video file: ``<video stem>_<n>.txt`` is frame ``n - 1`` (Ultralytics counts the frames it
      reads from 1, so n = 1 is the first frame; with ``vid_stride`` > 1 it counts read frames,
      so run YOLO with stride 1). Files of other videos in the same folder are skipped.

    Args:
        path: a labels folder, or one label file.
        image_size: (W, H) of the video's frames: the rows are normalised by it.
        video_name: the video's file stem (for a video file).
        frame_names: the frame folder's file names in order (for a frame folder).
        score_threshold: boxes below it are dropped (rows without a confidence have score 1).
        person_class: the person class id (0 for COCO-trained models).
    """

    name = "yolo"

    def __init__(
        self,
        path: Path,
        image_size: tuple[int, int],
        video_name: str | None = None,
        frame_names: Sequence[str] | None = None,
        score_threshold: float = 0.2,
        person_class: int = 0,
    ) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            files = sorted(self.path.glob("*.txt"))
            if not files:
                raise DataError("no YOLO label files (*.txt) in this folder", path=self.path)
        elif self.path.is_file():
            files = [self.path]
        else:
            raise DataError("no such YOLO labels folder or file", path=self.path)
        by_stem = (
            {PurePosixPath(n).stem: i for i, n in enumerate(frame_names)} if frame_names is not None else None
        )
        w, h = image_size
        boxes: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
        skipped_files = low = other_class = 0
        for f in files:
            frame = _label_frame(f.stem, video_name, by_stem)
            if frame is None:
                skipped_files += 1
                continue
            for n, raw in enumerate(_read_text(f).splitlines(), 1):
                fields = raw.split()
                if not fields:
                    continue
                if len(fields) not in (5, 6):
                    raise DataError(
                        f"expected 'class cx cy w h [conf]' (5 or 6 numbers), got {len(fields)}: "
                        f"{raw.strip()!r}",
                        path=f,
                        record=f"line {n}",
                    )
                v = _floats(fields, f, n, "numbers 'class cx cy w h [conf]'")
                if int(v[0]) != person_class:
                    other_class += 1
                    continue
                score = v[5] if len(v) == 6 else 1.0
                if score < score_threshold:
                    low += 1
                    continue
                cx, cy, bw, bh = v[1] * w, v[2] * h, v[3] * w, v[4] * h
                if bw <= 0 or bh <= 0:
                    continue
                boxes[frame].append(([cx - bw / 2, cy - bh / 2, bw, bh], score))
        self._store(boxes)
        log.info(
            "%s: %d person boxes on %d frames (%d label files of other videos/images, %d below score %.2f, "
            "%d of other classes)",
            self.path, self.num_boxes, len(self._boxes), skipped_files, low, score_threshold, other_class,
        )  # fmt: skip
        if skipped_files == len(files):
            raise DataError(
                "no label file belongs to this video: expected "
                + (
                    "<image stem>.txt for the frame images"
                    if by_stem is not None
                    else f"{video_name}_<n>.txt"
                ),
                path=self.path,
            )


class YoloJsonBoxes(_Boxes):
    """Ultralytics ``Results.to_json()`` (or ``summary()``) output collected per frame: a JSON
    list with one entry per frame in order (entry i = frame index i), each entry the frame's
    list of ``{"name", "class", "confidence", "box": {"x1", "y1", "x2", "y2"}}`` or that list as
    the JSON string ``to_json()`` returns; or an object ``{"<frame index>": [...]}`` (0-based).

    Write it with e.g. ``json.dump([r.to_json() for r in model(video, stream=True)], f)``.
    Person boxes are those named ``person`` (or, without a name, of class ``person_class``).
    Coordinates are pixels; if every coordinate in the file is within [0, 1] the file is taken as
    ``to_json(normalize=True)`` output and scaled by ``image_size``.
    """

    name = "yolo-json"

    def __init__(
        self,
        path: Path,
        image_size: tuple[int, int] | None = None,
        score_threshold: float = 0.2,
        person_class: int = 0,
    ) -> None:
        from cmpose.data.jsonio import load_json

        self.path = Path(path)
        data = load_json(self.path)
        if isinstance(data, dict):
            try:
                items = sorted((int(k), v) for k, v in data.items())
            except ValueError:
                raise DataError(
                    "expected an object keyed by 0-based frame index, or a list with one entry per frame",
                    path=self.path,
                ) from None
        elif isinstance(data, list):
            items = list(enumerate(data))
        else:
            raise DataError("expected a JSON list with one entry per frame", path=self.path)
        rows: list[tuple[int, list[float], float]] = []
        low = other_class = 0
        for frame, entry in items:
            rec = f"frame {frame}"
            if isinstance(entry, str):
                try:
                    entry = json.loads(entry)
                except json.JSONDecodeError as err:
                    raise DataError(f"not a to_json() string: {err}", path=self.path, record=rec) from None
            if not isinstance(entry, list):
                raise DataError("expected the frame's list of detections", path=self.path, record=rec)
            for i, det in enumerate(entry):
                r = f"{rec} [{i}]"
                if not isinstance(det, dict) or not isinstance(det.get("box"), dict):
                    raise DataError(
                        "expected {name, class, confidence, box: {x1, y1, x2, y2}}", path=self.path, record=r
                    )
                if not _is_person(det, person_class, self.path, r):
                    other_class += 1
                    continue
                box = _xyxy(det["box"], self.path, r)
                score = _number(det.get("confidence", 1.0), self.path, r, "confidence")
                if score < score_threshold:
                    low += 1
                    continue
                rows.append((frame, box, score))
        normalised = bool(rows) and all(0.0 <= v <= 1.0 for _, b, _ in rows for v in b)
        if normalised:
            if image_size is None:
                raise DataError(
                    "normalised boxes (to_json(normalize=True)) need the image size", path=self.path
                )
            w, h = image_size
            rows = [(f, [b[0] * w, b[1] * h, b[2] * w, b[3] * h], s) for f, b, s in rows]
        boxes: dict[int, list[tuple[list[float], float]]] = defaultdict(list)
        for f, (x1, y1, x2, y2), s in rows:
            if x2 > x1 and y2 > y1:
                boxes[f].append(([x1, y1, x2 - x1, y2 - y1], s))
        self._store(boxes)
        log.info(
            "%s: %d person boxes on %d frames%s (%d below score %.2f, %d of other classes)",
            self.path, self.num_boxes, len(self._boxes), " (normalised coordinates)" if normalised else "",
            low, score_threshold, other_class,
        )  # fmt: skip


def _number(value: Any, path: Path, record: str, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise DataError(f"expected a number, got {value!r}", path=path, record=record, field=field)
    return float(value)


def _is_person(det: dict, person_class: int, path: Path, record: str) -> bool:
    if isinstance(det.get("name"), str):
        return det["name"] == "person"
    return int(_number(det.get("class"), path, record, "class")) == person_class


def _xyxy(box: dict, path: Path, record: str) -> list[float]:
    return [_number(box.get(k), path, record, f"box.{k}") for k in ("x1", "y1", "x2", "y2")]


def sniff_box_file(path: Path) -> str:
    """Which reader suits a boxes file or folder, from its extension and first record:
    ``yolo`` (a folder, or a text file of 5-6 space-separated numbers per row), ``mot`` (a text
    file of comma-separated rows), ``yolo-json`` (a JSON list of per-frame lists or strings, or
    an object of them), ``coco`` (any other JSON)."""
    path = Path(path)
    if path.is_dir():
        return "yolo"
    if not path.is_file():
        raise DataError("no such detections file or folder", path=path)
    suffix = path.suffix.lower()
    if suffix in (".txt", ".csv"):
        for raw in _read_text(path).splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                return "mot" if "," in line else "yolo"
        raise DataError("empty detections text file", path=path)
    if suffix == ".json":
        from cmpose.data.jsonio import load_json

        data = load_json(path)
        values = list(data.values()) if isinstance(data, dict) and "detections" not in data else data
        if isinstance(values, list) and values and all(isinstance(v, (list, str)) for v in values):
            return "yolo-json"
        return "coco"
    raise DataError(
        "unknown detections file type: expected .json (COCO results or YOLO to_json), .txt (MOT or YOLO "
        "labels) or a YOLO labels folder; or name it with a prefix coco:, mot:, yolo:",
        path=path,
    )
