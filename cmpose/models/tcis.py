"""Token Causal Importance Selection (TCIS), CM-Pose stage 2.

A visual token's importance is the attention that the J keypoint tokens pay to it in the last
encoder layer, averaged over heads and summed over keypoints, as in PPT's keypoint-guided token
pruning (Ma et al., "PPT: Token-Pruned Pose Transformer", ECCV 2022, built on TokenPose), here
only over the keypoints that the training data labels (method.md). The top-K
tokens are "causal" and kept verbatim; the rest are "non-causal" and go to the clustering of
:mod:`cmpose.models.token_cluster`.

Shapes: B batch, J keypoints, L visual tokens (T*N in CM-Pose), C channels, K kept tokens.
Indices are relative to the visual tokens only (no J offset), as the design notes ask.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "TokenSelection",
    "keep_count",
    "keypoint_hits",
    "keypoint_recall",
    "keypoint_token_index",
    "select_topk",
    "supervised_joints",
    "token_importance",
]


@dataclass(frozen=True)
class TokenSelection:
    """Causal / non-causal split of L visual tokens.

    Attributes:
        kept: (B, K, C) causal tokens, gathered from the input (gradient flows to it).
        kept_idx: (B, K) long positions of ``kept``, by descending score (ties: lower index first).
        rest: (B, L-K, C) non-causal tokens, gathered from the input.
        rest_idx: (B, L-K) long positions of ``rest``, in ascending order.
    """

    kept: Tensor
    kept_idx: Tensor
    rest: Tensor
    rest_idx: Tensor


def token_importance(attn: Tensor, num_keypoints: int, joints: Tensor | None = None) -> Tensor:
    """Importance of each visual token: keypoint-query attention over it, mean over heads, sum over J.

    Args:
        attn: (B, heads, J + L, J + L) softmax attention of a layer whose sequence is
            [J keypoint tokens ; L visual tokens], or only its keypoint rows (B, heads, J, J + L).
        num_keypoints: J >= 1.
        joints: (J,) bool, the joints to sum over (None: all). A joint the training data never
            labels has an unsupervised keypoint token whose attention is noise (PoseTrack's ears);
            :func:`supervised_joints` finds them.

    Returns:
        (B, L) importance. Plain arithmetic, so gradient flows back to ``attn``; the selection that
        uses it (:func:`select_topk`) is what is gradient-free.
    """
    J = num_keypoints
    if attn.ndim != 4:
        raise ValueError(f"attn must be (B, heads, Q, J + L), got shape {tuple(attn.shape)}")
    if J < 1 or attn.shape[2] < J or attn.shape[3] < J:
        raise ValueError(f"num_keypoints {J} does not fit attention of shape {tuple(attn.shape)}")
    # PPT: rows = keypoint queries, columns after the first J = visual keys.
    kp_attn = attn[:, :, :J, J:].mean(dim=1)  # (B, J, L)
    if joints is None:
        return kp_attn.sum(dim=1)  # (B, L)
    if joints.shape != (J,):
        raise ValueError(f"joints must be a (J,) = ({J},) mask, got shape {tuple(joints.shape)}")
    # A weighted sum rather than boolean indexing: no data-dependent shape, no host sync.
    return (kp_attn * joints.to(kp_attn.dtype)[:, None]).sum(dim=1)


def supervised_joints(
    keypoints: Iterable[np.ndarray], num_joints: int, flip_index: Sequence[int] | None = None
) -> Tensor:
    """The joints that a training set labels: True where any person has the joint annotated.

    Args:
        keypoints: one (J, 3) array (x, y, visibility) per person, e.g. ``PersonRecord.keypoints``;
            a joint is labelled when its visibility is > 0 (the dataset's target weight rule).
        num_joints: J.
        flip_index: with flip augmentation, joint j is also trained from its mirror
            ``flip_index[j]`` (the left ear's target comes from the right ear after a flip).

    Returns:
        (J,) bool; all False for an empty set.
    """
    labelled = np.zeros(num_joints, dtype=bool)
    for kps in keypoints:
        kps = np.asarray(kps)
        if kps.shape[0] != num_joints:
            raise ValueError(f"a person has {kps.shape[0]} joints, expected {num_joints}")
        labelled |= kps[:, 2] > 0
    if flip_index is not None:
        labelled = labelled | labelled[list(flip_index)]
    return torch.from_numpy(labelled)


def select_topk(tokens: Tensor, scores: Tensor, k: int) -> TokenSelection:
    """Split tokens into the top-k by score (kept) and the rest.

    The indices are computed from detached scores (the hard choice has no gradient, as in PPT);
    ``kept`` and ``rest`` are gathered from ``tokens``, so gradient reaches the tokens.

    Args:
        tokens: (B, L, C) visual tokens.
        scores: (B, L) importance, e.g. from :func:`token_importance`.
        k: Number of tokens to keep, 0 <= k <= L.

    Returns:
        A :class:`TokenSelection`; ``kept_idx`` and ``rest_idx`` together are a partition of range(L).
    """
    if tokens.ndim != 3 or scores.shape != tokens.shape[:2]:
        raise ValueError(
            f"expected tokens (B, L, C) and scores (B, L), got {tuple(tokens.shape)} and "
            f"{tuple(scores.shape)}"
        )
    B, L, C = tokens.shape
    if not 0 <= k <= L:
        raise ValueError(f"k must be in [0, L] = [0, {L}], got k={k}")
    with torch.no_grad():
        # A stable descending sort keeps equal scores in index order, unlike topk, whose tie order
        # is unspecified (and differs between CPU and CUDA).
        order = torch.sort(scores.detach(), dim=-1, descending=True, stable=True).indices  # (B, L)
        kept_idx = order[:, :k]  # (B, K)
        rest_idx = order[:, k:].sort(dim=-1).values  # (B, L-K), grid order helps the un-merge step
    kept = tokens.gather(1, kept_idx[:, :, None].expand(B, k, C))  # (B, K, C)
    rest = tokens.gather(1, rest_idx[:, :, None].expand(B, L - k, C))  # (B, L-K, C)
    return TokenSelection(kept=kept, kept_idx=kept_idx, rest=rest, rest_idx=rest_idx)


def keep_count(num_tokens: int, keep_ratio: float) -> int:
    """Number of causal tokens ``K = ceil(keep_ratio * num_tokens)``, at least 1 when the ratio is > 0.

    Args:
        num_tokens: L >= 0 visual tokens.
        keep_ratio: Share kept, in [0, 1] (CM-Pose default 0.5; PPT uses 0.7 per pruning layer).

    Returns:
        K in [0, L]; 0 only when keep_ratio == 0 or L == 0.
    """
    if num_tokens < 0:
        raise ValueError(f"num_tokens must be >= 0, got {num_tokens}")
    if not 0.0 <= keep_ratio <= 1.0:
        raise ValueError(f"keep_ratio must be in [0, 1], got {keep_ratio}")
    if keep_ratio == 0.0 or num_tokens == 0:
        return 0
    # Round first so that float noise (0.7 * 10 = 7.000000000000001) does not keep an extra token.
    return min(num_tokens, max(1, math.ceil(round(keep_ratio * num_tokens, 9))))


def keypoint_token_index(
    keypoints_xy: Tensor,
    image_size: Sequence[int],
    grid: Sequence[int],
    frame: int,
    tokens_per_frame: int,
) -> Tensor:
    """Flat visual-token index of the grid cell that contains each keypoint.

    Pixel convention of :mod:`cmpose.ops.geometry`: pixel i covers [i - 0.5, i + 0.5], so a grid of
    Wp columns over W pixels puts x in column ``floor((x + 0.5) * Wp / W)``. Points outside the crop
    are clamped to the border cell. Non-finite coordinates (unlabelled joints) map to cell 0; mask
    them with ``valid`` downstream.

    Args:
        keypoints_xy: (B, J, 2) keypoint (x, y) in crop pixels.
        image_size: Crop (W, H) in pixels.
        grid: Token grid (Hp, Wp).
        frame: Index of the frame within the clip; its tokens start at ``frame * tokens_per_frame``.
        tokens_per_frame: N >= Hp * Wp.

    Returns:
        (B, J) long indices into the L = T * N visual tokens.
    """
    W, H = image_size
    Hp, Wp = grid
    if min(W, H, Hp, Wp) < 1 or frame < 0 or tokens_per_frame < Hp * Wp:
        raise ValueError(
            f"bad geometry: image_size={tuple(image_size)}, grid={tuple(grid)}, frame={frame}, "
            f"tokens_per_frame={tokens_per_frame}"
        )
    if keypoints_xy.ndim != 3 or keypoints_xy.shape[-1] < 2:
        raise ValueError(f"keypoints_xy must be (B, J, 2), got {tuple(keypoints_xy.shape)}")
    xy = torch.nan_to_num(keypoints_xy[..., :2].double(), nan=0.0, posinf=0.0, neginf=0.0)
    col = torch.floor((xy[..., 0] + 0.5) * (Wp / W)).clamp(0, Wp - 1).long()  # (B, J)
    row = torch.floor((xy[..., 1] + 0.5) * (Hp / H)).clamp(0, Hp - 1).long()  # (B, J)
    return frame * tokens_per_frame + row * Wp + col


def keypoint_hits(kept_idx: Tensor, keypoint_token_idx: Tensor) -> Tensor:
    """Whether each keypoint's token was selected.

    Args:
        kept_idx: (B, K) long selected token indices.
        keypoint_token_idx: (B, J) long token index of each keypoint (:func:`keypoint_token_index`).

    Returns:
        (B, J) bool.
    """
    return (keypoint_token_idx[:, :, None] == kept_idx[:, None, :]).any(dim=-1)


def keypoint_recall(kept_idx: Tensor, keypoint_token_idx: Tensor, valid: Tensor) -> float:
    """Share of valid GT keypoints whose token is among the kept (causal) tokens.

    With random selection this is about the keep ratio; TCIS should be far above it (the method's
    interpretability claim). To aggregate over a data set, sum :func:`keypoint_hits` over valid joints
    and divide once, rather than averaging per-batch recalls.

    Args:
        kept_idx: (B, K) long selected token indices.
        keypoint_token_idx: (B, J) long token index of each keypoint.
        valid: (B, J) bool, labelled keypoints.

    Returns:
        Recall in [0, 1], or NaN when no keypoint is valid.
    """
    valid = valid.bool()
    total = int(valid.sum())
    if total == 0:
        return float("nan")
    return int((keypoint_hits(kept_idx, keypoint_token_idx) & valid).sum()) / total
