"""Per-joint average precision as poseval computes it (eval_helpers.computeRPC and VOCap).

The one deliberate change: poseval orders detections with numpy's non-stable ``argsort`` reversed,
which makes tied scores come out in a machine- and version-dependent order. Here ties keep their
input order (a stable descending sort); with distinct scores the order, and so every number, is
the same as poseval's.
"""

from __future__ import annotations

import numpy as np


def rank_descending(scores: np.ndarray) -> np.ndarray:
    """Indices that sort ``scores`` (P,) from high to low, ties in input order.

    NaN ranks above everything, as in poseval, where the ascending sort puts NaN last and the
    reversal brings it to the front.
    """
    n = len(scores)
    # A stable ascending sort of the reversed array, read backwards, is a stable descending sort.
    rev = np.argsort(scores[::-1], kind="stable")
    return (n - 1 - rev)[::-1]


def joint_ap(scores: np.ndarray, labels: np.ndarray, n_gt: int) -> tuple[float, float, float]:
    """AP, final precision and final recall, in percent, for one joint.

    Args:
        scores: (P,) confidence of every predicted joint, pooled over frames in evaluation order.
        labels: (P,) bool, True where the prediction is a correct (PCKh-matched) joint.
        n_gt: number of annotated GT joints of this type.

    A joint without predictions gets 0 for all three; one with predictions but no GT gets NaN AP and
    recall (poseval divides 0 by 0 there).
    """
    if len(scores) == 0:
        return 0.0, 0.0, 0.0
    tp = np.cumsum(labels[rank_descending(scores)].astype(np.int64)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / np.float64(n_gt)
    precision = tp / np.arange(1, len(tp) + 1, dtype=np.float64)
    # VOC all-point interpolation: precision envelope from the right, area over recall steps. The
    # terms array is built exactly as poseval builds it (including the final zero-precision step)
    # so that np.sum adds the same numbers in the same order.
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    ap = np.sum((mrec[i] - mrec[i - 1]) * mpre[i])
    return float(ap * 100), float(precision[-1] * 100), float(recall[-1] * 100)
