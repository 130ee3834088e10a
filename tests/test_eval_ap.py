"""VOC all-point AP and the tie order, on lists worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cmpose.eval.ap import joint_ap, rank_descending


def test_rank_is_stable_descending_with_nan_first():
    scores = np.array([0.5, 0.9, 0.5, np.nan, 0.1, 0.9, np.nan])
    assert rank_descending(scores).tolist() == [3, 6, 1, 5, 0, 2, 4]


def test_ap_by_hand():
    # Sorted: TP, FP, TP; 4 GT. Precision 1, 1/2, 2/3; recall 1/4, 1/4, 2/4.
    # Envelope at the recall steps: 1 at 1/4, 2/3 at 2/4; nothing past the last recall reached.
    ap, precision, recall = joint_ap(np.array([0.9, 0.8, 0.7]), np.array([True, False, True]), 4)
    assert ap == pytest.approx(100 * (0.25 * 1 + 0.25 * 2 / 3), abs=1e-12)
    assert precision == pytest.approx(100 * 2 / 3, abs=1e-12)
    assert recall == 50.0


def test_ap_ranks_by_score_not_input_order():
    ap, _, _ = joint_ap(np.array([0.7, 0.8, 0.9]), np.array([True, False, True]), 4)
    assert ap == pytest.approx(100 * (0.25 * 1 + 0.25 * 2 / 3), abs=1e-12)


def test_ties_keep_input_order():
    # Tied: FP listed first ranks first. Precision 0, 1/2; recall 0, 1/1 -> envelope 1/2.
    assert joint_ap(np.array([1.0, 1.0]), np.array([False, True]), 1)[0] == 50.0
    assert joint_ap(np.array([1.0, 1.0]), np.array([True, False]), 1)[0] == 100.0


def test_no_predictions_and_no_gt():
    assert joint_ap(np.zeros(0), np.zeros(0, dtype=bool), 5) == (0.0, 0.0, 0.0)
    ap, precision, recall = joint_ap(np.array([0.3]), np.array([False]), 0)
    assert math.isnan(ap) and math.isnan(recall) and precision == 0.0
