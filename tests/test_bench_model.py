"""The model benchmark's code path (cmpose.bench.model, ``cmpose bench model``) on tiny models with
one repeat: the JSON fields and their consistency. No timing assertions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from cmpose.bench.model import (
    ModelSpec,
    cdist_flops_estimate,
    count_flops,
    markdown_table,
    model_spec,
    run_model_benchmark,
)
from cmpose.cli.main import main
from cmpose.models.config import (
    AuxConfig,
    BackboneConfig,
    EncoderConfig,
    FTEConfig,
    HeadConfig,
    ModelConfig,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


LATENCY_KEYS = {
    "batch_size",
    "repeats",
    "warmup",
    "batch_s",
    "median_batch_s",
    "median_ms_per_clip",
    "min_ms_per_clip",
}
RESULT_KEYS = {
    "size",
    "variant",
    "stage",
    "num_frames",
    "image_size",
    "heatmap_size",
    "token_grid",
    "embed_dim",
    "depth",
    "num_heads",
    "stem_channels",
    "encoder",
    "params_total",
    "params_trainable",
    "params_inference",
    "flops_per_clip",
    "flops_by_module",
    "cdist_flops_estimate",
    "latency",
    "threads",
    "torch",
}


def _micro_spec(variant: str) -> ModelSpec:
    single = variant == "single"
    cfg = ModelConfig(
        stage=2 if variant == "stage2" else 1,
        backbone=BackboneConfig(size="tiny", embed_dim=32, depth=2, num_heads=2, stem_channels=8),
        head=HeadConfig(deconv_channels=(16, 16)),
        encoder=EncoderConfig(enabled=not single, depth=2, num_heads=2, keypoint_head_hidden=32),
        aux=AuxConfig(decoder_hidden=32),
        fte=FTEConfig(num_heads=2),
    )
    return ModelSpec("micro", variant, cfg, (48, 64), (12, 16), 1 if single else 3)


def _check_result(r: dict, batch_sizes: list[int]) -> None:
    assert set(r) == RESULT_KEYS
    assert r["params_total"] >= r["params_inference"] > 0
    assert r["params_total"] >= r["params_trainable"] > 0
    assert r["flops_per_clip"] > 0
    assert sum(r["flops_by_module"].values()) == r["flops_per_clip"]
    assert [x["batch_size"] for x in r["latency"]] == batch_sizes
    for x in r["latency"]:
        assert set(x) == LATENCY_KEYS
        assert len(x["batch_s"]) == x["repeats"] == 1
        assert x["median_batch_s"] > 0
        assert math.isclose(x["median_ms_per_clip"], 1000 * x["median_batch_s"] / x["batch_size"])
        assert x["min_ms_per_clip"] <= x["median_ms_per_clip"]


def test_run_model_benchmark_fields_and_consistency() -> None:
    threads = torch.get_num_threads()
    specs = [_micro_spec(v) for v in ("single", "stage1", "stage2")]
    results = run_model_benchmark(specs=specs, batch_sizes=(1, 2), repeats=1, warmup=0, threads=1)
    assert torch.get_num_threads() == threads  # restored
    single, s1, s2 = results
    for r in results:
        _check_result(r, [1, 2])
        assert r["threads"] == 1
    assert single["num_frames"] == 1 and not single["encoder"]
    assert s1["num_frames"] == s2["num_frames"] == 3
    # The baseline has no aux branches; stage 1 trains them; stage 2 freezes them.
    assert single["params_total"] == single["params_trainable"] == single["params_inference"]
    assert s1["params_total"] == s1["params_trainable"] > s1["params_inference"]
    assert s2["params_trainable"] == s2["params_total"] - (s1["params_total"] - s1["params_inference"])
    assert s2["params_total"] > s1["params_total"]
    # Three frames cost more than one; FTE adds to stage 1; the encoder's attention is counted.
    assert s2["flops_per_clip"] > s1["flops_per_clip"] > 3 * single["flops_by_module"]["backbone"]
    assert s1["flops_by_module"]["encoder"] > 0 and "fte" in s2["flops_by_module"]
    assert s1["cdist_flops_estimate"] == 0 and s2["cdist_flops_estimate"] > 0
    table = markdown_table(results, [1, 2])
    assert table.count("\n") == 2 + len(results) - 1
    assert "| micro | stage2 | 3 | 48x64 |" in table


def test_count_flops_counts_attention_on_cpu() -> None:
    """SDPA's CPU kernel is unknown to FlopCounterMode; the benchmark counts it through the math
    backend. The difference to a plain count is exactly QK^T and AV (2 L^2 C FLOPs each) of every
    attention that went through SDPA: 2 backbone blocks x 3 frames (L = 12) and both encoder blocks
    (L = 17 + 36; the last one's extra keypoint rows for TCIS are a plain matmul, counted either way)."""
    spec = _micro_spec("stage1")
    torch.manual_seed(0)
    model = spec.build().eval()
    clip = torch.randn(1, 3, 3, 64, 48)
    flops, per_module = count_flops(model, clip)
    plain = FlopCounterMode(display=False)
    with torch.no_grad(), plain:
        model(clip)
    C = 32
    backbone_attn = 2 * 3 * (2 * 2 * 12 * 12 * C)
    encoder_attn = 2 * (2 * 2 * 53 * 53 * C)
    assert flops - plain.get_total_flops() == backbone_attn + encoder_attn
    assert set(per_module) == {"backbone", "encoder", "keypoint_head", "keypoint_token_head"}


def test_rejects_zero_repeats() -> None:
    with pytest.raises(ValueError, match="repeats"):
        run_model_benchmark(specs=[_micro_spec("single")], repeats=0)


def test_cdist_estimate_matches_rest_count() -> None:
    spec = _micro_spec("stage2")
    L = 3 * 12
    rest = L - math.ceil(0.5 * L)
    assert cdist_flops_estimate(spec, 12) == 3 * rest * rest * 32


@pytest.mark.parametrize("size", ["tiny", "small", "base"])
def test_model_specs_are_consistent(size: str) -> None:
    """The benchmark's configs build valid models (without building base's weights twice)."""
    for variant in ("single", "stage1", "stage2"):
        spec = model_spec(size, variant)
        assert spec.num_frames == (1 if variant == "single" else 3)
        assert spec.cfg.encoder.enabled == (variant != "single")
        assert spec.cfg.stage == (2 if variant == "stage2" else 1)
        if size == "tiny":
            assert spec.image_size == (96, 128) and spec.heatmap_size == (24, 32)
            assert spec.cfg.backbone.stem_channels == 32
        else:
            assert spec.image_size == (192, 256) and spec.heatmap_size == (48, 64)
            assert spec.cfg.backbone.stem_channels == 0
            assert spec.cfg.encoder.num_heads == spec.cfg.backbone.num_heads == spec.cfg.fte.num_heads
    with pytest.raises(ValueError):
        model_spec(size, "stage3")


def test_cli_bench_model_writes_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.json"
    threads = torch.get_num_threads()
    rc = main(
        [
            "bench",
            "model",
            "--sizes",
            "tiny",
            "--variants",
            "single",
            "stage2",
            "--batch-sizes",
            "1",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--threads",
            "1",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    assert torch.get_num_threads() == threads
    data = json.loads(out.read_text())
    assert set(data) == {"date", "results"}
    assert [(r["size"], r["variant"]) for r in data["results"]] == [("tiny", "single"), ("tiny", "stage2")]
    for r in data["results"]:
        _check_result(r, [1])
        assert r["image_size"] == [96, 128] and r["token_grid"] == [8, 6]
    printed = capsys.readouterr().out
    assert "| tiny | single | 1 | 96x128 |" in printed and "ms/clip, batch 1: median (min)" in printed
