"""PCKh and greedy person matching, frame by frame, as in poseval (eval_helpers.assignGTmulti).

All frames of a video are handled at once: people are padded to the largest count per frame (in
chunks, to bound memory), and the padding can never match anything.
"""

from __future__ import annotations

import numpy as np

# PCKh threshold, in head sizes (poseval evaluateAP: distThresh = 0.5, compared with <=).
PCKH_THRESHOLD = 0.5
# Largest (frames x predictions x GT people x joints) block handled in one go.
_MAX_BLOCK = 1 << 22


def _slots(frame: np.ndarray) -> np.ndarray:
    """Position of each person within its frame; ``frame`` is sorted."""
    return np.arange(len(frame)) - np.searchsorted(frame, frame, side="left")


def _pad(values: np.ndarray, frame: np.ndarray, slot: np.ndarray, f0: int, n: int, width: int) -> np.ndarray:
    out = np.zeros((n, width) + values.shape[1:], dtype=values.dtype)
    out[frame - f0, slot] = values
    return out


def _match_block(
    gxy: np.ndarray, gp: np.ndarray, head: np.ndarray, pxy: np.ndarray, pp: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Labels (C, Pm, J) and the matched GT slot of each prediction (C, Pm), -1 for none, for one
    padded block of C frames: GT gxy (C, Gm, J, 2), gp (C, Gm, J), head (C, Gm); predictions
    pxy (C, Pm, J, 2), pp (C, Pm, J)."""
    # Distance over head size; poseval leaves it at +inf where either joint is missing.
    dx = gxy[:, None, :, :, 0] - pxy[:, :, None, :, 0]
    dy = gxy[:, None, :, :, 1] - pxy[:, :, None, :, 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.sqrt(dx * dx + dy * dy) / head[:, None, :, None]
    match = pp[:, :, None, :] & gp[:, None, :, :] & (ratio <= PCKH_THRESHOLD)  # (C, Pm, Gm, J)
    # PCKh of each prediction against each GT person: correct joints over the GT's annotated joints.
    n_annotated = gp.sum(axis=2)
    correct = match.sum(axis=3).astype(np.float64)
    pck = np.where(n_annotated[:, None, :] > 0, correct / np.maximum(n_annotated, 1)[:, None, :], correct)
    # Each prediction keeps only its best GT person (first on ties); each GT person then takes the
    # best of the predictions that chose it (first on ties), if that PCKh is above 0. Losers are not
    # re-matched.
    best_gt = np.argmax(pck, axis=2)
    pck = np.where(np.arange(pck.shape[2]) == best_gt[..., None], pck, 0.0)
    best_pr = np.argmax(pck, axis=1)  # (C, Gm)
    won = np.max(pck, axis=1) > 0
    c, g = np.nonzero(won)
    p = best_pr[c, g]
    labels = np.zeros(pp.shape, dtype=bool)
    labels[c, p] = match[c, p, g]
    slot = np.full(pp.shape[:2], -1, dtype=np.int64)
    slot[c, p] = g
    return labels, slot


def match_people(
    gt_frame: np.ndarray,
    gt_xy: np.ndarray,
    gt_present: np.ndarray,
    gt_head: np.ndarray,
    pr_frame: np.ndarray,
    pr_xy: np.ndarray,
    pr_present: np.ndarray,
) -> np.ndarray:
    """Which predicted joints are correct, after matching predictions to GT people per frame.

    Args:
        gt_frame: (G,) frame of each GT person, sorted; gt_xy (G, J, 2); gt_present (G, J) bool;
            gt_head (G,) head size in pixels.
        pr_frame: (P,) frame of each prediction, sorted; pr_xy (P, J, 2); pr_present (P, J) bool.

    Returns:
        (P, J) bool: the joint is predicted, its person is matched, and it lies within
        PCKH_THRESHOLD head sizes of the same joint of the matched GT person. Every other predicted
        joint is a false positive.
    """
    return assign_people(gt_frame, gt_xy, gt_present, gt_head, pr_frame, pr_xy, pr_present)[0]


def assign_people(
    gt_frame: np.ndarray,
    gt_xy: np.ndarray,
    gt_present: np.ndarray,
    gt_head: np.ndarray,
    pr_frame: np.ndarray,
    pr_xy: np.ndarray,
    pr_present: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """``match_people``'s (P, J) labels, and (P,) the GT person (an index into the GT arrays) each
    prediction is matched to, -1 for an unmatched one (per-class mAP, cmpose.eval.joint_classes)."""
    labels = np.zeros(pr_present.shape, dtype=bool)
    matched = np.full(len(pr_frame), -1, dtype=np.int64)
    if len(gt_frame) == 0 or len(pr_frame) == 0:
        return labels, matched
    n_frames = int(max(gt_frame.max(), pr_frame.max())) + 1
    n_gt = np.bincount(gt_frame, minlength=n_frames)
    n_pr = np.bincount(pr_frame, minlength=n_frames)
    g_slot, p_slot = _slots(gt_frame), _slots(pr_frame)
    g_start = np.searchsorted(gt_frame, np.arange(n_frames + 1))
    p_start = np.searchsorted(pr_frame, np.arange(n_frames + 1))
    n_joints = pr_present.shape[1]
    f0 = 0
    while f0 < n_frames:
        # Grow the block while the padded size stays bounded (always at least one frame).
        f1, gm, pm = f0 + 1, n_gt[f0], n_pr[f0]
        while f1 < n_frames:
            gm2, pm2 = max(gm, n_gt[f1]), max(pm, n_pr[f1])
            if (f1 + 1 - f0) * gm2 * pm2 * n_joints > _MAX_BLOCK:
                break
            f1, gm, pm = f1 + 1, gm2, pm2
        if gm > 0 and pm > 0:
            gs, ps = slice(g_start[f0], g_start[f1]), slice(p_start[f0], p_start[f1])
            c = f1 - f0
            block, slot = _match_block(
                _pad(gt_xy[gs], gt_frame[gs], g_slot[gs], f0, c, gm),
                _pad(gt_present[gs], gt_frame[gs], g_slot[gs], f0, c, gm),
                _pad(gt_head[gs], gt_frame[gs], g_slot[gs], f0, c, gm),
                _pad(pr_xy[ps], pr_frame[ps], p_slot[ps], f0, c, pm),
                _pad(pr_present[ps], pr_frame[ps], p_slot[ps], f0, c, pm),
            )
            labels[ps] = block[pr_frame[ps] - f0, p_slot[ps]]
            g = slot[pr_frame[ps] - f0, p_slot[ps]]
            matched[ps] = np.where(g >= 0, g_start[pr_frame[ps]] + g, -1)
        f0 = f1
    return labels, matched
