"""Checkpoints in, our key layout out: official ViTPose, MAE (timm names), mmpretrain / mmpose 1.x, ours.

The pattern is timm's ``checkpoint_filter_fn`` (a pure dict -> dict map) plus nanoGPT's
``from_pretrained`` (explicit names, asserted shapes, nothing dropped silently):
``read_state_dict`` -> ``map_vitpose_state_dict`` (detects the format) -> ``load_into``;
``load_pretrained`` does all three. Our layout: ``backbone.*`` (``cmpose.models.vit.ViT``, whose
``pos_embed`` is (1, N, C) without a class-token slot), ``keypoint_head.*`` (``HeatmapHead``), plus
the CM-Pose-only modules.

``head="keep"`` is the default because ViTPose predicts the 17 COCO joints and PoseTrack has 17
too, but with head_bottom / head_top instead of the eyes, so no row permutation is exact; video
pose work (e.g. DCPose starting from COCO-trained weights) keeps the 17-channel final layer as a
warm start and fine-tunes it. ``head="drop"`` re-initialises ``keypoint_head.final_layer``.

Submodules: ``common`` (``CheckpointError``, the ``Format`` / ``HeadMode`` / ``Grid`` types,
``FORMATS``), ``files`` (``read_state_dict``, ``read_file``, ``state_dict_of``, ``read_metadata``,
``save_state_dict``),
``pos_embed`` (``infer_grid``, ``resample_pos_embed``, class-slot detection), ``formats``
(``detect_format``, ``map_vitpose_state_dict``, ``file_metadata``, ``MapNotes``), ``load``
(``load_into``, ``load_pretrained``, ``fit_problems``, ``format_allowances``, ``LoadReport``).
Import from the package: every public name is re-exported here. docs/checkpoints.md lists the
files that import and what is dropped.
"""

from cmpose.checkpoint.common import FORMATS, CheckpointError, Format, Grid, HeadMode
from cmpose.checkpoint.files import (
    TORCH_SUFFIXES,
    read_file,
    read_metadata,
    read_state_dict,
    save_state_dict,
    state_dict_of,
)
from cmpose.checkpoint.formats import MapNotes, detect_format, file_metadata, map_vitpose_state_dict
from cmpose.checkpoint.load import LoadReport, fit_problems, format_allowances, load_into, load_pretrained
from cmpose.checkpoint.pos_embed import infer_grid, resample_pos_embed

__all__ = [
    "FORMATS",
    "TORCH_SUFFIXES",
    "CheckpointError",
    "Format",
    "Grid",
    "HeadMode",
    "LoadReport",
    "MapNotes",
    "detect_format",
    "file_metadata",
    "fit_problems",
    "format_allowances",
    "infer_grid",
    "load_into",
    "load_pretrained",
    "map_vitpose_state_dict",
    "read_file",
    "read_metadata",
    "read_state_dict",
    "resample_pos_embed",
    "save_state_dict",
    "state_dict_of",
]
