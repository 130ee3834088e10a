"""Read any supported annotation file or folder, telling the formats apart by their keys."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from tqdm import tqdm

from cmpose.data.jsonio import load_json
from cmpose.data.problems import Problems
from cmpose.data.readers.posetrack17 import read_posetrack17
from cmpose.data.readers.posetrack18 import read_posetrack18
from cmpose.data.records import Dataset
from cmpose.errors import DataError

log = logging.getLogger(__name__)


def find_annotation_files(path: Path) -> list[Path]:
    """A file as it is; a folder's ``*.json`` files sorted by name (one per video)."""
    path = Path(path)
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(path.glob("*.json"))
        if not files:
            raise DataError("no *.json annotation files in this folder", path=path)
        return files
    raise DataError("no such file or folder", path=path)


def detect_format(data: object) -> str:
    """``posetrack17`` (annolist), ``posetrack18`` (images/annotations; also PoseTrack21),
    ``detections`` (a list of boxes) or ``unknown``."""
    if isinstance(data, dict) and "annolist" in data:
        return "posetrack17"
    if isinstance(data, dict) and "images" in data:
        return "posetrack18"
    if isinstance(data, list) and (not data or (isinstance(data[0], dict) and "bbox" in data[0])):
        return "detections"
    return "unknown"


def read_annotations(
    paths: Path | Iterable[Path],
    image_root: Path | None = None,
    problems: Problems | None = None,
    pt17_layout: str = "original",
) -> Dataset:
    """Read annotation files (or folders of them) of any supported format into one ``Dataset``.

    Args:
        paths: files or folders (a folder means its ``*.json``, sorted by name).
        image_root: folder the image names are relative to; guessed per file when None.
        problems: collector for skipped items (lenient when None; pass ``Problems(strict=True)``
            to fail on the first problem).
        pt17_layout: ``original`` or ``renamed`` frame layout for PoseTrack17 files.
    """
    problems = problems if problems is not None else Problems()
    if isinstance(paths, (str, Path)):
        paths = [Path(paths)]
    files = [f for p in paths for f in find_annotation_files(Path(p))]
    out = Dataset()
    # disable=None: a bar on a terminal only, and only for real datasets (hundreds of videos).
    for f in tqdm(files, desc="reading annotations", unit="file", disable=None if len(files) > 20 else True):
        data = load_json(f)
        fmt = detect_format(data)
        if fmt == "posetrack18":
            part = read_posetrack18(f, image_root, problems, data=data)
        elif fmt == "posetrack17":
            part = read_posetrack17(f, image_root, problems, layout=pt17_layout, data=data)
        elif fmt == "detections":
            raise DataError("this is a detections file (a list of boxes), not annotations", path=f)
        else:
            raise DataError(
                "unknown annotation format: expected PoseTrack18/21 ('images', 'annotations') "
                "or PoseTrack17 ('annolist')",
                path=f,
            )
        duplicate = set(part.videos) & set(out.videos)
        if duplicate:
            raise DataError(f"video(s) {sorted(duplicate)} already read from another file", path=f)
        out.extend(part)
    log.debug("read %d videos, %d people from %d file(s)", len(out.videos), len(out.people), len(files))
    return out
