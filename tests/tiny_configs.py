"""The tiny model used by the engine, demo, ablation and distributed tests (C = 32, one block each,
48x64 crops -> 12x16 heatmaps), and the demo-like experiment around it: one definition, so the
tests exercise the same model."""

from __future__ import annotations

TINY_CROP = {"image_size": [48, 64], "heatmap_size": [12, 16]}

TINY_MODEL = {
    "backbone": {"size": "tiny", "embed_dim": 32, "depth": 1, "num_heads": 2, "stem_channels": 8},
    "head": {"deconv_channels": [16, 16]},
    "encoder": {"depth": 1, "num_heads": 2, "keypoint_head_hidden": 32},
    "aux": {"decoder_hidden": 32},
    "fte": {"depth": 1, "num_heads": 2},
}


def tiny_experiment(stages: list[dict] | None = None, gap_fill: int = 0) -> dict:
    """An experiment dict of TINY_MODEL on a synthetic set (``data.root`` to be set): the demo's
    three stages one epoch each unless ``stages`` are given; detector boxes, no flip test,
    ``test.gap_fill.max_gap = gap_fill``."""
    return {
        "data": {
            "root": "unused",
            "val_detections": "detections/val_boxes.json",
            "batch_size": 4,
            "workers": 0,
            "crop": TINY_CROP,
        },
        "model": TINY_MODEL,
        "optim": {"lr": 1e-3, "layer_decay": None, "warmup_steps": 2, "schedule": "cosine"},
        "stages": stages
        or [
            {"name": "pretrain", "kind": "single", "epochs": 1},
            {"name": "mcl", "kind": "mcl", "epochs": 1, "lr": 1e-3},
            {"name": "fte", "kind": "fte", "epochs": 1, "lr": 5e-4},
        ],
        "run": {"val_every": 0, "log_every": 1, "amp": "off"},
        "test": {
            "boxes": "detections",
            "workers": 0,
            "batch_size": 8,
            "flip_test": False,
            "gap_fill": {"max_gap": gap_fill},
        },
    }
