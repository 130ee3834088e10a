"""Export of the inference graph (``cmpose export``): the single-frame model and CM-Pose stages 1
and 2 as ONNX, clip in, heatmaps out. docs/inference.md, "Export", says what is in the graph."""

from __future__ import annotations

from cmpose.export.graph import InferenceGraph, model_kind

__all__ = ["InferenceGraph", "model_kind"]
