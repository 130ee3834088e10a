"""Write per-video prediction files that poseval (and ``cmpose evaluate``) accept.

The file takes the GT file's own format: PoseTrack2018/21 (the GT ``images`` list copied in the same
order, a ``categories`` entry, per-joint ``scores``, a ``track_id`` unique within each frame) or a
PoseTrack2017 ``annolist`` (poseval joint ids, a ``score`` per point). Predictions are keyed by
``frame_index``, the 0-based position of the frame in the GT ``images`` list / ``annolist``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cmpose.errors import EvaluationError
from cmpose.eval.formats import read_json
from cmpose.keypoints import NUM_JOINTS, PT17_TO_PT18, PT18_NAMES, SKELETON
from cmpose.utils.io import atomic_write_json

# poseval asserts every track id is below this (eval_helpers.MAX_TRACK_ID).
MAX_TRACK_ID = 10000
PT18_CATEGORY = {
    "supercategory": "person",
    "id": 1,
    "name": "person",
    "keypoints": list(PT18_NAMES),
    "skeleton": [[a + 1, b + 1] for a, b in SKELETON],  # 1-based, as in PoseTrack18 files
}


@dataclass
class PersonPrediction:
    """One predicted person in image pixels.

    keypoints: (17, 2) x, y in ``PT18_NAMES`` order; a NaN row means the joint is not predicted.
    scores: (17,) per-joint confidence (what the AP ranks by).
    track_id: identity within the video; None lets the writer number the person.
    score: person confidence (written, not used by the mAP). box: (4,) x, y, w, h, optional.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    track_id: int | None = None
    score: float = 1.0
    box: np.ndarray | None = None


def _arrays(person: PersonPrediction, where: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    kp = np.asarray(person.keypoints, dtype=np.float64)
    sc = np.asarray(person.scores, dtype=np.float64)
    if kp.shape != (NUM_JOINTS, 2) or sc.shape != (NUM_JOINTS,):
        raise EvaluationError(
            f"{where}: need keypoints (17, 2) and scores (17,), got {kp.shape} and {sc.shape}"
        )
    has = np.isfinite(kp).all(axis=1)
    if not np.isfinite(sc[has]).all():
        raise EvaluationError(f"{where}: a predicted joint has a non-finite score")
    return kp, sc, has


def _track_ids(people: Sequence[PersonPrediction], where: str) -> list[int]:
    """Given track ids, checked unique; missing ones numbered with the smallest unused ids."""
    given = [p.track_id for p in people if p.track_id is not None]
    for t in given:
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < MAX_TRACK_ID:
            raise EvaluationError(f"{where}: track_id {t!r} must be an integer in [0, {MAX_TRACK_ID})")
    if len(set(given)) != len(given):
        raise EvaluationError(f"{where}: track_id repeated within the frame ({sorted(given)})")
    used, free, out = set(given), 0, []
    for p in people:
        if p.track_id is None:
            while free in used:
                free += 1
            used.add(free)
            out.append(free)
        else:
            out.append(int(p.track_id))
    return out


def _check_frames(results: Mapping[int, Sequence[PersonPrediction]], n_frames: int, gt_file: Path) -> None:
    for f in results:
        if isinstance(f, bool) or not isinstance(f, (int, np.integer)) or not 0 <= f < n_frames:
            raise EvaluationError(f"frame_index {f!r} is not a frame of {gt_file} (it has {n_frames} frames)")


def _pt18(gt: dict, results: Mapping[int, Sequence[PersonPrediction]], gt_file: Path) -> dict:
    images = gt["images"]
    _check_frames(results, len(images), gt_file)
    annotations = []
    for f in sorted(results):
        where = f"{gt_file.name} frame {f}"
        for person, tid in zip(results[f], _track_ids(results[f], where), strict=True):
            kp, sc, has = _arrays(person, where)
            # (0, 0, 0) is how PoseTrack18 marks a joint as absent; every predicted joint gets v = 1.
            xyv = np.where(has[:, None], np.column_stack([kp, np.ones(NUM_JOINTS)]), 0.0)
            ann = {
                "image_id": images[f]["id"],
                "id": len(annotations),
                "track_id": tid,
                "category_id": 1,
                "keypoints": [float(v) for v in xyv.ravel()],
                "scores": [float(s) if h else 0.0 for s, h in zip(sc, has, strict=True)],
                "score": float(person.score),
            }
            if person.box is not None:
                ann["bbox"] = [float(v) for v in np.asarray(person.box, dtype=np.float64).ravel()[:4]]
            elif has.any():
                lo, hi = kp[has].min(axis=0), kp[has].max(axis=0)
                ann["bbox"] = [float(lo[0]), float(lo[1]), float(hi[0] - lo[0]), float(hi[1] - lo[1])]
            annotations.append(ann)
    return {"images": images, "annotations": annotations, "categories": [PT18_CATEGORY]}


def _pt17(gt: dict, results: Mapping[int, Sequence[PersonPrediction]], gt_file: Path) -> dict:
    frames = gt["annolist"]
    _check_frames(results, len(frames), gt_file)
    annolist = []
    for f, frame in enumerate(frames):
        rects = []
        people = results.get(f, ())
        where = f"{gt_file.name} frame {f}"
        for person, tid in zip(people, _track_ids(people, where), strict=True):
            kp, sc, has = _arrays(person, where)
            points = [
                {"id": [pid], "x": [float(kp[j, 0])], "y": [float(kp[j, 1])], "score": [float(sc[j])]}
                for pid, j in enumerate(PT17_TO_PT18)
                if has[j]
            ]
            rects.append(
                {"track_id": [tid], "score": [float(person.score)], "annopoints": [{"point": points}]}
            )
        entry = {"image": frame.get("image", [{"name": ""}]), "annorect": rects}
        if "imgnum" in frame:
            entry["imgnum"] = frame["imgnum"]
        annolist.append(entry)
    return {"annolist": annolist}


def _write_atomic(data: dict, out_file: Path) -> None:
    """Readers never see half a file (temporary file beside the target, then rename)."""
    atomic_write_json(out_file, data, indent=None)


def write_predictions(
    gt_file: Path, results: Mapping[int, Sequence[PersonPrediction]], out_file: Path
) -> None:
    """Write one video's predictions, keyed by frame_index, in the format of ``gt_file``."""
    gt_file, out_file = Path(gt_file), Path(out_file)
    gt = read_json(gt_file)
    data = _pt17(gt, results, gt_file) if "annolist" in gt else _pt18(gt, results, gt_file)
    _write_atomic(data, out_file)


def write_prediction_dir(
    gt_dir: Path,
    results_by_video: Mapping[str, Mapping[int, Sequence[PersonPrediction]]],
    out_dir: Path,
) -> list[Path]:
    """Write a prediction file for every GT video in ``gt_dir`` (keyed by GT file stem; videos without
    results get a file with no people, so the folder is complete). Returns the written paths."""
    gt_files = sorted(Path(gt_dir).glob("*.json"))
    stems = {p.stem for p in gt_files}
    unknown = sorted(set(results_by_video) - stems)
    if unknown:
        raise EvaluationError(
            f"results for videos that have no GT file in {gt_dir}: {', '.join(unknown[:5])}"
        )
    out = []
    for gt_file in gt_files:
        target = Path(out_dir) / gt_file.name
        write_predictions(gt_file, results_by_video.get(gt_file.stem, {}), target)
        out.append(target)
    return out
