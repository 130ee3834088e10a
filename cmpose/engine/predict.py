"""From model outputs to people in image pixels: flip test, decoding, crop -> image mapping.

Shapes: B people (clips), T frames, J joints, Hh x Wh heatmaps, N tokens per frame, C channels.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from cmpose.keypoints import FLIP_INDEX
from cmpose.ops.heatmap import HeatmapCodec, flip_back


@torch.no_grad()
def predict_tokens(model: Any, tokens: Tensor, flip_tokens: Tensor | None = None) -> tuple[Tensor, dict]:
    """Heatmaps from backbone tokens, with the flip test when ``flip_tokens`` are given.

    Args:
        model: a ``CMPose`` in eval mode.
        tokens: (B, T, N, C) backbone tokens of the clips.
        flip_tokens: (B, T, N, C) tokens of the horizontally mirrored clips, or None.

    Returns:
        heatmaps (B, J, Hh, Wh) float32 (the mean of both predictions with the flip test) and the
        un-flipped pass's output dict (importance and cluster maps for pictures).
    """
    out = model.forward_tokens(tokens)
    heatmaps = out["heatmaps"].float()
    if flip_tokens is not None:
        flipped = model.forward_tokens(flip_tokens)["heatmaps"].float()
        # A model with another joint order (COCO's, ViTPose weights: cmpose.infer.weights) carries
        # its own left/right pairs; cmpose models use PoseTrack18's.
        heatmaps = 0.5 * (heatmaps + flip_back(flipped, getattr(model, "flip_index", FLIP_INDEX)))
    return heatmaps, out


@torch.no_grad()
def predict_clips(model: Any, clips: Tensor, flip_test: bool) -> tuple[Tensor, dict]:
    """clips (B, T, 3, H, W) -> heatmaps (B, J, Hh, Wh) and the output dict (see predict_tokens).

    The flipped clips go through the backbone in the same batch as the originals (one larger
    matmul is faster than two on both CPU and GPU)."""
    B, T = clips.shape[:2]
    frames = clips.flatten(0, 1)
    if flip_test:
        frames = torch.cat([frames, frames.flip(-1)])
    tokens = model.encode_frames(frames)
    tokens = tokens.view(-1, T, *tokens.shape[1:])
    if flip_test:
        return predict_tokens(model, tokens[:B], tokens[B:])
    return predict_tokens(model, tokens)


def decode_to_image(
    codec: HeatmapCodec, heatmaps: Tensor | np.ndarray, crop_to_image: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Decode heatmaps and map the keypoints from crop to image pixels.

    Args:
        heatmaps: (B, J, Hh, Wh).
        crop_to_image: (B, 2, 3) affine of each crop (the dataset's meta ``crop_to_image``).

    Returns:
        keypoints (B, J, 2) image pixels and scores (B, J) (heatmap maxima).
    """
    crop_xy, scores = codec.decode(heatmaps)  # (B, J, 2), (B, J)
    m = np.asarray(crop_to_image, dtype=np.float64)
    xy = np.einsum("bjk,bik->bji", crop_xy, m[:, :, :2]) + m[:, None, :, 2]
    return xy, scores
