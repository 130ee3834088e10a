"""Model size, FLOPs and CPU latency of CM-Pose for several backbone sizes and model variants.

Variants: the single-frame baseline (T=1, no encoder), stage 1 (MCL, T=3) and stage 2 (FTE, T=3).
All numbers are for inference: eval mode, ``torch.no_grad``, one clip of T frames per sample.

- Parameters: total and trainable (stage 2 freezes the stage-1 auxiliary branches), and those
  that inference uses (the auxiliary branches run in training only).
- FLOPs per clip: ``torch.utils.flop_counter.FlopCounterMode`` over one clip, counting a
  multiply-add as 2 FLOPs. It counts matrix products and convolutions only (not softmax, norms,
  activations). On the CPU, ``scaled_dot_product_attention`` dispatches to a kernel the counter does
  not know, so it is counted with the math backend (the same products as bmm). The DPC-KNN
  clustering of stage 2 uses ``torch.cdist`` in its direct (non-matmul) form, which is not
  counted; ``cdist_flops_estimate`` gives its analytic cost (3 FLOPs per pair and channel).
- Latency per clip: wall time of one batch divided by the batch size; the median (and the minimum,
  the least disturbed run on a shared machine) of ``repeats`` timed runs after ``warmup`` untimed
  ones, with ``threads`` torch threads.
"""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from cmpose.models.cmpose import CMPose
from cmpose.models.config import (
    VIT_SIZES,
    BackboneConfig,
    EncoderConfig,
    FTEConfig,
    HeadConfig,
    ModelConfig,
)
from cmpose.models.tcis import keep_count

log = logging.getLogger(__name__)

SIZES = ("tiny", "small", "base")
VARIANTS = ("single", "stage1", "stage2")


@dataclass
class ModelSpec:
    """One model to measure. image_size and heatmap_size are (W, H), as ``CMPose`` takes them."""

    size: str
    variant: str
    cfg: ModelConfig
    image_size: tuple[int, int]
    heatmap_size: tuple[int, int]
    num_frames: int

    def build(self) -> CMPose:
        return CMPose(self.cfg, self.image_size, self.heatmap_size, self.num_frames)


def model_spec(size: str, variant: str) -> ModelSpec:
    """The benchmark's configuration of ``size`` / ``variant``.

    tiny: the CPU config (conv stem of 32 channels, 128x96 crops -> 8x6 tokens -> 32x24 heatmaps,
    head (64, 64), encoder of 2 blocks with 4 heads and a 128-wide keypoint MLP, FTE with 4 heads).
    small / base: ViTPose's 256x192 crops and plain patch embedding (16x12 tokens -> 64x48 heatmaps),
    head (256, 256), encoder of 2 blocks and FTE with the backbone's number of heads.
    """
    if size not in VIT_SIZES:
        raise ValueError(f"size must be one of {sorted(VIT_SIZES)}, got {size!r}")
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    if size == "tiny":
        backbone = BackboneConfig(size="tiny", stem_channels=32)
        head = HeadConfig(deconv_channels=(64, 64))
        heads = 4
        encoder = EncoderConfig(depth=2, num_heads=heads, keypoint_head_hidden=128)
        image_size, heatmap_size = (96, 128), (24, 32)
    else:
        backbone = BackboneConfig(size=size)  # stem_channels=0: ViTPose's patch embedding
        head = HeadConfig(deconv_channels=(256, 256))
        heads = backbone.num_heads
        encoder = EncoderConfig(depth=2, num_heads=heads)
        image_size, heatmap_size = (192, 256), (48, 64)
    single = variant == "single"
    encoder.enabled = not single
    cfg = ModelConfig(
        stage=2 if variant == "stage2" else 1,
        backbone=backbone,
        head=head,
        encoder=encoder,
        fte=FTEConfig(num_heads=heads),
    )
    return ModelSpec(size, variant, cfg, image_size, heatmap_size, 1 if single else 3)


def _params(model: CMPose) -> dict[str, int]:
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    aux = sum(p.numel() for m in (model.aux_mask, model.aux_noise) if m is not None for p in m.parameters())
    return {"params_total": total, "params_trainable": trainable, "params_inference": total - aux}


def _clip(spec: ModelSpec, batch: int, seed: int = 0) -> torch.Tensor:
    W, H = spec.image_size
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, spec.num_frames, 3, H, W, generator=g)


def count_flops(model: CMPose, clip: torch.Tensor) -> tuple[int, dict[str, int]]:
    """(total FLOPs, FLOPs per top-level module) of one inference pass; see the module docstring."""
    model.eval()
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH), counter:
        model(clip)
    # Names are "Global", "CMPose", "CMPose.backbone", ...: keep the model's direct children.
    per_module = {
        name.split(".", 1)[1]: int(sum(counts.values()))
        for name, counts in counter.get_flop_counts().items()
        if name.count(".") == 1
    }
    return int(counter.get_total_flops()), per_module


def cdist_flops_estimate(spec: ModelSpec, tokens_per_frame: int) -> int:
    """Analytic cost of stage 2's uncounted pairwise distances: 3 FLOPs per token pair and channel
    (difference, square, sum) over the L - K non-causal tokens of one clip."""
    if spec.variant != "stage2" or not spec.cfg.fte.cluster:
        return 0
    L = spec.num_frames * tokens_per_frame
    rest = L - keep_count(L, spec.cfg.fte.keep_ratio)
    return 3 * rest * rest * int(spec.cfg.backbone.embed_dim)


def time_model(model: CMPose, clip: torch.Tensor, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds per forward pass of ``clip`` (eval, no_grad): ``warmup`` untimed runs, then ``repeats``."""
    model.eval()
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            t0 = time.perf_counter()
            model(clip)
            dt = time.perf_counter() - t0
            if i >= warmup:
                times.append(dt)
    return times


def measure(
    spec: ModelSpec, batch_sizes: Sequence[int], repeats: int, warmup: int = 1, seed: int = 0
) -> dict:
    """All numbers for one model (the caller sets the torch thread count)."""
    torch.manual_seed(seed)
    model = spec.build().eval()
    flops, per_module = count_flops(model, _clip(spec, 1, seed))
    latency = []
    for bs in batch_sizes:
        runs = time_model(model, _clip(spec, bs, seed), repeats, warmup)
        med = statistics.median(runs)
        latency.append(
            {
                "batch_size": bs,
                "repeats": repeats,
                "warmup": warmup,
                "batch_s": runs,
                "median_batch_s": med,
                "median_ms_per_clip": 1000.0 * med / bs,
                "min_ms_per_clip": 1000.0 * min(runs) / bs,
            }
        )
        log.info("%s %s batch %d: %.1f ms/clip", spec.size, spec.variant, bs, 1000.0 * med / bs)
    b = spec.cfg.backbone
    return {
        "size": spec.size,
        "variant": spec.variant,
        "stage": spec.cfg.stage,
        "num_frames": spec.num_frames,
        "image_size": list(spec.image_size),
        "heatmap_size": list(spec.heatmap_size),
        "token_grid": list(model.grid),
        "embed_dim": b.embed_dim,
        "depth": b.depth,
        "num_heads": b.num_heads,
        "stem_channels": b.stem_channels,
        "encoder": spec.cfg.encoder.enabled,
        **_params(model),
        "flops_per_clip": flops,
        "flops_by_module": per_module,
        "cdist_flops_estimate": cdist_flops_estimate(spec, model.grid[0] * model.grid[1]),
        "latency": latency,
        "torch": torch.__version__,
    }


def run_model_benchmark(
    sizes: Sequence[str] = SIZES,
    variants: Sequence[str] = VARIANTS,
    batch_sizes: Sequence[int] = (1, 8),
    repeats: int = 5,
    warmup: int = 1,
    threads: int = 2,
    base_batch_sizes: Sequence[int] | None = (1,),
    base_repeats: int | None = None,
    specs: Sequence[ModelSpec] | None = None,
) -> list[dict]:
    """Measure every size x variant (or the given ``specs``) with ``threads`` torch threads.

    ``base_batch_sizes`` / ``base_repeats`` override the batch sizes / repeats for the ViT-B models
    (slow on a small CPU); None keeps the common setting.
    """
    if repeats < 1 or (base_repeats is not None and base_repeats < 1) or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got {repeats}, {base_repeats}, {warmup}")
    if specs is None:
        specs = [model_spec(s, v) for s in sizes for v in variants]
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        results = []
        for spec in specs:
            big = spec.size == "base"
            bss = base_batch_sizes if big and base_batch_sizes is not None else batch_sizes
            reps = base_repeats if big and base_repeats is not None else repeats
            r = measure(spec, bss, reps, warmup)
            r["threads"] = threads
            results.append(r)
    finally:
        torch.set_num_threads(old_threads)
    return results


def _fmt_params(n: int) -> str:
    return f"{n / 1e6:.2f} M"


def markdown_table(results: Sequence[dict], batch_sizes: Sequence[int] = (1, 8)) -> str:
    """One row per model: parameters, GFLOPs per clip, median (min) ms per clip at each batch size."""
    head = ["size", "variant", "T", "input (WxH)", "params total", "trainable", "GFLOPs/clip"]
    head += [f"ms/clip, batch {bs}: median (min)" for bs in batch_sizes]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in results:
        by_bs = {x["batch_size"]: x for x in r["latency"]}
        cells = [
            r["size"],
            r["variant"],
            str(r["num_frames"]),
            f"{r['image_size'][0]}x{r['image_size'][1]}",
            _fmt_params(r["params_total"]),
            _fmt_params(r["params_trainable"]),
            f"{r['flops_per_clip'] / 1e9:.2f}",
        ]
        for bs in batch_sizes:
            x = by_bs.get(bs)
            cells.append("-" if x is None else f"{x['median_ms_per_clip']:.1f} ({x['min_ms_per_clip']:.1f})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


__all__ = [
    "SIZES",
    "VARIANTS",
    "ModelSpec",
    "cdist_flops_estimate",
    "count_flops",
    "markdown_table",
    "measure",
    "model_spec",
    "run_model_benchmark",
    "time_model",
]
