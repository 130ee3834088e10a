"""`cmpose bench infer`: the compared paths do the same work, and the report holds together."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from cmpose.bench.infer_speed import clip_index, measure_size, model_variants, synthetic_stream
from cmpose.bench.model import model_spec
from cmpose.cli.main import main


def test_clip_index_keyframe_in_middle_and_clamped():
    idx = clip_index(num_frames=4, people=2, num_clip_frames=3, step=1)
    assert idx.shape == (8, 3)
    # person-frame r = t * P + p is its own clip's keyframe
    assert torch.equal(idx[:, 1], torch.arange(8))
    # first frame: the missing previous frame is the keyframe itself (as the runner clamps)
    assert idx[0].tolist() == [0, 0, 2] and idx[7].tolist() == [5, 7, 7]
    # a clip never mixes people
    assert torch.equal(idx % 2, (torch.arange(8) % 2)[:, None].expand(8, 3))


def test_synthetic_stream_deterministic_and_inside_frame():
    a, b = synthetic_stream(3, 5, seed=1), synthetic_stream(3, 5, seed=1)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b, strict=True))
    for _, frame, boxes in a:
        H, W = frame.shape[:2]
        assert len(boxes) == 5 and sorted(p.track_id for p in boxes) == list(range(5))
        for p in boxes:
            x, y, w, h = p.box
            assert x >= 0 and y >= 0 and x + w <= W and y + h <= H


@pytest.mark.parametrize("flip", [False, True])
def test_reuse_gives_the_heatmaps_of_recompute(flip):
    # The benchmark's claim "token reuse does the same work cheaper" needs the same output.
    torch.manual_seed(0)
    spec = model_spec("tiny", "stage2")
    model = spec.build().eval()
    W, H = spec.image_size
    crops = torch.randn(3 * 2, 3, H, W, generator=torch.Generator().manual_seed(0))
    recompute, reuse = model_variants(model, crops, clip_index(3, 2, 3, 1), batch_size=4, flip=flip)
    a, b = recompute(), reuse()
    assert a.shape == (6, 17, spec.heatmap_size[1], spec.heatmap_size[0])
    assert torch.allclose(a, b, atol=1e-5)


def test_measure_and_cli_report(tmp_path):
    r = measure_size("tiny", people=2, num_frames=3, repeats=1, warmup=0)
    med = r["median_s"]
    assert set(med) == {"single_e2e", "cmpose_e2e", "recompute", "reuse"}
    assert r["frames_per_s"]["cmpose_e2e"] == pytest.approx(3 / med["cmpose_e2e"])
    assert r["ms_per_person_frame"]["single_e2e"] == pytest.approx(1000 * med["single_e2e"] / 6)
    assert r["cmpose_vs_single"] == pytest.approx(med["cmpose_e2e"] / med["single_e2e"])
    out = tmp_path / "infer.json"
    argv = ["bench", "infer", "--sizes", "tiny", "--people", "1", "--frames", "2", "--repeats", "1"]
    assert main([*argv, "--warmup", "0", "--out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [(x["size"], x["people"], x["frames"]) for x in data["results"]] == [("tiny", 1, 2)]
