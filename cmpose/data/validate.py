"""Checks shared by the annotation readers (what training and ``data check`` read) and the
evaluation loaders, so that ``cmpose data check`` refuses exactly what a run would refuse
(issue 18): file names that leave the dataset root, the ``categories`` block, keypoint lists
of the wrong length, the same person listed twice."""

from __future__ import annotations

from pathlib import PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np

from cmpose.errors import DataError


def check_relative_file_name(name: str, *, path: object, record: str, field: str = "file_name") -> str:
    """``name`` as a path inside the dataset root, or ``DataError``: an absolute path, a drive, a
    ``..`` part or a NUL byte would make the loaders read (and ``data show`` render) a file
    outside the dataset."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if not name or "\0" in name or posix.is_absolute() or PureWindowsPath(name).drive or ".." in posix.parts:
        raise DataError(
            f"{name!r} leaves the dataset root (absolute, or with '..'); image names must be relative "
            "paths inside it",
            path=path,
            record=record,
            field=field,
        )
    return name


def check_categories(data: dict, path: object) -> list[str] | None:
    """The keypoint names of a PoseTrack18/21 file's single ``categories`` entry (None when the
    file has no ``categories`` key: the standard order is assumed). Refused: not exactly one
    category, names that are not unique strings."""
    if "categories" not in data:
        return None
    cats = data["categories"]
    if not isinstance(cats, list) or len(cats) != 1 or not isinstance(cats[0], dict):
        found = f"{len(cats)} entries" if isinstance(cats, list) else type(cats).__name__
        raise DataError(
            f"expected exactly one category (the person, with its keypoint names), got {found}",
            path=path,
            field="categories",
        )
    names = cats[0].get("keypoints")
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise DataError(
            "expected a non-empty list of keypoint names",
            path=path,
            record="categories[0]",
            field="keypoints",
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(
            f"keypoint names {repeated} listed more than once",
            path=path,
            record="categories[0]",
            field="keypoints",
        )
    return names


def check_keypoint_count(flat: list[Any], num_names: int, *, path: object, record: str) -> None:
    """A flat keypoint list holds exactly x, y, v for each of the category's ``num_names`` joints."""
    if len(flat) != 3 * num_names:
        raise DataError(
            f"expected {3 * num_names} numbers (x, y, v for each of {num_names} keypoint names), "
            f"got {len(flat)}",
            path=path,
            record=record,
            field="keypoints",
        )


def duplicate_people(frames: np.ndarray, keypoints: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (first, repeat) of people in the same frame with identical keypoint arrays: one
    annotation listed twice, which evaluation would count as two people to find."""
    seen: dict[tuple[int, bytes], int] = {}
    pairs = []
    kps = np.ascontiguousarray(np.asarray(keypoints, dtype=np.float64))
    for i, (f, row) in enumerate(zip(np.asarray(frames).tolist(), kps, strict=True)):
        if not np.any(row):  # people without joints (boxes only) repeat legitimately
            continue
        key = (int(f), row.tobytes())
        if key in seen:
            pairs.append((seen[key], i))
        else:
            seen[key] = i
    return pairs
