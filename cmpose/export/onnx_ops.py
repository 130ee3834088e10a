"""ONNX translations that torch's exporter lacks for ops the CM-Pose graph uses.

``aten.sort.stable``: TCIS ranks token importance and DPC-KNN ranks the centre scores with a
stable sort (``cmpose.models.tcis.select_topk``, ``cmpose.models.token_cluster``), so that equal
scores keep index order. torch 2.13's ONNX function library registers only the plain
``aten.sort``. ONNX ``TopK`` with k = the axis length is a full sort, and its specification fixes
the order of equal elements: "the element with the lower index will appear first"
(onnx/docs/Operators.md, TopK), which is exactly a stable sort, ascending or descending.
onnxruntime's CPU kernel follows it (tests/test_export_onnx.py checks ties).

Imported only when exporting: it needs onnxscript (the ``onnx`` extra).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from onnxscript import opset18 as op


def sort_stable(
    self: Any, *, stable: bool | None = None, dim: int = -1, descending: bool = False
) -> tuple[Any, Any]:
    """``sort.stable(Tensor self, *, bool? stable, int dim=-1, bool descending=False)`` ->
    (values, int64 indices), as one TopK over the whole axis (module docstring)."""
    axis = dim % len(self.shape)
    length = op.Shape(self, start=axis, end=axis + 1)  # (1,) int64: k = every element of the axis
    return op.TopK(self, length, axis=axis, largest=int(bool(descending)), sorted=1)


def translation_table() -> dict[Callable, Callable]:
    """The ``custom_translation_table`` argument of ``torch.onnx.export``."""
    return {torch.ops.aten.sort.stable: sort_stable}
