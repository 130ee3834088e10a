"""An exported model against its PyTorch source: onnxruntime's outputs and speed on the CPU.

Shapes: B batch, T frames, H x W crop, J joints, Hh x Wh heatmap, K kept tokens, L visual tokens.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cmpose.export.graph import InferenceGraph
from cmpose.export.to_onnx import CHECK_PACKAGES, clip_shape, require
from cmpose.models.cmpose import CMPose


def ort_session(model_file: Path | bytes, threads: int | None = None) -> Any:
    """An onnxruntime CPU session; ``threads`` intra-op threads (default: torch's count, so the
    two runtimes are timed on the same share of the machine)."""
    require(CHECK_PACKAGES)
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    source = model_file if isinstance(model_file, bytes) else str(model_file)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def random_clip(shape: Sequence[int], seed: int) -> torch.Tensor:
    """A standard-normal clip: what normalised crops look like to the model, from a fixed seed."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(seed))


def compare(
    session: Any,
    model: CMPose,
    image_size: tuple[int, int],
    batches: Sequence[int],
    seed: int = 0,
    selection_outputs: bool = False,
) -> dict[int, list[np.ndarray]]:
    """Run both on the same random clip of each batch size; per batch, the absolute differences
    of each output (heatmaps (B, J, Hh, Wh) first; with ``selection_outputs`` then kept_idx (B, K)
    and cluster_ids (B, L))."""
    graph = InferenceGraph(model, selection_outputs)
    name = session.get_inputs()[0].name
    diffs: dict[int, list[np.ndarray]] = {}
    for b in batches:
        clip = random_clip(clip_shape(model, image_size, b), seed + b)
        with torch.no_grad():
            ref = graph(clip)
        ref = [ref] if isinstance(ref, torch.Tensor) else list(ref)
        got = session.run(None, {name: clip.numpy()})
        if len(got) != len(ref):
            raise ValueError(f"the ONNX model has {len(got)} outputs, PyTorch {len(ref)}")
        diffs[b] = [np.abs(g.astype(np.float64) - r.double().numpy()) for g, r in zip(got, ref, strict=True)]
    return diffs


def max_abs_diff(
    session: Any, model: CMPose, image_size: tuple[int, int], batches: Sequence[int], seed: int = 0
) -> dict[int, float]:
    """Largest |onnxruntime - PyTorch| of the heatmaps, per batch size."""
    return {b: float(d[0].max()) for b, d in compare(session, model, image_size, batches, seed).items()}


def median_latency(
    session: Any, model: CMPose, image_size: tuple[int, int], batch: int = 1, runs: int = 5, warmup: int = 2
) -> tuple[float, float]:
    """(PyTorch, onnxruntime) median seconds of ``runs`` calls after ``warmup`` calls each, on one
    random clip, in this process, with the same thread count (``ort_session``'s default)."""
    graph = InferenceGraph(model)
    clip = random_clip(clip_shape(model, image_size, batch), 0)
    feed = {session.get_inputs()[0].name: clip.numpy()}

    def timed(call: Any) -> float:
        for _ in range(warmup):
            call()
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            call()
            times.append(time.perf_counter() - start)
        return statistics.median(times)

    with torch.inference_mode():
        torch_s = timed(lambda: graph(clip))
    return torch_s, timed(lambda: session.run(None, feed))
