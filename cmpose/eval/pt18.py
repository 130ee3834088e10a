"""PoseTrack2018/21 per-video files (``images`` / ``annotations`` / ``categories``)."""

from __future__ import annotations

import logging
import math
import posixpath
from pathlib import Path

import numpy as np

from cmpose.errors import DataError
from cmpose.eval.formats import MIN_SCORE, People, VideoFile, head_size, sort_people
from cmpose.keypoints import PT17_NAMES

log = logging.getLogger(__name__)


def category_columns(data: dict, path: Path) -> tuple[np.ndarray, int]:
    """Position of each scored joint (PT17_NAMES order) in the file's keypoint list, and its length K.

    poseval maps keypoints by name, needs exactly one category "person" with 15 or 17 names holding all
    15 scored ones, and drops every other name (convert.py, Video.from_new).
    """
    cats = data.get("categories")
    if not isinstance(cats, list) or len(cats) != 1 or not isinstance(cats[0], dict):
        raise DataError(
            "need exactly one category (the 'person' category with its keypoint names)",
            path=path,
            field="categories",
        )
    names = cats[0].get("keypoints")
    if cats[0].get("name") != "person" or not isinstance(names, list) or len(names) not in (15, 17):
        raise DataError(
            "the category must be named 'person' and list 15 or 17 keypoint names",
            path=path,
            record="categories[0]",
            field="keypoints",
        )
    missing = [n for n in PT17_NAMES if n not in names]
    if missing or len(set(names)) != len(names):
        problem = f"missing {missing}" if missing else "a name is listed twice"
        raise DataError(f"keypoint names: {problem}", path=path, record="categories[0]", field="keypoints")
    return np.array([names.index(n) for n in PT17_NAMES]), len(names)


def _video_key(image: dict, path: Path, i: int) -> str:
    name = image.get("file_name", "")
    if not isinstance(name, str):
        raise DataError("expected a string", path=path, record=f"images[{i}]", field="file_name")
    # poseval groups frames into videos by the folder's leading id (convert.py, Video.from_new).
    return posixpath.basename(posixpath.dirname(name)).split("_")[0]


def _regions(image: dict, path: Path, record: str) -> list[np.ndarray]:
    """Ignore polygons from the parallel ``ignore_regions_x`` / ``ignore_regions_y`` lists."""
    xs, ys = image.get("ignore_regions_x"), image.get("ignore_regions_y")
    if xs is None or ys is None:  # poseval reads them only when both are there
        return []
    polygons = []
    for k, (px, py) in enumerate(zip(xs, ys, strict=False)):
        try:
            # zip: poseval pairs the coordinates the same way, so a longer list is cut short.
            poly = np.array(list(zip(px, py, strict=False)), dtype=np.float64).reshape(-1, 2)
        except (TypeError, ValueError) as err:
            raise DataError(
                f"polygon {k} is not a list of numbers ({err})",
                path=path,
                record=record,
                field="ignore_regions_x/ignore_regions_y",
            ) from err
        polygons.append(poly)
    return polygons


def _matrix(
    rows: list, width: int, path: Path, records: list[str], name: str, allow_none: bool = False
) -> np.ndarray:
    """Rows of numbers as an (N, width) float64 array; a clear error names the first bad row.

    ``None`` becomes NaN when ``allow_none`` (numpy does the same to poseval's null scores)."""
    try:
        arr = np.array(rows, dtype=np.float64)
        # Finite only (an Infinity keypoint scored as a miss, issue 18); NaN only as a null score.
        if arr.shape == (len(rows), width) and (np.isfinite(arr) | (allow_none & np.isnan(arr))).all():
            return arr
    except (TypeError, ValueError, OverflowError):
        pass
    for i, row in enumerate(rows):
        ok = isinstance(row, list) and len(row) == width
        ok = ok and all((v is None and allow_none) or _finite(v) for v in row)
        if not ok:
            raise DataError(f"expected a list of {width} numbers", path=path, record=records[i], field=name)
    raise DataError(f"expected lists of {width} numbers", path=path, field=name)


def _finite(v: object) -> bool:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return False
    try:
        return math.isfinite(v)
    except OverflowError:  # an integer beyond float range
        return False


def parse(data: dict, path: Path, role: str) -> VideoFile:
    """Read a PoseTrack2018/21 per-video file (``role``: "gt" or "pred")."""
    cols, n_kp = category_columns(data, path)
    images = data["images"]
    if not isinstance(images, list) or not all(isinstance(im, dict) for im in images):
        raise DataError("expected a list of image objects", path=path, field="images")
    keys = [_video_key(im, path, i) for i, im in enumerate(images)]
    kept = [i for i, key in enumerate(keys) if not keys or key == keys[0]]
    if len(kept) < len(images):
        log.warning(
            "%s: images from %d video folders; like poseval, only the %d frames of the first folder (%r) are "
            "evaluated",
            path,
            len(set(keys)),
            len(kept),
            keys[0],
        )
    id_to_frame: dict[object, int] = {}
    for f, i in enumerate(kept):
        image_id = images[i].get("id")
        if image_id is None or isinstance(image_id, (list, dict)):
            raise DataError("every image needs a scalar 'id'", path=path, record=f"images[{i}]", field="id")
        if image_id in id_to_frame:
            raise DataError(
                f"image id {image_id!r} is listed twice", path=path, record=f"images[{i}]", field="id"
            )
        id_to_frame[image_id] = f
    kept_set = set(kept)
    other_ids = {
        im.get("id")
        for i, im in enumerate(images)
        if i not in kept_set and not isinstance(im.get("id"), (list, dict))
    }
    n_frames = len(kept)
    regions = {}
    for f, i in enumerate(kept):
        polys = _regions(images[i], path, f"images[{i}]")
        if polys:
            regions[f] = polys
    names = [str(images[i].get("file_name", images[i].get("id"))) for i in kept]

    anns = data.get("annotations") or []
    if not isinstance(anns, list):
        raise DataError(f"expected a list, got {type(anns).__name__}", path=path, field="annotations")
    frames, sel, records, unknown = [], [], [], 0
    for i, ann in enumerate(anns):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise DataError(
                "expected an annotation object with 'image_id'",
                path=path,
                record=f"annotations[{i}]",
                field="image_id",
            )
        image_id = ann["image_id"]
        hashable = not isinstance(image_id, (list, dict))
        f = id_to_frame.get(image_id) if hashable else None
        if f is None:
            # Annotations of another video folder's frames are dropped quietly (warned above).
            unknown += not (hashable and image_id in other_ids)
            continue
        frames.append(f)
        sel.append(ann)
        records.append(f"annotations[{i}] (image_id {image_id})")
    if unknown:
        log.warning(
            "%s: %d annotations refer to image ids not in 'images'; ignored (as poseval does)", path, unknown
        )
    n_people = np.bincount(np.asarray(frames, dtype=np.int64), minlength=n_frames)
    track_ids: list[list[object]] = [[] for _ in range(n_frames)]
    video = VideoFile(path, "PoseTrack2018", names, n_people, regions, People.empty(), 0, track_ids)
    if not sel:
        return video

    kp = _matrix([a.get("keypoints") for a in sel], 3 * n_kp, path, records, "keypoints")
    xyv = kp.reshape(len(sel), n_kp, 3)[:, cols]  # (N, J, 3)
    # A joint is unannotated only when x, y and v are all 0 (convert.py, Person.to_old).
    present = ~((xyv[..., 0] == 0) & (xyv[..., 1] == 0) & (xyv[..., 2] == 0))
    score = np.full(present.shape, MIN_SCORE)
    head = np.full(len(sel), np.nan)
    if role == "gt":
        boxed = [k for k, a in enumerate(sel) if a.get("bbox_head") is not None]
        if boxed:
            box = _matrix(
                [sel[k]["bbox_head"] for k in boxed], 4, path, [records[k] for k in boxed], "bbox_head"
            )
            # poseval turns [x, y, w, h] into corners first, then measures the diagonal between them.
            head[boxed] = head_size(box[:, 0], box[:, 1], box[:, 0] + box[:, 2], box[:, 1] + box[:, 3])
    else:
        video.n_unscored = _read_scores(sel, records, n_kp, cols, present, score, path)
        for f, a, rec in zip(frames, sel, records, strict=True):
            tid = a.get("track_id")
            if tid is None:
                continue
            if isinstance(tid, bool) or not isinstance(tid, (int, float)):
                raise DataError(f"expected an integer, got {tid!r}", path=path, record=rec, field="track_id")
            track_ids[f].append(tid)
        n_missing = sum(a.get("track_id") is None for a in sel)
        if n_missing:
            log.warning(
                "%s: %d predicted people have no track_id (poseval would refuse the file; the pose "
                "mAP does not need it)",
                path,
                n_missing,
            )
    rows = {"xy": xyv[..., None, :2], "present": present[..., None], "score": score[..., None], "head": head}
    frame, rows, records = sort_people(frames, rows, records)
    video.people = People(frame, rows["xy"], rows["present"], rows["score"], rows["head"], records)
    return video


def _read_scores(
    sel: list[dict],
    records: list[str],
    n_kp: int,
    cols: np.ndarray,
    present: np.ndarray,
    score: np.ndarray,
    path: Path,
) -> int:
    """Fill ``score`` (N, J) from per-annotation ``scores``; return how many present joints had none.

    poseval takes the per-joint list only when it is non-empty, uses its first K entries, and falls
    back to MIN_SCORE otherwise (convert.py, Person.from_new; eval_helpers.assignGTmulti).
    """
    scored, rows = [], []
    for k, ann in enumerate(sel):
        s = ann.get("scores")
        if not s:
            continue
        if not isinstance(s, list) or len(s) < n_kp:
            n = len(s) if isinstance(s, list) else "no"
            raise DataError(
                f"expected a list of {n_kp} per-joint scores, got {n} entries",
                path=path,
                record=records[k],
                field="scores",
            )
        scored.append(k)
        rows.append(s[:n_kp])
    if scored:
        values = _matrix(rows, n_kp, path, [records[k] for k in scored], "scores", allow_none=True)
        values = values[:, cols]
        score[scored] = values
        n_nan = int(np.isnan(values[present[scored]]).sum())
        if n_nan:
            log.warning(
                "%s: %d per-joint scores are null/NaN; ranked above every other score, as poseval's "
                "sort puts them",
                path,
                n_nan,
            )
    unscored = np.ones(len(sel), dtype=bool)
    unscored[scored] = False
    return int(present[unscored].sum())
