"""The model-level verdict and the gate, on hand-made labels and flags."""

import numpy as np



def test_verdict_needs_significance_and_size_and_uses_per_class_rates():
    from scanner.decisions import binomial_sf, model_verdict

    labels = np.r_[np.zeros(1000, int), np.ones(1000, int), np.full(1000, 2)]
    flagged = np.r_[np.arange(1000) < 700, np.arange(1000) < 70, np.arange(1000) < 300]
    v = model_verdict(labels, flagged, expected_fpr=0.04, source="test")
    # class 0 (70%) is a suspect; class 1 (7% vs 4%) is significant but too small an excess
    assert [s.label for s in v.suspects] == [0, 2]
    # class 2's own benign rate is 25%: 30% is not a backdoor-sized excess
    v = model_verdict(labels, flagged, expected_fpr=0.04, source="test", per_class={2: 0.25})
    assert [s.label for s in v.suspects] == [0]
    assert binomial_sf(700, 1000, 0.04) < 1e-300
