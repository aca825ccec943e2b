"""Detection metrics and the paper's evaluation protocol.

Conventions follow scikit-learn: ``y_true`` is 1 for poisoned (the positive class), 0 for
benign; ``y_score`` is higher for more suspicious inputs; ``*_score`` means higher is better.
Degenerate input (only one class present) warns and returns NaN instead of raising.
The tail probabilities the model-level verdict tests with (binomial, beta-binomial) are here too.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np


def threshold_at_fpr(benign_scores: np.ndarray, fpr: float) -> tuple[float, float]:
    """Smallest threshold t with ``mean(benign >= t) <= fpr``, and the rate it achieves.

    Scores are discrete (SPC takes |S| + 1 values), so the achieved rate is usually below the
    target; it is returned so reports can state it.
    """
    scores = np.sort(np.asarray(benign_scores, dtype=np.float64))
    if scores.size == 0:
        raise ValueError("no benign scores to fit a threshold on")
    if not 0 <= fpr <= 1:
        raise ValueError(f"fpr must be in [0, 1], got {fpr}")
    n = scores.size
    candidates = np.unique(scores)
    # fraction of benign at or above each candidate
    rates = (n - np.searchsorted(scores, candidates, side="left")) / n
    ok = np.flatnonzero(rates <= fpr)
    if ok.size:
        i = ok[0]
        return float(candidates[i]), float(rates[i])
    # even the largest score is too frequent: flag only what is strictly above every benign score
    return float(np.nextafter(scores[-1], np.inf)), 0.0


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the given input (for example only one class present)."""


def roc_auc_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half). NaN with a warning if one class is absent."""
    y_true = np.asarray(y_true).astype(bool)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.shape != y_score.shape:
        raise ValueError(f"y_true and y_score differ in shape: {y_true.shape} vs {y_score.shape}")
    if y_true.all() or not y_true.any():
        warnings.warn("AUROC is undefined with only one class present", UndefinedMetricWarning, stacklevel=2)
        return float("nan")
    from sklearn.metrics import roc_auc_score as sk_auc

    return float(sk_auc(y_true, y_score))


def rates_at_threshold(benign: np.ndarray, poisoned: np.ndarray, threshold: float) -> dict[str, float]:
    """TPR, FPR, precision and F1 when flagging ``score >= threshold``."""
    benign = np.asarray(benign, dtype=np.float64)
    poisoned = np.asarray(poisoned, dtype=np.float64)
    tp = int((poisoned >= threshold).sum())
    fp = int((benign >= threshold).sum())
    fn = poisoned.size - tp
    tpr = tp / poisoned.size if poisoned.size else float("nan")
    fpr = fp / benign.size if benign.size else float("nan")
    precision = tp / (tp + fp) if tp + fp else 0.0
    f1 = 2 * tp / (2 * tp + fp + fn) if (2 * tp + fp + fn) else 0.0
    return {"threshold": float(threshold), "tpr": tpr, "fpr": fpr, "precision": precision, "f1": f1,
            "true_positives": tp, "false_positives": fp}


def best_f1(benign: np.ndarray, poisoned: np.ndarray) -> dict[str, float]:
    """The best F1 over all thresholds (an oracle figure: fitted on the evaluated set)."""
    best = {"f1": 0.0, "threshold": float("nan")}
    for t in np.unique(np.concatenate([benign, poisoned])):
        r = rates_at_threshold(benign, poisoned, t)
        if r["f1"] > best["f1"]:
            best = {"f1": r["f1"], "threshold": float(t)}
    return best


def tpr_at_fpr(benign: np.ndarray, poisoned: np.ndarray, fpr: float, *, seed: int = 0) -> dict[str, Any]:
    """TPR at a target FPR with the threshold fitted on a disjoint calibration split.

    The benign scores are split in half at random (``seed``): the threshold is fitted on one
    half and the FPR measured on the other, so the figure does not leak.
    """
    benign = np.asarray(benign, dtype=np.float64)
    if benign.size < 4:
        return {"target_fpr": fpr, "tpr": float("nan"), "fpr": float("nan"), "threshold": float("nan"),
                "note": "too few benign inputs to split"}
    order = np.random.default_rng(seed).permutation(benign.size)
    half = benign.size // 2
    fit, held_out = benign[order[:half]], benign[order[half:]]
    threshold, _ = threshold_at_fpr(fit, fpr)
    rates = rates_at_threshold(held_out, poisoned, threshold)
    return {"target_fpr": fpr, "tpr": rates["tpr"], "fpr": rates["fpr"], "threshold": threshold,
            "calibration_size": int(fit.size), "evaluated_benign": int(held_out.size)}


def detection_report(benign: np.ndarray, poisoned: np.ndarray, *, threshold: float,
                     fprs=(0.01, 0.05), seed: int = 0) -> dict[str, Any]:
    """All the paper's figures for one score: AUROC, rates at the threshold, TPR at fixed FPRs."""
    benign = np.asarray(benign, dtype=np.float64)
    poisoned = np.asarray(poisoned, dtype=np.float64)
    y_true = np.r_[np.zeros(benign.size), np.ones(poisoned.size)]
    return {
        "auroc": roc_auc_score(y_true, np.r_[benign, poisoned]),
        "at_threshold": rates_at_threshold(benign, poisoned, threshold),
        "tpr_at_fpr": [tpr_at_fpr(benign, poisoned, f, seed=seed) for f in fprs],
        "best_f1": best_f1(benign, poisoned),
        "n_benign": int(benign.size),
        "n_poisoned": int(poisoned.size),
    }


# -- tail probabilities of the model-level verdict's tests ----------------------------------------
def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided test's p-value (0.0 below ~1e-308)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    # log pmf at k, then the recurrence pmf(i+1) = pmf(i) * (n-i)/(i+1) * p/(1-p), summed in log space
    log_first = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                 + k * math.log(p) + (n - k) * math.log1p(-p))
    i = np.arange(k, n, dtype=np.float64)
    steps = np.log((n - i) / (i + 1)) + math.log(p) - math.log1p(-p)
    log_terms = log_first + np.concatenate([[0.0], np.cumsum(steps)])
    top = log_terms.max()
    return float(math.exp(top + math.log(np.exp(log_terms - top).sum())))


def betabinomial_sf(k: int, m: int, a: int, b: int) -> float:
    """P(X >= k) for X ~ BetaBinomial(m, a, b): how many of m fresh clean inputs reach a
    conformal flag set from n = a + b - 1 clean references (a = floor(FPR (n + 1))).

    Summed in log space like :func:`binomial_sf` (accurate to about 1e-9 relative down to
    ~1e-308, then 0.0); a general-purpose ``betabinom.sf`` computes ``1 - cdf`` and loses every
    digit below about 1e-8."""
    if k <= 0:
        return 1.0
    if k > m or a <= 0:
        return 0.0 if a > 0 else 1.0
    if b <= 0:  # the whole mass at m: every input flagged
        return 1.0
    # log pmf(k) = log C(m, k) + log B(k + a, m - k + b) - log B(a, b), then the recurrence
    # pmf(i + 1) = pmf(i) * (m - i) / (i + 1) * (i + a) / (m - i - 1 + b)
    log_first = (math.lgamma(m + 1) - math.lgamma(k + 1) - math.lgamma(m - k + 1)
                 + math.lgamma(k + a) + math.lgamma(m - k + b) - math.lgamma(m + a + b)
                 - math.lgamma(a) - math.lgamma(b) + math.lgamma(a + b))
    i = np.arange(k, m, dtype=np.float64)
    steps = np.log((m - i) / (i + 1)) + np.log((i + a) / (m - i - 1 + b))
    log_terms = log_first + np.concatenate([[0.0], np.cumsum(steps)])
    top = log_terms.max()
    return float(min(1.0, math.exp(top + math.log(np.exp(log_terms - top).sum()))))
