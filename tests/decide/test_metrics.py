"""Detection metrics by hand: thresholds at an FPR, AUROC, rates, the disjoint-split TPR."""

import warnings

import numpy as np
import pytest

from scanner.decide.metrics import UndefinedMetricWarning, rates_at_threshold, roc_auc_score, threshold_at_fpr, tpr_at_fpr


def test_threshold_at_fpr_discrete():
    scores = np.array([0, 0, 0, 0.2, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert threshold_at_fpr(scores, 0.2) == (1.0, 0.2)
    assert threshold_at_fpr(scores, 0.35) == (0.8, 0.3)
    t, achieved = threshold_at_fpr(scores, 0.0)
    assert t > 1.0 and achieved == 0.0


def test_metrics_by_hand():
    benign = np.array([0.0, 0.2, 0.2, 0.6])
    poisoned = np.array([0.6, 1.0, 1.0, 0.4])
    # pairs (p > b) + 0.5 (p == b) over 16: 0.6 beats 3, ties 1 -> 3.5; 1.0 x2 beats 4 -> 8; 0.4 beats 3 -> 3
    assert roc_auc_score(np.r_[np.zeros(4), np.ones(4)], np.r_[benign, poisoned]) == pytest.approx(14.5 / 16)
    r = rates_at_threshold(benign, poisoned, 0.5)
    assert (r["tpr"], r["fpr"]) == (0.75, 0.25)
    assert r["f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 1))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert np.isnan(roc_auc_score(np.ones(3), np.array([0.1, 0.2, 0.3])))
    assert any(issubclass(w.category, UndefinedMetricWarning) for w in caught)


def test_tpr_at_fpr_fits_threshold_on_a_disjoint_split():
    benign = np.arange(100) / 100.0
    poisoned = np.full(50, 0.97)
    out = tpr_at_fpr(benign, poisoned, 0.05, seed=0)
    assert out["calibration_size"] == 50 and out["evaluated_benign"] == 50
    assert 0 <= out["fpr"] <= 0.2


def _exact_betabinomial_sf(k, m, a, b):
    """P(X >= k), X ~ BetaBinomial(m, a, b), as an exact rational (integer a, b)."""
    from fractions import Fraction
    from math import comb, factorial

    def beta(x, y):
        return Fraction(factorial(x - 1) * factorial(y - 1), factorial(x + y - 1))

    return sum(comb(m, i) * beta(i + a, m - i + b) for i in range(k, m + 1)) / beta(a, b)


@pytest.mark.parametrize("k, m, a, b", [(3, 10, 2, 30), (30, 40, 1, 199), (200, 300, 5, 95), (150, 400, 20, 381),
                                        (60, 60, 10, 190), (1, 5, 1, 1)])
def test_betabinomial_tail_matches_exact_rationals_far_below_1e_8(k, m, a, b):
    """Issue 27, point 6: the verdict's beta-binomial tail is right to 1e-9 relative where it is
    1e-30 or 1e-49 (scipy's 1 - cdf gave 0.0 or 5e-14 there)."""
    from scanner.decide.metrics import betabinomial_sf

    exact = float(_exact_betabinomial_sf(k, m, a, b))
    assert betabinomial_sf(k, m, a, b) == pytest.approx(exact, rel=1e-9, abs=0)


def test_verdict_reports_the_tiny_p_value_of_a_conformal_flag():
    from scanner.decide.verdict import model_verdict

    labels = np.r_[np.zeros(40, np.int64), np.ones(400, np.int64)]
    flagged = np.r_[np.ones(30, bool), np.zeros(10, bool), np.zeros(400, bool)]
    verdict = model_verdict(labels, flagged, expected_fpr=0.005, source="calibration",
                            reference_sizes={0: 199, 1: 199})
    (suspect,) = verdict.suspects
    assert suspect.p_value == pytest.approx(float(_exact_betabinomial_sf(30, 40, 1, 199)), rel=1e-9)
    assert "p = 1.34e-29" in suspect.text  # Holm: times the 2 classes
