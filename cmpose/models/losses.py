"""Losses: heatmap losses (MSE or softmax cross-entropy) and the token regression of the
auxiliary tasks. Shapes: B batch, J joints, Hh x Wh heatmap, L tokens, C channels."""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor


def heatmap_mse(pred: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """ViTPose's ``JointsMSELoss`` with target weights: the mean over joints and pixels of
    (w * (pred - target))^2 (ViTPose / mmpose 0.x drop the 0.5 factor of the original HRNet code).

    Args:
        pred, target: (B, J, Hh, Wh); weight: (B, J) (0 = joint not annotated).
    """
    w = weight[:, :, None, None]
    return ((pred - target) * w).pow(2).mean()


def heatmap_softmax_ce(logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Per-joint softmax cross-entropy against the Gaussian target normalised to sum 1,
    averaged over the annotated joints (weight > 0) of the batch.

    Args:
        logits, target: (B, J, Hh, Wh); weight: (B, J).
    """
    logp = F.log_softmax(logits.flatten(2).float(), dim=-1)  # (B, J, Hh*Wh)
    t = target.flatten(2).float()
    t = t / t.sum(-1, keepdim=True).clamp_min(1e-12)
    ce = -(t * logp).sum(-1)  # (B, J)
    w = weight.float()
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def softmax_heatmaps(logits: Tensor, sigma: float) -> Tensor:
    """Softmax over each heatmap, rescaled so a perfect prediction has a peak of about 1.

    A normalised Gaussian of std ``sigma`` peaks at 1 / (2 pi sigma^2); multiplying by 2 pi
    sigma^2 puts softmax outputs on the unit-peak scale of the MSE targets, so the decoder's
    maxima (the joint confidences used by AP and rescoring) mean the same for both losses.
    """
    B, J, H, W = logits.shape
    prob = F.softmax(logits.flatten(2).float(), dim=-1).view(B, J, H, W)
    return prob * (2.0 * math.pi * sigma * sigma)


def heatmap_loss(kind: str, logits: Tensor, target: Tensor, weight: Tensor) -> Tensor:
    """Dispatch on the configured loss kind (``mse`` or ``softmax_ce``)."""
    if kind == "mse":
        return heatmap_mse(logits.float(), target, weight)
    if kind == "softmax_ce":
        return heatmap_softmax_ce(logits, target, weight)
    raise ValueError(f"unknown heatmap loss {kind!r}; expected 'mse' or 'softmax_ce'")


def normalized_tokens(tokens: Tensor) -> Tensor:
    """Each token standardised over its C channels (zero mean, unit variance, no affine), in float32.

    The regression target of the auxiliary tasks, as MAE's ``norm_pix_loss`` standardises each
    target patch: predicting zeros then costs exactly 1 whatever the backbone's feature scale
    (ViTPose's ``last_norm`` has learned gains), so the reconstruction terms have one scale for
    every backbone.

    Args:
        tokens: (..., C).
    """
    return F.layer_norm(tokens.float(), tokens.shape[-1:], eps=1e-6)


def masked_token_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error over the masked tokens, averaged per sample first (dinov2's
    ``masks_weight = 1 / num_masked``), so samples with more masked tokens do not dominate.

    Args:
        pred, target: (B, L, C); mask: (B, L) bool, True where the loss applies.
    """
    err = (pred.float() - target.float()).pow(2).mean(-1)  # (B, L)
    m = mask.float()
    per_sample = (err * m).sum(-1) / m.sum(-1).clamp_min(1.0)
    return per_sample.mean()


def heatmap_output(kind: str, logits: Tensor, sigma: float) -> Tensor:
    """Heatmaps on the unit-peak scale from the head's raw output (identity for MSE)."""
    return logits.float() if kind == "mse" else softmax_heatmaps(logits, sigma)
