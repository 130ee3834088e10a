"""A YOLO-family person detector exported to ONNX, run with onnxruntime (``--detector
onnx:MODEL.onnx``; ``pip install cmpose[onnx]``). No torchvision and no Ultralytics needed.

Supported output layouts (detected from the output's shape, the attribute axis being the short one):

* YOLOv5 / YOLOv7 style ``(1, N, 5 + nc)``: ``cx, cy, w, h, objectness, nc class scores``;
  score = objectness x class score.
* YOLOv8 / YOLO11 style ``(1, 4 + nc, N)``: ``cx, cy, w, h, nc class scores`` (no objectness).

Boxes are in the network's input pixels (the letterboxed image). Exports that include NMS
(``nms=True``, YOLOv10 end-to-end ``(1, 300, 6)``) are not supported: their rows are corner boxes
with a class column, which the shape does not tell apart from a one-class YOLOv5 output.

Preprocessing is the letterbox Ultralytics uses: resize keeping the aspect ratio to fit the
input size, pad the rest with grey 114 split evenly between the two sides, BGR -> RGB, / 255,
NCHW float32. The input size comes from the model's input shape (640 x 640 when it is dynamic).
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from cmpose.errors import CmposeError, DataError
from cmpose.infer.detect import _EMPTY, nms

log = logging.getLogger(__name__)

__all__ = ["Letterbox", "OnnxDetector", "decode_yolo", "letterbox"]

PAD_VALUE = 114  # Ultralytics' letterbox grey
DEFAULT_INPUT = (640, 640)


class Letterbox:
    """The transform of :func:`letterbox`: ``net = image * scale + (pad_x, pad_y)``."""

    def __init__(self, scale: float, pad_x: int, pad_y: int) -> None:
        self.scale, self.pad_x, self.pad_y = scale, pad_x, pad_y

    def to_image(self, xywh: np.ndarray) -> np.ndarray:
        """Boxes (D, 4) x, y, w, h in network pixels -> image pixels."""
        out = np.asarray(xywh, np.float64).copy()
        out[:, 0] = (out[:, 0] - self.pad_x) / self.scale
        out[:, 1] = (out[:, 1] - self.pad_y) / self.scale
        out[:, 2:] /= self.scale
        return out


def letterbox(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, Letterbox]:
    """Resize ``image`` (H, W, 3) to fit ``size`` (height, width) keeping its aspect ratio, and
    pad it with grey 114 to exactly that size, the padding split evenly (the odd pixel goes to
    the bottom / right). Returns the padded image and the transform."""
    h, w = image.shape[:2]
    out_h, out_w = size
    scale = min(out_h / h, out_w / w)
    new_w, new_h = round(w * scale), round(h * scale)
    resized = (
        cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        if (new_w, new_h) != (w, h)
        else image
    )
    pad_x, pad_y = (out_w - new_w) // 2, (out_h - new_h) // 2
    canvas = np.full((out_h, out_w, 3), PAD_VALUE, np.uint8)
    canvas[pad_y : pad_y + new_h, pad_x : pad_x + new_w] = resized
    return canvas, Letterbox(scale, pad_x, pad_y)


def decode_yolo(
    output: np.ndarray, score_threshold: float, person_class: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A YOLO output ``(1, N, 5 + nc)`` (v5) or ``(1, 4 + nc, N)`` (v8) -> person boxes (D, 4)
    x, y, w, h and scores (D,) at or above ``score_threshold`` (before NMS, network pixels)."""
    out = np.asarray(output, np.float32)
    if out.ndim == 3 and out.shape[0] == 1:
        out = out[0]
    if out.ndim != 2:
        raise CmposeError(
            f"YOLO output: expected shape (1, N, 5 + classes) or (1, 4 + classes, N), got {output.shape}"
        )
    if out.shape[0] < out.shape[1]:  # (4 + nc, N): YOLOv8/11, no objectness
        rows = out.T
        if rows.shape[1] < 5 or person_class >= rows.shape[1] - 4:
            raise CmposeError(
                f"YOLOv8-style output {output.shape}: too few class rows for class {person_class}"
            )
        scores = rows[:, 4 + person_class]
    else:  # (N, 5 + nc): YOLOv5, objectness x class score
        rows = out
        if rows.shape[1] < 6 or person_class >= rows.shape[1] - 5:
            raise CmposeError(
                f"YOLOv5-style output {output.shape}: too few class columns for class {person_class}"
            )
        scores = rows[:, 4] * rows[:, 5 + person_class]
    ok = scores >= score_threshold
    rows, scores = rows[ok], scores[ok]
    boxes = np.stack([rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2, rows[:, 2], rows[:, 3]], 1)
    return boxes.astype(np.float64), scores.astype(np.float64)


class OnnxDetector:
    """A YOLO-family ONNX detector's person boxes (see the module docstring).

    Args:
        model: the ``.onnx`` file.
        score_threshold: person score below which boxes are dropped (before NMS).
        nms_iou: IoU above which the lower-scoring of two boxes is dropped (Ultralytics: 0.7;
            0.6 here keeps fewer duplicates of one person, which the tracker would turn into tracks).
        person_class: the class index of "person" (0 for COCO-trained models).
        providers: onnxruntime execution providers (default: CPU).
    """

    name = "onnx"

    def __init__(
        self,
        model: Path,
        score_threshold: float = 0.25,
        nms_iou: float = 0.6,
        person_class: int = 0,
        providers: list[str] | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise CmposeError(
                "--detector onnx: needs onnxruntime (pip install 'cmpose[onnx]' or pip install onnxruntime)"
            ) from None
        self.path = Path(model)
        if not self.path.is_file():
            raise DataError("no such ONNX model file", path=self.path)
        try:
            self._session = ort.InferenceSession(
                str(self.path), providers=providers or ["CPUExecutionProvider"]
            )
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise DataError(f"onnxruntime cannot load this model: {err}", path=self.path) from None
        inputs = self._session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DataError(
                f"expected one image input (1, 3, H, W), got {[(i.name, i.shape) for i in inputs]}",
                path=self.path,
            )
        self._input = inputs[0].name
        _, _, h, w = inputs[0].shape
        self.input_size = (
            (int(h), int(w))
            if isinstance(h, int) and isinstance(w, int) and h > 0 and w > 0
            else DEFAULT_INPUT
        )
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.person_class = person_class
        log.info("%s: ONNX detector, input %d x %d (H x W)", self.path, *self.input_size)

    def __call__(self, frame_index: int, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded, lb = letterbox(frame, self.input_size)
        blob = np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)[None], np.float32) / 255.0
        output = self._session.run(None, {self._input: blob})[0]
        boxes, scores = decode_yolo(output, self.score_threshold, self.person_class)
        if len(scores) == 0:
            return _EMPTY
        keep = nms(boxes, scores, self.nms_iou)
        boxes, scores = lb.to_image(boxes[keep]), scores[keep]
        # clip to the image: boxes may reach into the padding
        h, w = frame.shape[:2]
        x0, y0 = np.clip(boxes[:, 0], 0, w), np.clip(boxes[:, 1], 0, h)
        x1 = np.clip(boxes[:, 0] + boxes[:, 2], 0, w)
        y1 = np.clip(boxes[:, 1] + boxes[:, 3], 0, h)
        boxes = np.stack([x0, y0, x1 - x0, y1 - y0], 1)
        ok = (boxes[:, 2] > 1) & (boxes[:, 3] > 1)
        return boxes[ok], scores[ok]
