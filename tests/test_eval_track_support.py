"""Small generated PoseTrack files for the tracking-metric tests (no test here).

A person is a fixed standing pose scaled by its head size around a centre; a frame is a list of
people; a video is a list of frames. Files are written in PoseTrack2018 or PoseTrack2017 layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cmpose.eval.writer import PT18_CATEGORY
from cmpose.keypoints import PT17_NAMES, PT18_NAMES

# Standing pose in head sizes around the head centre, PoseTrack18 order (ears included).
POSE = np.array(
    [
        [0, 0], [0, 0.6], [0, -0.6], [0.3, 0], [-0.3, 0], [1, 1.5], [-1, 1.5], [1.4, 3], [-1.4, 3],
        [1.5, 4.4], [-1.5, 4.4], [0.7, 4.6], [-0.7, 4.6], [0.8, 6.6], [-0.8, 6.6], [0.9, 8.6], [-0.9, 8.6],
    ]
)  # fmt: skip
EARS = [PT18_NAMES.index("left_ear"), PT18_NAMES.index("right_ear")]
# Head box side for a head size of 0.6 x diagonal = ``head``: side = head / (0.6 sqrt 2).
_SIDE = 1 / (0.6 * np.sqrt(2))


@dataclass
class P:
    """One person on one frame: track id, head centre, head size in pixels, shift of every joint in
    head sizes (predictions), and the PoseTrack18 joints left out."""

    tid: int
    x: float
    y: float = 200.0
    head: float = 40.0
    shift: tuple[float, float] = (0.0, 0.0)
    missing: list[str] = field(default_factory=list)

    def xy(self) -> np.ndarray:
        return np.array([self.x, self.y]) + (POSE + np.array(self.shift)) * self.head

    def present(self) -> np.ndarray:
        ok = np.ones(len(PT18_NAMES), dtype=bool)
        ok[EARS] = False
        ok[[PT18_NAMES.index(n) for n in self.missing]] = False
        return ok


def pt18(name: str, frames: list[list[P]], gt: bool, regions: dict[int, list] | None = None) -> dict:
    images, anns = [], []
    for f, people in enumerate(frames):
        image = {"id": 1000 + f, "file_name": f"images/val/{name}/{f:06d}.jpg", "is_labeled": bool(people)}
        if regions and f in regions:
            image["ignore_regions_x"] = [[v[0] for v in poly] for poly in regions[f]]
            image["ignore_regions_y"] = [[v[1] for v in poly] for poly in regions[f]]
        images.append(image)
        for p in people:
            kp = np.column_stack([p.xy(), np.ones(len(PT18_NAMES))]) * p.present()[:, None]
            ann = {
                "image_id": 1000 + f,
                "track_id": p.tid,
                "keypoints": kp.ravel().tolist(),
                "scores": [0.5] * 17,
            }
            if gt:
                s = p.head * _SIDE
                ann["bbox_head"] = [p.x - s / 2, p.y - s / 2, s, s]
            anns.append(ann)
    return {"images": images, "annotations": anns, "categories": [PT18_CATEGORY]}


def pt17(name: str, frames: list[list[P]], gt: bool, regions: dict[int, list] | None = None) -> dict:
    annolist = []
    for f, people in enumerate(frames):
        frame: dict = {"image": [{"name": f"images/val/{name}/{f:06d}.jpg"}], "annorect": []}
        if regions and f in regions:
            frame["ignore_regions"] = [
                {"point": [{"x": [v[0]], "y": [v[1]]} for v in poly]} for poly in regions[f]
            ]
        for p in people:
            xy, ok = p.xy(), p.present()
            points = [
                {"id": [j], "x": [float(xy[k, 0])], "y": [float(xy[k, 1])], "score": [0.5]}
                for j, k in enumerate(PT18_NAMES.index(n) for n in PT17_NAMES)
                if ok[k]
            ]
            rect: dict = {"track_id": [p.tid], "annopoints": [{"point": points}]}
            if gt:
                s = p.head * _SIDE
                rect.update(x1=[p.x - s / 2], y1=[p.y - s / 2], x2=[p.x + s / 2], y2=[p.y + s / 2])
            frame["annorect"].append(rect)
        annolist.append(frame)
    return {"annolist": annolist}


def write_pair(
    root: Path,
    name: str,
    gt: list[list[P]],
    pred: list[list[P]],
    fmt: tuple[str, str] = ("pt18", "pt18"),
    regions: dict[int, list] | None = None,
) -> tuple[Path, Path]:
    """Write one video's GT and prediction files under root/gt and root/pred; returns the folders."""
    writers = {"pt18": pt18, "pt17": pt17}
    out = []
    for sub, frames, is_gt, f in (("gt", gt, True, fmt[0]), ("pred", pred, False, fmt[1])):
        folder = root / sub
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{name}.json").write_text(
            json.dumps(writers[f](name, frames, is_gt, regions if is_gt else None))
        )
        out.append(folder)
    return out[0], out[1]


def rich_video(rng: np.random.Generator, n_frames: int) -> tuple[list[list[P]], list[list[P]]]:
    """A crowded video: tracks that come and go, noisy predictions, id swaps, misses and false positives."""
    gt, pred = [], []
    ids = {t: 100 + t for t in range(4)}
    for f in range(n_frames):
        if f == 2:
            ids[0], ids[1] = ids[1], ids[0]
        if f == 4:
            ids[2] = 300
        g = [P(t, 100 + 25 * t + 5 * f, 200 + 3 * t) for t in range(4) if not (t == 3 and f < 2)]
        p = []
        for person in g:
            if rng.random() < 0.85:
                shift = tuple(rng.normal(0, 0.25, 2))
                p.append(
                    P(ids[person.tid], person.x, person.y, shift=shift, missing=["left_wrist"] * (f % 3 == 0))
                )
        if f % 2:
            p.append(P(900 + f, 150 + 20 * f, 210))
        gt.append(g)
        pred.append(p)
    return gt, pred
