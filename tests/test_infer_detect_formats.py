"""Detections files of common detectors: MOT-challenge text, Ultralytics YOLO labels and JSON
(cmpose.infer.detect_files), and how box_source_from_spec picks a reader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from cmpose.errors import DataError
from cmpose.infer.detect import FileBoxes, GTBoxes, HogDetector, box_source_from_spec
from cmpose.infer.detect_files import MotBoxes, YoloJsonBoxes, YoloTxtBoxes, sniff_box_file

SIZE = (640, 360)  # W, H


# --- MOT ---------------------------------------------------------------------------------------
MOT_DET = """\
1,-1,100,50,40,80,0.9,-1,-1,-1
1,-1,300,60,30,70,0.1,-1,-1,-1
3,-1,110.5,52,41,82,0.75,-1,-1,-1
"""
# frame, id, x, y, w, h, consider, class, visibility (MOT16/17 gt.txt)
MOT_GT = """\
1,1,100,50,40,80,1,1,0.8
1,2,300,60,30,70,0,1,1.0
2,1,102,51,40,80,1,1,0.7
2,3,10,10,20,20,1,3,1.0
2,4,400,60,30,70,1,7,1.0
"""


def test_mot_det_frames_are_zero_based_and_scored(tmp_path: Path) -> None:
    f = tmp_path / "det.txt"
    f.write_text(MOT_DET)
    src = MotBoxes(f, score_threshold=0.2)
    assert src.frames == [0, 2]
    boxes, scores = src(0, None)
    np.testing.assert_allclose(boxes, [[100, 50, 40, 80]])  # the 0.1 box is below the threshold
    np.testing.assert_allclose(scores, [0.9])
    np.testing.assert_allclose(src(2)[0], [[110.5, 52, 41, 82]])
    assert len(src(1)[0]) == 0


def test_mot_gt_keeps_considered_pedestrians(tmp_path: Path) -> None:
    f = tmp_path / "gt.txt"
    f.write_text(MOT_GT)
    src = MotBoxes(f)
    assert src.frames == [0, 1]
    np.testing.assert_allclose(src(0)[0], [[100, 50, 40, 80]])  # id 2 has consider flag 0
    np.testing.assert_allclose(src(1)[0], [[102, 51, 40, 80]])  # classes 3 and 7 dropped
    np.testing.assert_allclose(src(1)[1], [1.0])


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("1,-1,100,50,40,80,0.9\n1,-1,1,2\n", "line 2"),
        ("1,-1,100,50,40,80,0.9\n2,-1,a,50,40,80,0.9\n", "line 2"),
        ("0,-1,100,50,40,80,0.9\n", "1-based"),
        ("1.5,-1,100,50,40,80,0.9\n", "line 1"),
    ],
)
def test_mot_malformed_rows_name_file_and_line(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "det.txt"
    f.write_text(text)
    with pytest.raises(DataError) as err:
        MotBoxes(f)
    assert str(f) in str(err.value) and needle in str(err.value)


# --- YOLO label files --------------------------------------------------------------------------
def _yolo_row(cls: int, box: tuple[float, float, float, float], conf: float | None = None) -> str:
    x, y, w, h = box
    vals = [cls, (x + w / 2) / SIZE[0], (y + h / 2) / SIZE[1], w / SIZE[0], h / SIZE[1]]
    if conf is not None:
        vals.append(conf)
    return " ".join(f"{v:.6f}" if isinstance(v, float) else str(v) for v in vals)


def test_yolo_txt_of_a_video_maps_one_based_frame_numbers(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "street_1.txt").write_text(
        _yolo_row(0, (100, 50, 40, 80), 0.9) + "\n" + _yolo_row(2, (0, 0, 50, 50), 0.9) + "\n"
    )
    (labels / "street_3.txt").write_text(_yolo_row(0, (200, 100, 64, 128), 0.8) + "\n")
    (labels / "other_2.txt").write_text(_yolo_row(0, (1, 1, 10, 10), 0.9) + "\n")  # another video
    src = YoloTxtBoxes(labels, SIZE, video_name="street")
    assert src.frames == [0, 2]
    np.testing.assert_allclose(src(0)[0], [[100, 50, 40, 80]], atol=1e-3)  # class 2 (car) dropped
    np.testing.assert_allclose(src(0)[1], [0.9])
    np.testing.assert_allclose(src(2)[0], [[200, 100, 64, 128]], atol=1e-3)


def test_yolo_txt_of_a_frame_folder_matches_image_stems(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "000010.txt").write_text(_yolo_row(0, (10, 20, 30, 60)) + "\n")  # no confidence: 1
    names = ["000000.jpg", "000005.jpg", "000010.jpg"]
    src = YoloTxtBoxes(labels, SIZE, video_name="vid", frame_names=names)
    assert src.frames == [2]
    np.testing.assert_allclose(src(2)[0], [[10, 20, 30, 60]], atol=1e-3)
    np.testing.assert_allclose(src(2)[1], [1.0])


def test_yolo_txt_errors(tmp_path: Path) -> None:
    labels = tmp_path / "labels"
    labels.mkdir()
    (labels / "street_1.txt").write_text(_yolo_row(0, (1, 1, 10, 10)) + "\n0 0.5 0.5\n")
    with pytest.raises(DataError) as err:
        YoloTxtBoxes(labels, SIZE, video_name="street")
    assert "street_1.txt" in str(err.value) and "line 2" in str(err.value)
    with pytest.raises(DataError, match="no label file belongs to this video"):
        YoloTxtBoxes(labels, SIZE, video_name="other")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no YOLO label files"):
        YoloTxtBoxes(empty, SIZE)


# --- YOLO JSON ---------------------------------------------------------------------------------
def _det(name: str, cls: int, conf: float, x1: float, y1: float, x2: float, y2: float) -> dict:
    return {"name": name, "class": cls, "confidence": conf, "box": {"x1": x1, "y1": y1, "x2": x2, "y2": y2}}


def test_yolo_json_list_of_to_json_strings(tmp_path: Path) -> None:
    frames = [
        [_det("person", 0, 0.9, 100, 50, 140, 130), _det("car", 2, 0.9, 0, 0, 50, 50)],
        [],
        [_det("person", 0, 0.1, 1, 1, 5, 5), _det("person", 0, 0.7, 200, 100, 264, 228)],
    ]
    f = tmp_path / "yolo.json"
    f.write_text(json.dumps([json.dumps(fr, indent=2) for fr in frames]))  # as to_json() returns them
    src = YoloJsonBoxes(f, SIZE)
    assert src.frames == [0, 2]
    np.testing.assert_allclose(src(0)[0], [[100, 50, 40, 80]])
    np.testing.assert_allclose(src(2)[0], [[200, 100, 64, 128]])
    np.testing.assert_allclose(src(2)[1], [0.7])


def test_yolo_json_normalised_and_keyed_by_frame(tmp_path: Path) -> None:
    f = tmp_path / "yolo.json"
    f.write_text(json.dumps({"4": [_det("person", 0, 0.8, 0.25, 0.5, 0.5, 1.0)]}))
    src = YoloJsonBoxes(f, SIZE)
    assert src.frames == [4]
    np.testing.assert_allclose(src(4)[0], [[160, 180, 160, 180]])


def test_yolo_json_malformed_names_the_frame(tmp_path: Path) -> None:
    f = tmp_path / "yolo.json"
    f.write_text(json.dumps([[], [{"name": "person", "class": 0, "confidence": 0.9, "box": {"x1": 1}}]]))
    with pytest.raises(DataError) as err:
        YoloJsonBoxes(f, SIZE)
    assert str(f) in str(err.value) and "frame 1" in str(err.value) and "box.y1" in str(err.value)


# --- choosing the reader -----------------------------------------------------------------------
def test_sniff_and_prefixes(tmp_path: Path) -> None:
    mot = tmp_path / "det.txt"
    mot.write_text(MOT_DET)
    yolo_file = tmp_path / "clip_1.txt"
    yolo_file.write_text(_yolo_row(0, (100, 50, 40, 80), 0.9) + "\n")
    coco = tmp_path / "boxes.json"
    coco.write_text(json.dumps([{"frame_index": 0, "bbox": [1, 2, 30, 40], "score": 0.9}]))
    yj = tmp_path / "yolo.json"
    yj.write_text(json.dumps([[_det("person", 0, 0.9, 1, 2, 31, 42)]]))
    assert sniff_box_file(mot) == "mot"
    assert sniff_box_file(yolo_file) == "yolo"
    assert sniff_box_file(tmp_path) == "yolo"
    assert sniff_box_file(coco) == "coco"
    assert sniff_box_file(yj) == "yolo-json"

    assert isinstance(box_source_from_spec(str(mot)), MotBoxes)
    assert isinstance(box_source_from_spec(f"mot:{mot}"), MotBoxes)
    assert isinstance(box_source_from_spec(str(coco)), FileBoxes)
    assert isinstance(box_source_from_spec(f"coco:{coco}"), FileBoxes)
    assert isinstance(box_source_from_spec(str(yj), image_size=SIZE), YoloJsonBoxes)
    assert isinstance(box_source_from_spec(f"yolo:{yj}", image_size=SIZE), YoloJsonBoxes)
    src = box_source_from_spec(f"yolo:{yolo_file}", video_name="clip", image_size=SIZE)
    assert isinstance(src, YoloTxtBoxes) and src.frames == [0]
    assert isinstance(box_source_from_spec("hog"), HogDetector)
    with pytest.raises(DataError, match="frame size"):
        box_source_from_spec(f"yolo:{yolo_file}", video_name="clip")
    xml = tmp_path / "x.xml"
    xml.write_text("<x/>")
    with pytest.raises(DataError, match="unknown detections file type"):
        box_source_from_spec(str(xml))
    with pytest.raises(DataError, match="no such"):
        box_source_from_spec(str(tmp_path / "missing.txt"))


def test_gt_prefix_still_reads_posetrack(pt18_sample: Path) -> None:
    ann = sorted((pt18_sample / "annotations" / "val").glob("*.json"))[0]
    assert isinstance(box_source_from_spec(f"gt:{ann}", ann.stem), GTBoxes)


def test_cli_box_and_smooth_options() -> None:
    import argparse

    from cmpose.cli import infer
    from cmpose.errors import CmposeError

    parser = argparse.ArgumentParser()
    infer.register(parser.add_subparsers())

    def parse(*extra: str) -> argparse.Namespace:
        return parser.parse_args(["infer", "v.mp4", "--checkpoint", "c.pt", *extra])

    assert infer._box_spec(parse()) == "hog"
    assert infer._box_spec(parse("--detector", "onnx:m.onnx")) == "onnx:m.onnx"
    assert infer._box_spec(parse("--boxes", "mot:det.txt")) == "mot:det.txt"
    with pytest.raises(CmposeError, match="not both"):
        infer._box_spec(parse("--boxes", "b.json", "--detector", "hog"))
    with pytest.raises(CmposeError, match="--detector must be"):
        infer._box_spec(parse("--detector", "yolo.pt"))
    assert infer._smooth_values(parse()) is None
    assert infer._smooth_values(parse("--smooth")) == (4.0, 2.0)
    assert infer._smooth_values(parse("--smooth-params", "2,0.5")) == (2.0, 0.5)
    with pytest.raises(CmposeError, match="--smooth-params"):
        infer._smooth_values(parse("--smooth-params", "2"))
