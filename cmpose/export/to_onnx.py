"""A CM-Pose model (single-frame, stage 1 or stage 2) to an ONNX file.

Exporter: torch's ``torch.export``-based one (``dynamo=True``, torch's default since 2.9). The
TorchScript exporter (``dynamo=False``) cannot trace the model: ``keep_count`` / ``cluster_count``
round a traced shape (``TypeError: type Tensor doesn't define __round__``), and it would bake
every Python-side size into the graph anyway. Under ``torch.export`` the token counts L, K and M
are plain ints (they depend on T, H, W and the config, never on the batch), so the batch axis can
stay dynamic in all three models, and the host syncs of the eager code (``_check_ids``) are
skipped, as under ``torch.compile``. The one op without an ONNX translation in torch 2.13, the
stable sort of TCIS and DPC-KNN, gets one from :mod:`cmpose.export.onnx_ops`.

Opset 18 by default: onnxscript's torch function library is written against it (no version
conversion step), and onnxruntime has run it since 1.14.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cmpose.errors import CmposeError
from cmpose.export.graph import InferenceGraph, model_kind
from cmpose.models.cmpose import CMPose
from cmpose.utils.io import atomic_write_bytes

DEFAULT_OPSET = 18
MIN_OPSET = 18  # the opset of the translations in cmpose.export.onnx_ops
# A protobuf message (the whole .onnx without external data) cannot exceed 2 GiB.
MAX_ONNX_BYTES = 2**31 - 1
EXPORT_PACKAGES = ("onnx", "onnxscript")
CHECK_PACKAGES = ("onnxruntime",)


class ExportError(CmposeError):
    """The model cannot be exported as asked (missing packages, a bad option, a too-large file)."""


def require(packages: tuple[str, ...]) -> None:
    """Raise ExportError naming the extra when one of ``packages`` is not installed."""
    import importlib.util

    missing = [p for p in packages if importlib.util.find_spec(p) is None]
    if missing:
        raise ExportError(
            f"ONNX export needs {', '.join(missing)}: pip install 'cmpose[onnx]' "
            "(onnx, onnxscript, onnxruntime)"
        )


@dataclass
class ExportResult:
    """What was written. ``batch`` None = dynamic batch axis; ``max_abs_diff``: onnxruntime vs
    PyTorch heatmaps per checked batch size (empty when not checked); ``latency``: (PyTorch,
    onnxruntime) median seconds per call on the CPU, when timed."""

    path: Path
    kind: str
    opset: int
    batch: int | None
    input_shape: tuple[int | str, ...]
    output_shape: tuple[int | str, ...]
    num_bytes: int
    max_abs_diff: dict[int, float] = field(default_factory=dict)
    latency: tuple[float, float] | None = None


def clip_shape(model: CMPose, image_size: tuple[int, int], batch: int) -> tuple[int, int, int, int, int]:
    """(B, T, 3, H, W) of the model's input for crops of ``image_size`` (W, H)."""
    W, H = image_size
    return (batch, model.num_frames, 3, H, W)


def metadata_props(model: CMPose, crop: Any | None = None) -> dict[str, str]:
    """The key/value strings stored in the file, for whoever runs it without cmpose: what goes in
    and comes out, and what is left to the caller (docs/inference.md, "Export")."""
    Hh, Wh = model.heatmap_size
    props = {
        "cmpose.kind": model_kind(model),
        "cmpose.num_frames": str(model.num_frames),
        "cmpose.key_frame": str(model.key_frame),
        "cmpose.num_joints": str(model.cfg.num_joints),
        "cmpose.heatmap_size": json.dumps([Wh, Hh]),
        "cmpose.input": "clip (batch, T, 3, H, W) float32: RGB crops, (pixel / 255 - mean) / std; "
        "frame key_frame is the one predicted",
        "cmpose.output": "heatmaps (batch, J, Hh, Wh) float32, unit-peak scale; flip test and decoding "
        "are not in the graph",
    }
    if crop is not None:
        props["cmpose.image_size"] = json.dumps(list(crop.image_size))
        props["cmpose.mean"] = json.dumps(list(crop.mean))
        props["cmpose.std"] = json.dumps(list(crop.std))
    return props


def export_model(
    model: CMPose,
    image_size: tuple[int, int],
    *,
    batch: int | None = None,
    opset: int = DEFAULT_OPSET,
    selection_outputs: bool = False,
    metadata: dict[str, str] | None = None,
) -> bytes:
    """The serialised ONNX model of ``InferenceGraph(model)``.

    Args:
        model: a CM-Pose model of any stage (put in eval mode).
        image_size: crop (W, H), ``cfg.data.crop.image_size``.
        batch: None = a dynamic batch axis named ``batch``; else the batch size fixed in the graph.
        opset: ONNX opset, >= 18.
        selection_outputs: stage 2: also output ``kept_idx`` and ``cluster_ids`` (``InferenceGraph``).
        metadata: key/value strings stored in the model (``metadata_props``).

    Returns:
        The ``.onnx`` file's bytes (weights inside, no external data).
    """
    require(EXPORT_PACKAGES)
    if batch is not None and batch < 1:
        raise ExportError(f"--batch must be >= 1, got {batch}")
    if opset < MIN_OPSET:
        raise ExportError(f"--opset must be >= {MIN_OPSET}, got {opset}")
    import onnx

    from cmpose.export.onnx_ops import translation_table

    graph = InferenceGraph(model, selection_outputs)
    # A traced size of 1 would be specialised (torch.export's 0/1 rule), so a dynamic batch is
    # traced with 2 clips; the values do not matter, the graph has no data-dependent branch.
    example = torch.randn(
        clip_shape(model, image_size, batch or 2), generator=torch.Generator().manual_seed(0)
    )
    outputs = ["heatmaps", "kept_idx", "cluster_ids"] if selection_outputs else ["heatmaps"]
    dynamic = None if batch is not None else ({0: torch.export.Dim("batch", min=1)},)
    with _quiet_exporter():
        program = torch.onnx.export(
            graph,
            (example,),
            dynamo=True,
            opset_version=opset,
            input_names=["clip"],
            output_names=outputs,
            dynamic_shapes=dynamic,
            custom_translation_table=translation_table(),
            verbose=False,
        )
    proto = program.model_proto
    onnx.helper.set_model_props(proto, dict(metadata or {}))
    size = proto.ByteSize()
    if size > MAX_ONNX_BYTES:
        raise ExportError(
            f"the model is {size / 2**30:.2f} GiB, over ONNX's 2 GiB limit for a single file "
            "(external weight files are not supported by cmpose export)"
        )
    onnx.checker.check_model(proto)
    return proto.SerializeToString()


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """The exporter's chatter, which says nothing about this model, off while it runs: one INFO line
    per optimisation step (onnxscript, onnx_ir; ``cmpose`` logs at INFO), a warning that torchvision's
    ops are not registered (cmpose has none), an "ambiguous attribute type" warning that onnx_ir
    answers itself (empty list -> INTS), and a FutureWarning inside torch.export (LeafSpec)."""
    names = {
        "onnxscript": logging.WARNING,
        "onnx_ir": logging.ERROR,
        "torch.onnx._internal.exporter._registration": logging.ERROR,
    }
    loggers = {name: logging.getLogger(name) for name in names}
    saved = {name: log.level for name, log in loggers.items()}
    try:
        for name, log in loggers.items():
            log.setLevel(names[name])
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
            yield
    finally:
        for name, log in loggers.items():
            log.setLevel(saved[name])


def write_onnx(path: Path, data: bytes) -> None:
    """Atomic write (temporary file + rename): a crash never leaves a half-written model."""
    atomic_write_bytes(Path(path), data)
