"""Filling the detector's gaps from neighbouring frames: the pure function's rules, and the
detection loader adding the boxes where a person was missed (and nowhere else)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from box_files import gt_boxes

from cmpose.cli.main import main
from cmpose.data.config import GapFillConfig
from cmpose.data.detections import load_detections
from cmpose.data.readers import read_annotations
from cmpose.engine.testing import boxes_label
from cmpose.ops.boxes import box_iou
from cmpose.ops.gap_fill import fill_gaps
from cmpose.synth import SynthConfig, generate

A = np.array([10.0, 10.0, 40.0, 100.0])  # a person, x y w h
B = np.array([200.0, 20.0, 40.0, 100.0])  # another, far from A
SHIFT = np.array([4.0, 0.0, 0.0, 0.0])  # A's motion between two labelled frames


def boxes(*bs: np.ndarray) -> np.ndarray:
    return np.array(bs).reshape(-1, 4)


def test_a_person_missed_between_two_frames_gets_the_mean_box() -> None:
    out = fill_gaps(
        [0, 4, 8],
        [boxes(A, B), boxes(B), boxes(A + 2 * SHIFT, B)],
        [np.array([0.9, 0.9]), np.array([0.9]), np.array([0.7, 0.9])],
        max_gap=4,
    )
    added, scores = out[1]
    np.testing.assert_allclose(added, boxes(A + SHIFT))  # between its two positions
    np.testing.assert_allclose(scores, [0.8 * 0.7])  # decayed, from the weaker source
    # the end frames found everybody that their one neighbour has: nothing to add
    assert len(out[0][0]) == 0 and len(out[2][0]) == 0


def test_a_person_seen_on_one_side_only_is_copied() -> None:
    out = fill_gaps([0, 4], [boxes(A), boxes()], [np.array([0.9]), np.array([])], max_gap=4)
    np.testing.assert_allclose(out[1][0], boxes(A))
    np.testing.assert_allclose(out[1][1], [0.8 * 0.9])
    assert out[0][0].shape == (0, 4) and out[0][1].shape == (0,)


def test_a_found_person_is_not_added_again() -> None:
    # the frame's own box is jittered but overlaps the neighbours' (IoU >= link_iou): same person
    jittered = A + np.array([6.0, 5.0, -4.0, 8.0])
    assert box_iou([jittered], [A])[0, 0] > 0.3
    out = fill_gaps([0, 1, 2], [boxes(A), boxes(jittered), boxes(A)], [np.ones(1)] * 3, max_gap=1)
    assert all(len(b) == 0 for b, _ in out)


@pytest.mark.parametrize(
    ("frames", "score", "max_gap"),
    [
        ([0, 5], 0.9, 4),  # the neighbour is too far away
        ([0, 4], 0.4, 4),  # the neighbour's box is doubtful (below min_score 0.5)
        ([0, 4], 0.9, 0),  # filling is off
    ],
)
def test_nothing_is_added_from_far_or_doubtful_neighbours(
    frames: list[int], score: float, max_gap: int
) -> None:
    out = fill_gaps(frames, [boxes(A), boxes()], [np.array([score]), np.array([])], max_gap=max_gap)
    assert len(out[1][0]) == 0


def test_only_the_detectors_boxes_propagate_one_frame_deep() -> None:
    # A is found in frame 0 only: frame 1 gets it, frame 2 does not (no chains of copies)
    out = fill_gaps(
        [0, 1, 2], [boxes(A), boxes(), boxes()], [np.array([0.9]), np.array([]), np.array([])], max_gap=1
    )
    assert [len(b) for b, _ in out] == [0, 1, 0]


def test_two_missed_people_are_paired_by_overlap() -> None:
    before, after = boxes(A, B), boxes(B + SHIFT, A + SHIFT)  # listed in the other order after
    out = fill_gaps([0, 1, 2], [before, boxes(), after], [np.ones(2), np.array([]), np.ones(2)], max_gap=1)
    added = out[1][0]
    assert len(added) == 2
    expected = boxes(A + SHIFT / 2, B + SHIFT / 2)
    assert np.allclose(np.sort(added, 0), np.sort(expected, 0))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="ascend"):
        fill_gaps([4, 0], [boxes(), boxes()], [np.array([]), np.array([])], max_gap=4)
    with pytest.raises(ValueError, match="2 frames, 1 box arrays"):
        fill_gaps([0, 4], [boxes()], [np.array([])], max_gap=4)
    with pytest.raises(ValueError, match="max_gap"):
        GapFillConfig(max_gap=-1)


# --- the detection loader --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("gaps")
    # 12 frames a video: labelled frames 0, 4 and 8, so frame 4 has a neighbour on each side
    generate(
        root,
        SynthConfig(
            videos=2, frames=12, people=(2, 2), size=(160, 96), hard_ratio=0.0, val_ratio=0.5, seed=3
        ),
        progress=False,
    )
    return root


def test_the_loader_fills_a_missed_person_and_nothing_else(data: Path, tmp_path: Path) -> None:
    val = data / "annotations" / "val"
    gt = read_annotations(val)
    frames = sorted({p.frame_index for p in gt.people})
    assert len(frames) == 3  # the middle one has two neighbours 4 frames away
    boxes = gt_boxes(val)
    full = tmp_path / "full.json"
    full.write_text(json.dumps(boxes))
    cfg = GapFillConfig(max_gap=4)
    # every person found (the GT boxes): nothing is added
    assert len(load_detections(full, gt, gap_fill=cfg)) == len(boxes)
    # drop one person of the middle frame: the loader puts a box back, on that person
    middle = next(p for p in gt.people if p.frame_index == frames[1])
    missed = [
        b for b in boxes if not (b["image_id"] == middle.image_id and np.allclose(b["bbox"], middle.box))
    ]
    assert len(missed) == len(boxes) - 1
    part = tmp_path / "part.json"
    part.write_text(json.dumps(missed))
    assert len(load_detections(part, gt)) == len(missed)  # off by default
    records = load_detections(part, gt, gap_fill=cfg)
    added = records[len(missed) :]
    assert len(added) == 1
    (rec,) = added
    assert (rec.video_id, rec.frame_index, rec.image_id) == (
        middle.video_id,
        middle.frame_index,
        middle.image_id,
    )
    assert box_iou([rec.box], [middle.box])[0, 0] > 0.5
    assert rec.box_score == pytest.approx(0.8 * 0.9)
    assert rec.image_path == middle.image_path


def test_the_box_ceiling_counts_the_filled_person(data: Path, tmp_path: Path, capsys) -> None:
    val = data / "annotations" / "val"
    gt = read_annotations(val)
    middle = next(p for p in gt.people if p.frame_index == 4)
    boxes = [
        b
        for b in gt_boxes(val)
        if not (b["image_id"] == middle.image_id and np.allclose(b["bbox"], middle.box))
    ]
    path = tmp_path / "missing_one.json"
    path.write_text(json.dumps(boxes))
    people = len(boxes) + 1
    assert main(["evaluate", "--gt", str(val), "--box-ceiling", str(path)]) == 0
    assert f"{people - 1} of {people} people found" in capsys.readouterr().out
    assert main(["evaluate", "--gt", str(val), "--box-ceiling", str(path), "--gap-fill", "4"]) == 0
    assert f"{people} of {people} people found" in capsys.readouterr().out


def test_the_report_names_the_boxes() -> None:
    assert boxes_label({"boxes": "gt"}) == "gt boxes"
    assert boxes_label({"boxes": "detections", "gap_fill": 0}) == "detector boxes"
    assert (
        boxes_label({"boxes": "detections", "gap_fill": 4})
        == "detector boxes, gaps filled from frames up to 4 away"
    )
