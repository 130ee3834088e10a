"""Video inference speed: what ``cmpose infer`` costs per frame and per person-frame.

For each backbone size (the models of :func:`cmpose.bench.model.model_spec`: tiny at 128x96,
small and base at ViTPose's 256x192) and each number of people P, a synthetic stream of F frames
(1280x720 noise, P people standing in a row and drifting a few pixels per frame, boxes given as
tracks) goes through :class:`cmpose.infer.video.VideoPoseRunner`, as ``cmpose infer`` runs it:

- **end to end** (crop, backbone, encoder/FTE, decode): frames/s and seconds per person-frame of
  the single-frame model (T = 1) and of CM-Pose stage 2 (T = 3 with the token cache), and their
  ratio. CM-Pose's extra cost per person-frame is the encoder and FTE over the clip's 3N tokens;
  the backbone runs once per crop in both.
- **token reuse** (model only, no crop or decode): the same person-frames as clips through
  ``predict_clips`` (the backbone on all T crops of every clip, what ``cmpose test`` does), against
  the backbone once per crop plus ``predict_tokens`` on clips assembled from the cached tokens (the
  runner's path). Their ratio is what the cache saves.

All variants are timed **interleaved in one process** (warm-up, then ``repeats`` rounds, each round
timing every variant once), so a load change on a shared machine hits them alike; medians are
reported with the machine's load average before and after. Weights are random: speed does not
depend on them (the clustering's data-dependent work is bounded by its fixed cluster count).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from cmpose.bench.model import ModelSpec, model_spec
from cmpose.data.clip import clip_offsets
from cmpose.data.config import CropConfig
from cmpose.engine.predict import predict_clips, predict_tokens
from cmpose.infer.tracker import TrackedBox
from cmpose.infer.video import VideoPoseRunner

log = logging.getLogger(__name__)

FRAME_SIZE = (1280, 720)  # (W, H) of the synthetic stream: PoseTrack's usual frame size


def synthetic_stream(
    num_frames: int, people: int, frame_size: tuple[int, int] = FRAME_SIZE, seed: int = 0
) -> list[tuple[int, np.ndarray, list[TrackedBox]]]:
    """``num_frames`` noise frames (H, W, 3) uint8 with ``people`` tracked boxes each.

    People stand in a row across the frame (boxes 3:4, about half the frame high) and drift right
    by 2 px per frame, so every crop differs from the previous frame's."""
    W, H = frame_size
    rng = np.random.default_rng(seed)
    h = 0.5 * H
    w = 0.75 * h * 0.5  # a standing person's box is narrower than the crop's 3:4
    gap = W / (people + 1)
    stream = []
    for t in range(num_frames):
        frame = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        boxes = []
        for p in range(people):
            box = np.array([gap * (p + 1) - w / 2 + 2.0 * t, 0.25 * H, w, h])
            boxes.append(TrackedBox(track_id=p, box=box, raw_box=box.copy(), score=0.9))
        stream.append((t, frame, boxes))
    return stream


def _crop_config(spec: ModelSpec) -> CropConfig:
    return CropConfig(image_size=spec.image_size, heatmap_size=spec.heatmap_size)


def clip_index(num_frames: int, people: int, num_clip_frames: int, step: int) -> torch.Tensor:
    """(F * P, T) indices into the (F * P) person-frames (frame-major) of the clip of each
    person-frame, clamped at the stream's borders as the runner clamps them."""
    offsets = clip_offsets(num_clip_frames, step)
    rows = []
    for t in range(num_frames):
        for p in range(people):
            rows.append([min(max(t + o, 0), num_frames - 1) * people + p for o in offsets])
    return torch.tensor(rows, dtype=torch.long)


class _Variant:
    """One timed thing: ``run()`` does the work once; ``times`` collects seconds per run."""

    def __init__(
        self, name: str, run: Callable[[], Any], device: torch.device, amp: torch.dtype | None
    ) -> None:
        self.name = name
        self.run = run
        self.device = device
        self.amp = amp
        self.times: list[float] = []
        self.split: dict[str, float] = {}  # the runner's seconds per part, of the last run

    def time_once(self) -> None:
        cuda = self.device.type == "cuda"
        if cuda:
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        with torch.autocast(self.device.type, dtype=self.amp or torch.float32, enabled=self.amp is not None):
            self.run()
        if cuda:  # kernels are asynchronous: the time is the GPU's only once they finished
            torch.cuda.synchronize(self.device)
        self.times.append(time.perf_counter() - t0)


def _runner_variant(
    name: str,
    spec: ModelSpec,
    model: torch.nn.Module,
    stream: list,
    batch_size: int,
    flip: bool,
    device: torch.device,
    amp: torch.dtype | None,
) -> _Variant:
    runner = VideoPoseRunner(
        model,
        _crop_config(spec),
        spec.num_frames,
        1,
        device,
        batch_size=batch_size,
        flip_test=flip,
        amp_dtype=amp,
    )

    def run() -> None:
        for _ in runner.run(iter(stream)):
            pass
        v.split = {
            k.removesuffix("_s"): runner.stats[k] for k in ("crop_s", "backbone_s", "encoder_s", "decode_s")
        }

    v = _Variant(name, run, device, None)  # the runner autocasts itself
    return v


def model_variants(
    model: torch.nn.Module, crops: torch.Tensor, index: torch.Tensor, batch_size: int, flip: bool
) -> tuple[Callable[[], torch.Tensor], Callable[[], torch.Tensor]]:
    """(recompute, reuse): two functions giving the heatmaps (F*P, J, Hh, Wh) of the same
    person-frames, the first with the backbone on every clip's T crops (``predict_clips``), the
    second with the backbone once per crop and clips assembled from those tokens.

    crops: (F*P, 3, H, W) normalised crops; index: (F*P, T) from :func:`clip_index`."""

    @torch.no_grad()
    def recompute() -> torch.Tensor:
        out = [
            predict_clips(model, crops[index[i : i + batch_size]], flip)[0]
            for i in range(0, len(index), batch_size)
        ]
        return torch.cat(out)

    @torch.no_grad()
    def reuse() -> torch.Tensor:
        frames = torch.cat([crops, crops.flip(-1)]) if flip else crops
        tokens = torch.cat(
            [model.encode_frames(frames[i : i + batch_size]) for i in range(0, len(frames), batch_size)]
        )
        n = len(crops)
        out = []
        for i in range(0, len(index), batch_size):
            idx = index[i : i + batch_size]
            out.append(predict_tokens(model, tokens[:n][idx], tokens[n:][idx] if flip else None)[0])
        return torch.cat(out)

    return recompute, reuse


def measure_size(
    size: str,
    people: int,
    num_frames: int,
    repeats: int = 5,
    warmup: int = 1,
    batch_size: int = 32,
    flip: bool = False,
    seed: int = 0,
    device: str | torch.device = "cpu",
    amp: torch.dtype | None = None,
) -> dict[str, Any]:
    """All numbers of one (size, people) cell; see the module docstring. ``amp``: the autocast
    dtype (``cmpose.engine.trainer.amp_dtype``), None = float32."""
    device = torch.device(device)
    torch.manual_seed(seed)
    single_spec, cm_spec = model_spec(size, "single"), model_spec(size, "stage2")
    single = single_spec.build().eval().to(device)
    cm = cm_spec.build().eval().to(device)
    stream = synthetic_stream(num_frames, people, seed=seed)
    W, H = cm_spec.image_size
    g = torch.Generator().manual_seed(seed)
    crops = torch.randn(num_frames * people, 3, H, W, generator=g).to(device)  # (F*P, 3, H, W)
    index = clip_index(num_frames, people, cm_spec.num_frames, 1).to(device)  # (F*P, T)
    recompute, reuse = model_variants(cm, crops, index, batch_size, flip)
    variants = [
        _runner_variant("single_e2e", single_spec, single, stream, batch_size, flip, device, amp),
        _runner_variant("cmpose_e2e", cm_spec, cm, stream, batch_size, flip, device, amp),
        _Variant("recompute", recompute, device, amp),
        _Variant("reuse", reuse, device, amp),
    ]
    load_before = os.getloadavg()[0]
    for rnd in range(warmup + repeats):
        for v in variants:
            v.time_once()
        if rnd < warmup:
            for v in variants:
                v.times.clear()
    load_after = os.getloadavg()[0]
    med = {v.name: statistics.median(v.times) for v in variants}
    person_frames = num_frames * people
    return {
        "size": size,
        "people": people,
        "frames": num_frames,
        "crop": [W, H],
        "flip_test": flip,
        "batch_size": batch_size,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "amp": str(amp).removeprefix("torch.") if amp is not None else "off",
        "repeats": repeats,
        "warmup": warmup,
        "seconds": {v.name: v.times for v in variants},
        "median_s": med,
        "frames_per_s": {k: num_frames / med[k] for k in ("single_e2e", "cmpose_e2e")},
        "ms_per_person_frame": {k: 1000.0 * t / person_frames for k, t in med.items()},
        "cmpose_vs_single": med["cmpose_e2e"] / med["single_e2e"],
        # where the end-to-end time goes (seconds of each runner's last run): the backbone runs
        # once per crop in both; CM-Pose adds the encoder and FTE over the clip's T*N tokens
        "split_s": {v.name: v.split for v in variants if v.split},
        "recompute_vs_reuse": med["recompute"] / med["reuse"],
        "load_avg_1min": [load_before, load_after],
    }


def run_infer_benchmark(
    sizes: Sequence[str],
    people: Sequence[int],
    frames: int,
    repeats: int = 5,
    warmup: int = 1,
    batch_size: int = 32,
    flip: bool = False,
    threads: int | None = None,
    base_frames: int | None = None,
    device: str | torch.device = "cpu",
    amp: torch.dtype | None = None,
) -> list[dict[str, Any]]:
    """:func:`measure_size` for every size and people count (``base_frames`` for base, slow on a CPU)."""
    if threads is not None:
        torch.set_num_threads(max(1, threads))
    results = []
    for size in sizes:
        for p in people:
            f = base_frames if (size == "base" and base_frames) else frames
            r = measure_size(size, p, f, repeats, warmup, batch_size, flip, device=device, amp=amp)
            r["threads"] = torch.get_num_threads()
            log.info(
                "%s, %d people: %.2f frames/s single, %.2f CM-Pose (x%.3f per person-frame); recompute x%.2f",
                size, p, r["frames_per_s"]["single_e2e"], r["frames_per_s"]["cmpose_e2e"],
                r["cmpose_vs_single"], r["recompute_vs_reuse"],
            )  # fmt: skip
            results.append(r)
    return results


def markdown_table(results: list[dict[str, Any]]) -> str:
    nan = float("nan")
    lines = [
        "| device | size | crop | people | frames/s single | frames/s CM-Pose | ms/person-frame single | "
        "ms/person-frame CM-Pose | CM-Pose / single | CM-Pose s: backbone / encoder+FTE+head | "
        "recompute / reuse | load |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- | ---: | --- |",
    ]
    for r in results:
        fps, ms = r["frames_per_s"], r["ms_per_person_frame"]
        split = r.get("split_s", {}).get("cmpose_e2e", {})
        lines.append(
            f"| {r['device']} {r['amp']} | {r['size']} | {r['crop'][1]}x{r['crop'][0]} | {r['people']} | "
            f"{fps['single_e2e']:.2f} | "
            f"{fps['cmpose_e2e']:.2f} | {ms['single_e2e']:.1f} | {ms['cmpose_e2e']:.1f} | "
            f"{r['cmpose_vs_single']:.3f} | "
            f"{split.get('backbone', nan):.3f} / {split.get('encoder', nan):.3f} | "
            f"{r['recompute_vs_reuse']:.2f} | "
            f"{r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f} |"
        )
    return "\n".join(lines)
