"""Benign references: conformal p-values per predicted class, Fisher's combination, the file form."""

import numpy as np
import pytest

from scanner.errors import CalibrationError
from scanner.decide.reference import COMBINED, References, ScoreReference, fisher, q_name


def test_p_values_by_hand_per_class_and_pooled():
    # class 0: 0.1 .. 0.9 (9 values); class 1: 3 values, below min_class_samples -> pooled (12 values)
    values = np.r_[np.arange(1, 10) / 10, [0.5, 0.5, 0.5]]
    labels = np.r_[np.zeros(9, int), np.ones(3, int)]
    ref = ScoreReference.fit(values, labels, min_class_samples=5)
    # 0.85 in class 0: one reference value (0.9) is >= it -> (1 + 1) / (9 + 1)
    # 0.95 in class 0: none -> 1 / 10; 0.1 in class 0: all 9 -> 10 / 10
    # 0.55 in class 1 (pooled): 0.6, 0.7, 0.8, 0.9 -> (1 + 4) / 13; class 7 (unseen) pooled too
    got = ref.p_values(np.array([0.85, 0.95, 0.1, 0.55, 0.55]), np.array([0, 0, 0, 1, 7]))
    np.testing.assert_allclose(got, [2 / 10, 1 / 10, 10 / 10, 5 / 13, 5 / 13])


def test_ties_count_as_at_least_and_zero_spread_is_unflaggable():
    ref = ScoreReference.fit(np.ones(20), np.zeros(20, int), min_class_samples=10)
    assert ref.p_values(np.array([1.0]), np.array([0]))[0] == 1.0  # ties are not evidence
    assert ref.unflaggable(0.05) == {0: 1.0}
    spread = ScoreReference.fit(np.arange(100) / 100, np.zeros(100, int), min_class_samples=10)
    assert spread.unflaggable(0.05) == {}  # a unique top can be exceeded: p = 1/101
    few = ScoreReference.fit(np.arange(12) / 12, np.zeros(12, int), min_class_samples=10)
    assert few.unflaggable(0.05) == {0: 11 / 12}  # 1/13 > 0.05: too few to ever reach the flag


def test_fpr_per_class_holds_on_fresh_inputs_of_the_same_distribution():
    rng = np.random.default_rng(0)
    # two classes with very different benign distributions: one global threshold cannot serve both
    def draw(n):
        labels = rng.integers(0, 2, n)
        return np.where(labels == 0, rng.normal(0, 1, n), rng.normal(5, 0.2, n)), labels
    cal_v, cal_l = draw(2000)
    refs = References.fit({"s": cal_v}, cal_l, combine=["s"], min_class_samples=10, target_fpr=0.05)
    new_v, new_l = draw(20000)
    q = refs.calibrated({"s": new_v}, new_l)[q_name("s")]
    for k in (0, 1):
        rate = float((q[new_l == k] >= 0.95 - 1e-12).mean())
        assert abs(rate - 0.05) < 0.015, (k, rate)
    assert abs(refs.achieved_fpr[q_name("s")] - 0.05) < 0.01


def test_fisher_combination_has_its_own_reference():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=1000), rng.normal(size=1000)
    labels = np.zeros(1000, int)
    refs = References.fit({"a": a, "b": b}, labels, combine=["a", "b"], min_class_samples=10, target_fpr=0.05)
    assert refs.names == ["q_a", "q_b", q_name(COMBINED)]
    np.testing.assert_allclose(fisher([np.array([0.5]), np.array([0.1])]), [-2 * (np.log(0.5) + np.log(0.1))])
    out = refs.calibrated({"a": np.array([10.0, -10.0]), "b": np.array([10.0, -10.0])}, np.zeros(2, int))
    assert out["q_fisher"][0] > 0.99 and out["q_fisher"][1] < 0.5
    # a score the model could not give (None) leaves the combination out, not a crash
    assert refs.calibrated({"a": np.array([1.0]), "b": None}, np.zeros(1, int))["q_fisher"] is None


def test_round_trip_and_strict_reading():
    refs = References.fit({"a": np.arange(30.0), "b": -np.arange(30.0)}, np.repeat([0, 1, 2], 10),
                          combine=["a", "b"], min_class_samples=5, target_fpr=0.1)
    back = References.from_dict(refs.to_dict(), "refs")
    assert back.to_dict() == refs.to_dict()
    bad = refs.to_dict()
    bad["scores"]["a"]["pooled"] = [1.0, float("nan")]
    with pytest.raises(CalibrationError, match="not finite"):
        References.from_dict(bad, "refs")


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["scores"]["a"]["per_class"]["0"].append(10**400), r"refs.scores.a.per_class\[0\] holds a value that is not finite"),
    (lambda d: d["scores"]["b"].__setitem__("pooled", [float("-inf")]), "refs.scores.b.pooled holds a value that is not finite"),
    (lambda d: d["scores"]["a"]["per_class"].__setitem__("\u00b2", [1.0]), "refs.scores.a.per_class: key '\u00b2' is not a class label"),
    (lambda d: d["scores"]["a"]["per_class"].__setitem__("9" * 30, [1.0]), "is not a class label"),
    (lambda d: d["achieved_fpr"].__setitem__("q_a", float("nan")), r"refs.achieved_fpr\['q_a'\]: expected a finite number"),
    (lambda d: d["achieved_fpr"].__setitem__("q_a", "low"), r"refs.achieved_fpr\['q_a'\]: expected a finite number"),
    (lambda d: d.__setitem__("combined_of", [["a"], "b"]), "combined_of must list scores"),
])
def test_reading_checks_every_field_like_a_calibration_file(edit, message):
    """Issue 28: the same checks as a calibration file (NaN, infinity, numbers too large for a
    float, keys that are not class labels): one CalibrationError, never an OverflowError or a
    ValueError from int()."""
    refs = References.fit({"a": np.arange(30.0), "b": -np.arange(30.0)}, np.repeat([0, 1, 2], 10),
                          combine=["a", "b"], min_class_samples=5, target_fpr=0.1)
    bad = refs.to_dict()
    edit(bad)
    with pytest.raises(CalibrationError, match=message):
        References.from_dict(bad, "refs")


def test_a_detector_that_cannot_judge_an_input_drops_out_of_its_fisher_combination():
    """Issue 27, point 1: Fisher over the p-values of the detectors that can judge the input,
    against the reference of that same combination (the calibration inputs' leave-one-out
    p-values of those detectors); one left: its own p-value."""
    rng = np.random.default_rng(0)
    n = 300
    labels = rng.integers(0, 3, n)
    raw = {"a": rng.random(n), "b": rng.random(n), "c": rng.random(n)}
    raw["a"][:40] = np.nan  # calibration inputs detector "a" could not judge
    refs = References.fit(raw, labels, combine=("a", "b", "c"), min_class_samples=10, target_fpr=0.05)
    scan = {k: rng.random(6) for k in raw}
    scan_labels = np.array([0, 1, 2, 0, 1, 2])
    judged = {"a": np.array([True, False, False, False, True, True]),
              "b": np.array([True, True, False, False, True, True]),
              "c": np.array([True, True, True, False, True, True])}
    q = refs.calibrated(scan, scan_labels, judged)["q_fisher"]
    full = refs.calibrated(scan, scan_labels)["q_fisher"]
    p = {k: refs.scores[k].p_values(scan[k], scan_labels) for k in raw}
    assert q[[0, 4, 5]].tolist() == full[[0, 4, 5]].tolist()  # judged by all three: unchanged
    # input 1: a cannot judge it -> Fisher of b and c against the (b, c) reference of every
    # calibration input b and c judged
    loo = {k: refs.scores[k].leave_one_out(raw[k], labels) for k in ("b", "c")}
    bc = ScoreReference.fit(-2 * (np.log(loo["b"]) + np.log(loo["c"])), labels, 10)
    want = 1 - bc.p_values(np.array([-2 * (np.log(p["b"][1]) + np.log(p["c"][1]))]), scan_labels[[1]])[0]
    assert q[1] == pytest.approx(want) and q[1] != pytest.approx(full[1])
    assert q[2] == pytest.approx(1 - p["c"][2])  # only c can judge it: its own p-value
    assert q[3] == full[3]  # none can: the full combination's (meaningless) value, never flagged
    assert refs.combined_for(("b", "c")) is refs.combined_for(("b", "c"))  # made once
