"""Tests of featherface_deploy.verify.metrics (the one AP of the project)."""

from __future__ import annotations

import numpy as np
import pytest

from featherface_deploy.verify.metrics import ranked_average_precision, voc_average_precision


def loop_average_precision(scores, hits, num_truth):
    """The INT8 search's former AP, written out: all-point area under the precision envelope."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    recall, precision, found = [0.0], [1.0], 0
    for rank, i in enumerate(order, start=1):
        found += bool(hits[i])
        recall.append(found / num_truth)
        precision.append(found / rank)
    recall.append(1.0)
    precision.append(0.0)
    for i in range(len(precision) - 2, -1, -1):
        precision[i] = max(precision[i], precision[i + 1])
    return sum((recall[i + 1] - recall[i]) * precision[i + 1] for i in range(len(recall) - 1))


def test_voc_ap_of_a_hand_computed_curve():
    # Recall 0.5 at precision 1, then 1.0 at precision 2/3: area 0.5 * 1 + 0.5 * 2/3.
    assert voc_average_precision(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(5 / 6)


def test_voc_ap_ignores_nan_where_recall_does_not_change():
    # The WIDER curve has 0/0 precision at thresholds above every score; recall is 0 there.
    ap = voc_average_precision(np.array([0.0, 0.0, 0.5, 1.0]), np.array([np.nan, np.nan, 1.0, 0.5]))
    assert ap == pytest.approx(0.75)


def test_ranked_ap_ranks_by_score_and_counts_misses():
    scores = np.array([0.7, 0.9, 0.8])
    hits = np.array([True, True, False])
    assert ranked_average_precision(scores, hits, 2) == pytest.approx(5 / 6)
    assert ranked_average_precision(scores, hits, 4) == pytest.approx(5 / 12)
    assert ranked_average_precision(scores, np.ones(3, bool), 3) == 1.0


def test_ranked_ap_without_truth():
    assert ranked_average_precision(np.zeros(0), np.zeros(0, bool), 0) == 1.0
    assert ranked_average_precision(np.array([0.5]), np.array([False]), 0) == 0.0
    assert ranked_average_precision(np.zeros(0), np.zeros(0, bool), 3) == 0.0


@pytest.mark.parametrize("seed", range(5))
def test_ranked_ap_matches_the_written_out_loop(seed):
    rng = np.random.default_rng(seed)
    scores = rng.permutation(200) / 200.0  # distinct, so the loop's sort order is the same
    hits = rng.random(200) < 0.6
    num_truth = int(hits.sum()) + 15
    assert ranked_average_precision(scores, hits, num_truth) == pytest.approx(
        loop_average_precision(scores, hits, num_truth), abs=1e-12)
