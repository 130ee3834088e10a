"""cmpose synth's every-frame detections (detections/val_boxes_all_frames.json): they cover every val
frame, leave the labelled frames' boxes (val_boxes.json) as they were, and have the same noise as
the labelled frames' boxes. (Same seed, same bytes, this file included: tests/test_synth.py.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cmpose.synth import SynthConfig, generate
from cmpose.synth.detections import ALL_FRAMES_FILE, iou
from cmpose.synth.frame import render_frame
from cmpose.synth.plan import plan_video

CONFIG = SynthConfig(
    videos=6, frames=32, people=(2, 3), size=(160, 96), hard_ratio=0.3, val_ratio=0.5, seed=9
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth_track")
    generate(root, CONFIG, progress=False)
    return root


def _images(root: Path) -> dict[int, tuple[str, int, bool]]:
    out = {}
    for path in sorted((root / "annotations" / "val").glob("*.json")):
        for t, img in enumerate(json.loads(path.read_text())["images"]):
            out[img["id"]] = (path.stem, t, img["is_labeled"])
    return out


def test_every_frame_covered_and_labelled_frames_unchanged(dataset: Path) -> None:
    images = _images(dataset)
    every = json.loads((dataset / "detections" / ALL_FRAMES_FILE).read_text())
    labelled = json.loads((dataset / "detections" / "val_boxes.json").read_text())
    ids = {d["image_id"] for d in every}
    assert ids <= set(images)
    unlabelled = {i for i, (_, _, lab) in images.items() if not lab}
    assert len(ids & unlabelled) >= 0.9 * len(unlabelled)  # 2-3 people a frame: rarely all missed
    # The labelled frames' entries are val_boxes.json, entry for entry, in the same order.
    assert [d for d in every if images[d["image_id"]][2]] == labelled
    # Entries come frame by frame in order, best first within a frame (as val_boxes.json).
    keys = [(images[d["image_id"]][0], images[d["image_id"]][1], -d["score"]) for d in every]
    assert keys == sorted(keys)


def test_unlabelled_frames_have_the_labelled_frames_noise(dataset: Path) -> None:
    """Found fraction (best IoU > 0.5) and median IoU of the GT people, labelled vs unlabelled
    frames, from the rendered people of every frame (the generator's own boxes)."""
    every = json.loads((dataset / "detections" / ALL_FRAMES_FILE).read_text())
    by_image: dict[int, list[np.ndarray]] = {}
    for d in every:
        by_image.setdefault(d["image_id"], []).append(np.array(d["bbox"]))
    best: dict[bool, list[float]] = {True: [], False: []}
    for index in CONFIG.val_videos():
        plan = plan_video(index, CONFIG, "val")
        for t in range(plan.n_frames):
            dets = by_image.get(10000000000 + plan.number * 10000 + t, [])
            for p in render_frame(plan, t).people:
                best[bool(plan.labelled[t])].append(max((iou(b, p.box) for b in dets), default=0.0))
    lab, unl = np.array(best[True]), np.array(best[False])
    assert len(lab) > 30 and len(unl) > 3 * len(lab) - 10
    assert abs(np.mean(lab > 0.5) - np.mean(unl > 0.5)) < 0.1
    assert abs(np.median(lab) - np.median(unl)) < 0.05
    assert 0.7 < np.median(unl) < 0.95  # jittered, not exact
