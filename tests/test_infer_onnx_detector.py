"""The ONNX YOLO person detector (cmpose.infer.detect_onnx) on tiny hand-built ONNX graphs whose
output is a known constant, in the YOLOv5 and YOLOv8 layouts. Needs onnx + onnxruntime (the
``onnx`` extra); skipped without them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cmpose.errors import CmposeError
from cmpose.infer.detect_onnx import OnnxDetector, decode_yolo, letterbox

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

NET = (640, 640)  # H, W of the model input
IMAGE_W, IMAGE_H = 320, 240  # letterboxed: scale 2, 80 px of grey above and below


def _constant_model(path: Path, output: np.ndarray, input_hw: tuple[int, int] | None = NET) -> Path:
    """A graph with one image input whose output is ``output``, plus 0 x the input's mean (so the
    input is used and onnxruntime keeps it)."""
    h, w = input_hw if input_hw else ("height", "width")
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, h, w])
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(output.shape))
    nodes = [
        helper.make_node("Constant", [], ["c"], value=numpy_helper.from_array(output.astype(np.float32))),
        helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
        helper.make_node("Constant", [], ["zero"], value=numpy_helper.from_array(np.zeros((), np.float32))),
        helper.make_node("Mul", ["m", "zero"], ["m0"]),
        helper.make_node("Add", ["c", "m0"], ["output0"]),
    ]
    graph = helper.make_graph(nodes, "yolo_constant", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def _to_net(x: float, y: float, w: float, h: float) -> list[float]:
    """An image box x, y, w, h -> network cx, cy, w, h after the letterbox (scale 2, pad_y 80)."""
    return [(x + w / 2) * 2, (y + h / 2) * 2 + 80, w * 2, h * 2]


PERSON = (50.0, 40.0, 30.0, 60.0)
CAR = (200.0, 100.0, 60.0, 40.0)


def _frame() -> np.ndarray:
    return np.zeros((IMAGE_H, IMAGE_W, 3), np.uint8)


def test_v8_layout_decodes_to_image_boxes(tmp_path: Path) -> None:
    n_cls = 80
    cols = []
    for box, cls, score in [(PERSON, 0, 0.9), (CAR, 2, 0.95), ((51.0, 41.0, 30.0, 60.0), 0, 0.8)]:
        c = np.zeros(4 + n_cls)
        c[:4] = _to_net(*box)
        c[4 + cls] = score
        cols.append(c)
    # real exports have thousands of candidates (8400 at 640 x 640); the layout is told from the
    # shape by the attribute axis being the short one, so pad with empty candidates
    cols += [np.zeros(4 + n_cls)] * 200
    out = np.stack(cols, 1)[None]  # (1, 84, 203)
    det = OnnxDetector(_constant_model(tmp_path / "v8.onnx", out), score_threshold=0.25)
    assert det.input_size == NET
    boxes, scores = det(0, _frame())
    # the car is another class; the shifted person box is a duplicate removed by NMS
    np.testing.assert_allclose(boxes, [PERSON], atol=1e-3)
    np.testing.assert_allclose(scores, [0.9], atol=1e-6)


def test_v5_layout_multiplies_objectness(tmp_path: Path) -> None:
    rows = []
    for box, obj, cls, score in [
        (PERSON, 0.9, 0, 0.8),
        (CAR, 0.9, 2, 0.9),
        ((150.0, 60.0, 20, 40), 0.2, 0, 0.9),
    ]:
        r = np.zeros(85)
        r[:4] = _to_net(*box)
        r[4] = obj
        r[5 + cls] = score
        rows.append(r)
    rows += [np.zeros(85)] * 200
    out = np.stack(rows)[None]  # (1, 203, 85)
    det = OnnxDetector(_constant_model(tmp_path / "v5.onnx", out), score_threshold=0.25)
    boxes, scores = det(0, _frame())
    np.testing.assert_allclose(boxes, [PERSON], atol=1e-3)  # 0.2 x 0.9 = 0.18 < 0.25
    np.testing.assert_allclose(scores, [0.72], atol=1e-6)


def test_dynamic_input_size_defaults_to_640(tmp_path: Path) -> None:
    out = np.zeros((1, 84, 300))
    det = OnnxDetector(_constant_model(tmp_path / "dyn.onnx", out, input_hw=None))
    assert det.input_size == (640, 640)
    boxes, scores = det(0, _frame())
    assert boxes.shape == (0, 4) and scores.shape == (0,)


def test_letterbox_round_trip() -> None:
    img = np.zeros((101, 333, 3), np.uint8)  # odd sizes: uneven padding
    img[20:60, 100:180] = 255
    padded, lb = letterbox(img, (256, 320))
    assert padded.shape == (256, 320, 3)
    assert padded[0, 0, 0] == 114  # grey padding above
    ys, xs = np.nonzero(padded[:, :, 0] > 200)
    net_box = np.array([[xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]], float)
    back = lb.to_image(net_box)
    np.testing.assert_allclose(back, [[100, 20, 80, 40]], atol=1.5)


def test_bad_outputs_are_clear_errors() -> None:
    with pytest.raises(CmposeError, match="expected shape"):
        decode_yolo(np.zeros((2, 84, 10)), 0.25)
    with pytest.raises(CmposeError, match="too few"):
        decode_yolo(np.zeros((1, 10, 4)), 0.25)  # (N, 4): no scores at all


def test_missing_model_file(tmp_path: Path) -> None:
    with pytest.raises(CmposeError, match="no such ONNX model"):
        OnnxDetector(tmp_path / "none.onnx")


def test_spec_prefix(tmp_path: Path) -> None:
    from cmpose.infer.detect import box_source_from_spec

    model = _constant_model(tmp_path / "m.onnx", np.zeros((1, 84, 300)))
    assert isinstance(box_source_from_spec(f"onnx:{model}"), OnnxDetector)
    assert isinstance(box_source_from_spec(str(model)), OnnxDetector)
