"""PoseTrack2018 / PoseTrack21 annotations: one JSON per video, or one merged COCO-style file.

Both forms hold ``images`` (every frame or only the labelled ones, each with ``file_name``,
``nframes``, ``is_labeled``, ignore regions), ``annotations`` (people) and ``categories``. A merged
file holds many videos; images are grouped into videos by the folder of ``file_name``.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from cmpose.data.jsonio import load_json, number, number_list
from cmpose.data.problems import Problems
from cmpose.data.readers.common import box_from_keypoints, clip_box, guess_image_root, parse_frame_name
from cmpose.data.records import Dataset, PersonRecord, Video
from cmpose.data.validate import (
    check_categories,
    check_keypoint_count,
    check_relative_file_name,
    duplicate_people,
)
from cmpose.errors import DataError
from cmpose.keypoints import NUM_JOINTS, PT18_NAMES


def _ignore_regions(img: dict, path: Path, record: str, problems: Problems) -> list[np.ndarray]:
    xs, ys = img.get("ignore_regions_x", []) or [], img.get("ignore_regions_y", []) or []
    if len(xs) != len(ys):
        problems.warning(
            "bad ignore regions",
            f"{len(xs)} x-lists but {len(ys)} y-lists; ignore regions dropped",
            path=path,
            record=record,
            field="ignore_regions_x",
        )
        return []
    regions = []
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        try:
            px = number_list(x, None, path=path, record=record, field=f"ignore_regions_x[{i}]")
            py = number_list(y, len(px), path=path, record=record, field=f"ignore_regions_y[{i}]")
        except DataError as err:
            problems.warning("bad ignore regions", str(err))
            continue
        if len(px) >= 3:
            regions.append(np.stack([px, py], axis=1))
    return regions


def _keypoint_order(data: dict, path: Path) -> np.ndarray:
    """Index into the file's keypoint list for each internal joint (-1 where the file lacks it)."""
    names = check_categories(data, path)
    if names is None:
        # Without categories, assume the standard PoseTrack18 order (as every official file has).
        return np.arange(NUM_JOINTS)
    lookup = {n: i for i, n in enumerate(names)}
    missing = [n for n in PT18_NAMES if n not in lookup and not n.endswith("_ear")]
    if missing:
        raise DataError(
            f"keypoint names {missing} missing (expected PoseTrack18 names {list(PT18_NAMES)})",
            path=path,
            record="categories[0]",
            field="keypoints",
        )
    return np.array([lookup.get(n, -1) for n in PT18_NAMES])


def read_posetrack18(
    path: Path, image_root: Path | None = None, problems: Problems | None = None, data: Any = None
) -> Dataset:
    """Read a PoseTrack18/21 annotation file (per-video or merged).

    Args:
        path: the JSON file.
        image_root: folder that ``file_name`` is relative to; guessed when None.
        problems: where skipped items are recorded (a lenient collector when None).
        data: the file's parsed JSON, when the caller has already loaded it.
    """
    problems = problems if problems is not None else Problems()
    path = Path(path)
    data = load_json(path) if data is None else data
    if not isinstance(data, dict) or "images" not in data:
        raise DataError(
            "expected a PoseTrack18 object with 'images' and 'annotations'", path=path, field="images"
        )
    images, anns = data["images"], data.get("annotations", [])
    if not isinstance(images, list) or not isinstance(anns, list):
        raise DataError("'images' and 'annotations' must be lists", path=path)
    order = _keypoint_order(data, path)
    names = check_categories(data, path)
    num_names = len(names) if names is not None else NUM_JOINTS
    out = Dataset()
    if not images:
        problems.error("empty video", "no images listed", path=path, field="images")
        return out

    # --- images, grouped into videos by their folder --------------------------------------------
    by_id: dict[Any, tuple[str, int, tuple[int, int] | None, list[np.ndarray], Path]] = {}
    groups: dict[str, list[tuple[int | None, dict, str]]] = defaultdict(list)
    seen_ids: set = set()
    checked: list[dict] = []
    for i, img in enumerate(images):
        rec = f"images[{i}]"
        if not isinstance(img, dict) or not isinstance(img.get("file_name"), str):
            problems.error(
                "malformed image",
                "expected an object with a string 'file_name'",
                path=path,
                record=rec,
                field="file_name",
            )
            continue
        # Not a skippable item: a name leaving the dataset root refuses the whole file.
        check_relative_file_name(img["file_name"], path=path, record=rec)
        try:
            img = _checked_image(img, path, rec)
        except DataError as err:
            problems.error("malformed image", str(err))
            continue
        if img["id"] in seen_ids:
            problems.error(
                "malformed image", f"image id {img['id']} repeated", path=path, record=rec, field="id"
            )
            continue
        seen_ids.add(img["id"])
        fname = img["file_name"]
        parsed = parse_frame_name(PurePosixPath(fname).name)
        groups[str(PurePosixPath(fname).parent)].append((parsed[0] if parsed else None, img, rec))
        checked.append(img)
    if image_root is None:
        image_root = guess_image_root(path, images[0].get("file_name", "")) if groups else path.parent

    for folder, members in groups.items():
        video_id = PurePosixPath(folder).name
        if video_id in out.videos:
            problems.error("duplicate video", f"video {video_id} appears twice", path=path, record=folder)
            continue
        declared = [m[1].get("nframes") for m in members if m[1].get("nframes") is not None]
        numbers = [m[0] for m in members]
        numbered = all(n is not None for n in numbers)
        if numbered:
            members.sort(key=lambda m: m[0])
        nframes = int(max(declared)) if declared else len(members)
        if numbered and numbers and max(numbers) >= nframes:
            problems.warning(
                "nframes too small",
                f"frame number {max(numbers)} >= nframes {nframes}; using {max(numbers) + 1}",
                path=path,
                record=video_id,
                field="nframes",
            )
            nframes = max(numbers) + 1
        first = PurePosixPath(members[0][1]["file_name"])
        parsed = parse_frame_name(first.name)
        video = Video(video_id=video_id, num_frames=nframes, source=path)
        if numbered and [m[0] for m in members] == list(range(nframes)):
            video.frame_paths = [image_root / m[1]["file_name"] for m in members]
        elif numbered and parsed is not None:
            # Only some frames listed (e.g. merged files keep labelled frames): derive the others'
            # names; PoseTrack18/21 number frames from 0 (000000.jpg).
            video.pattern = (image_root / folder, 0, parsed[1], parsed[2])
        else:
            video.num_frames = len(members)
            video.frame_paths = [image_root / m[1]["file_name"] for m in members]
        out.videos[video_id] = video
        out.num_listed_frames += len(members)
        for pos, (num, img, rec) in enumerate(members):
            frame_index = num if numbered else pos
            size = img["size"]
            regions = _ignore_regions(img, path, rec, problems)
            by_id[img["id"]] = (video_id, frame_index, size, regions, image_root / img["file_name"])

    # --- people ---------------------------------------------------------------------------------
    people_per_image: dict[Any, int] = defaultdict(int)
    for i, ann in enumerate(anns):
        rec = f"annotations[{i}]"
        person = _read_person(ann, rec, path, by_id, order, num_names, problems)
        if person is not None:
            out.people.append(person)
            people_per_image[ann["image_id"]] += 1

    _drop_repeated_people(out, path, problems)

    for img in checked:
        if img["id"] not in by_id:
            continue
        labelled = img.get("is_labeled")
        if labelled is None:
            labelled = people_per_image[img["id"]] > 0
        if labelled:
            video_id, frame_index, size, regions, image_path = by_id[img["id"]]
            out.labelled_frames[(video_id, frame_index)] = image_path
            out.frame_info[(video_id, frame_index)] = (img["id"], size, regions)
    return out


def _checked_image(img: dict, path: Path, rec: str) -> dict:
    """Validate the fields the reader uses; returns a copy with ``size`` = (w, h) or None."""
    image_id = img.get("id")
    if image_id is None or isinstance(image_id, bool) or not isinstance(image_id, (int, str)):
        raise DataError(
            f"expected an integer or string id, got {image_id!r}", path=path, record=rec, field="id"
        )
    out = dict(img)
    if img.get("nframes") is not None:
        n = number(img["nframes"], path=path, record=rec, field="nframes")
        if n < 1 or n != int(n):
            raise DataError(
                f"expected a positive integer, got {img['nframes']!r}", path=path, record=rec, field="nframes"
            )
        out["nframes"] = int(n)
    out["size"] = None
    if img.get("width") is not None and img.get("height") is not None:
        w = number(img["width"], path=path, record=rec, field="width")
        h = number(img["height"], path=path, record=rec, field="height")
        if w <= 0 or h <= 0:
            raise DataError(f"image size {w} x {h} must be positive", path=path, record=rec, field="width")
        out["size"] = (int(w), int(h))
    labelled = img.get("is_labeled")
    if labelled is not None and not (isinstance(labelled, bool) or labelled in (0, 1)):
        raise DataError(
            f"expected true or false, got {labelled!r}", path=path, record=rec, field="is_labeled"
        )
    return out


def _read_person(
    ann: Any, rec: str, path: Path, by_id: dict, order: np.ndarray, num_names: int, problems: Problems
) -> PersonRecord | None:
    if not isinstance(ann, dict):
        problems.error("malformed person", "expected an object", path=path, record=rec)
        return None
    image_id = ann.get("image_id")
    if isinstance(image_id, bool) or not isinstance(image_id, (int, str)) or image_id not in by_id:
        problems.error(
            "malformed person",
            f"image_id {ann.get('image_id')!r} is not in 'images'",
            path=path,
            record=rec,
            field="image_id",
        )
        return None
    video_id, frame_index, size, regions, image_path = by_id[ann["image_id"]]
    rec = f"{rec} (video {video_id}, frame {frame_index})"
    try:
        raw = ann.get("keypoints")
        if raw is None:
            raise DataError("missing", path=path, record=rec, field="keypoints")
        flat = number_list(raw, None, path=path, record=rec, field="keypoints")
        check_keypoint_count(flat, num_names, path=path, record=rec)
        kp_file = np.asarray(flat).reshape(-1, 3)
        kps = np.where(order[:, None] >= 0, kp_file[np.maximum(order, 0)], 0.0)
        # A joint is annotated when v > 0 (PoseTrack18 GT uses v = 1, PoseTrack21 v = 2).
        kps[:, 2] = (kps[:, 2] > 0).astype(np.float64)
        kps[kps[:, 2] == 0, :2] = 0.0
        head = None
        if ann.get("bbox_head") is not None:
            head = np.asarray(number_list(ann["bbox_head"], 4, path=path, record=rec, field="bbox_head"))
        track_id = -1
        if ann.get("track_id") is not None:
            t = number(ann["track_id"], path=path, record=rec, field="track_id")
            if t != int(t):
                raise DataError(
                    f"expected an integer, got {ann['track_id']!r}", path=path, record=rec, field="track_id"
                )
            track_id = int(t)
        box = None
        if ann.get("bbox") is not None:
            box = clip_box(np.asarray(number_list(ann["bbox"], 4, path=path, record=rec, field="bbox")), size)
            if box[2] <= 0 or box[3] <= 0:
                problems.warning(
                    "zero-size box",
                    f"box {ann['bbox']} has zero size inside the image; using the joints' extent",
                    path=path,
                    record=rec,
                    field="bbox",
                )
                box = None
        if box is None:
            box = box_from_keypoints(kps)
        if box is None:
            raise DataError(
                "no usable box: missing or zero size, and fewer than 2 annotated joints",
                path=path,
                record=rec,
                field="bbox",
            )
    except DataError as err:
        problems.error("malformed person", str(err))
        return None
    hard, visible = _synth_fields(ann, rec, path, order, kps, problems)
    return PersonRecord(
        video_id=video_id,
        frame_index=frame_index,
        image_path=image_path,
        image_size=size,
        box=box,
        keypoints=kps,
        head_box=head,
        track_id=track_id,
        ignore_regions=regions,
        image_id=ann["image_id"],
        hard=hard,
        visible=visible,
    )


def _synth_fields(
    ann: dict, rec: str, path: Path, order: np.ndarray, kps: np.ndarray, problems: Problems
) -> tuple[tuple[str, ...], np.ndarray | None]:
    """The optional per-person fields ``cmpose synth`` writes: ``hard`` (list of hard-case labels)
    and ``visible`` (one 0/1 per keypoint of the file, in its order). Malformed ones are dropped
    with a warning; the person is kept."""
    hard: tuple[str, ...] = ()
    raw = ann.get("hard")
    if raw is not None:
        if isinstance(raw, list) and all(isinstance(h, str) for h in raw):
            hard = tuple(raw)
        else:
            problems.warning(
                "bad hard labels",
                f"expected a list of strings, got {raw!r}; ignored",
                path=path,
                record=rec,
                field="hard",
            )
    visible = None
    raw = ann.get("visible")
    if raw is not None:
        ok = isinstance(raw, list) and len(raw) > order.max()
        ok = ok and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)
        if ok:
            flags = np.asarray(raw, dtype=np.float64)
            visible = np.where(order >= 0, flags[np.maximum(order, 0)], 0.0) > 0
            visible &= kps[:, 2] > 0  # only annotated joints can be visible
        else:
            problems.warning(
                "bad visibility",
                f"expected {order.max() + 1} numbers (0 or 1), got {raw!r}; ignored",
                path=path,
                record=rec,
                field="visible",
            )
    return hard, visible


def _drop_repeated_people(out: Dataset, path: Path, problems: Problems) -> None:
    """A person listed twice in a frame (same joints) is an error: evaluation would look for two
    people (``cmpose.data.validate.duplicate_people``); the repeat is dropped."""
    if len(out.people) < 2:
        return
    keys: dict[tuple[str, int], int] = {}
    frames = np.array([keys.setdefault((p.video_id, p.frame_index), len(keys)) for p in out.people])
    pairs = duplicate_people(frames, np.stack([p.keypoints for p in out.people]))
    for first, repeat in pairs:
        p = out.people[repeat]
        problems.error(
            "repeated person",
            f"same keypoints as another person of this frame (track {out.people[first].track_id})",
            path=path,
            record=f"video {p.video_id} frame {p.frame_index} track {p.track_id}",
            field="keypoints",
        )
    drop = {r for _, r in pairs}
    out.people = [p for i, p in enumerate(out.people) if i not in drop]
