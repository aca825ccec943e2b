"""Per-class counts and the collapse check (scanner/decide/counts.py)."""

import numpy as np

from scanner.decide.counts import COLLAPSE_MIN_INPUTS, collapsed, per_class_counts


def test_per_class_counts_in_label_order_with_names():
    counts = per_class_counts(np.array([2, 0, 2, 2]), np.array([True, False, False, True]), ["a", "b", "c"])
    assert [(c.label, c.inputs, c.flagged, c.class_name) for c in counts] == [(0, 1, 0, "a"), (2, 3, 2, "c")]


def test_collapse_needs_enough_inputs_and_one_dominant_class():
    assert collapsed(np.zeros(COLLAPSE_MIN_INPUTS - 1, int)) is None
    assert collapsed(np.zeros(COLLAPSE_MIN_INPUTS, int)) == (0, 1.0)
    assert collapsed(np.arange(COLLAPSE_MIN_INPUTS) % 2) is None
