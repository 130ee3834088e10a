"""The tiny model used by the engine, demo and distributed tests (C = 32, one block each, 48x64
crops -> 12x16 heatmaps): one definition, so the tests exercise the same model."""

from __future__ import annotations

TINY_CROP = {"image_size": [48, 64], "heatmap_size": [12, 16]}

TINY_MODEL = {
    "backbone": {"size": "tiny", "embed_dim": 32, "depth": 1, "num_heads": 2, "stem_channels": 8},
    "head": {"deconv_channels": [16, 16]},
    "encoder": {"depth": 1, "num_heads": 2, "keypoint_head_hidden": 32},
    "aux": {"decoder_hidden": 32},
    "fte": {"depth": 1, "num_heads": 2},
}
