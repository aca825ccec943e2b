"""The data-limited variant: per-class NSPC, pooled fallback, sigma floor, thresholds, the file."""

import json

import numpy as np
import pytest

from scanner.decide.calibration import Calibration, fit_calibration
from scanner.errors import CalibrationError


def test_nspc_uses_per_class_statistics_by_hand():
    # class 0: SPC 0.2 x10 and 0.6 x10 -> mean 0.4, std 0.2; class 1: SPC 0.0 x9 and 1.0 x1 -> mean 0.1, std 0.3
    spc = np.r_[np.full(10, 0.2), np.full(10, 0.6), np.zeros(9), [1.0]]
    labels = np.r_[np.zeros(20, int), np.ones(10, int)]
    cal = fit_calibration(spc, labels, scales=(3, 5, 7, 9, 11), min_class_samples=10, sigma_floor=0.05)
    assert cal.per_class[0].mean == pytest.approx(0.4) and cal.per_class[0].std == pytest.approx(0.2)
    assert cal.per_class[1].mean == pytest.approx(0.1) and cal.per_class[1].std == pytest.approx(0.3)
    got = cal.nspc(np.array([1.0, 1.0, 0.4]), np.array([0, 1, 7]))
    pooled_mean, pooled_std = spc.mean(), spc.std()
    np.testing.assert_allclose(got, [(1 - 0.4) / 0.2, (1 - 0.1) / 0.3, (0.4 - pooled_mean) / pooled_std])


def test_small_classes_fall_back_to_pooled_and_sigma_has_a_floor():
    spc = np.r_[np.full(12, 0.2), np.full(3, 1.0)]
    labels = np.r_[np.zeros(12, int), np.ones(3, int)]
    cal = fit_calibration(spc, labels, scales=(3,), min_class_samples=10, sigma_floor=0.05)
    mu, sigma = cal.stats_for(np.array([0, 1]))
    assert mu[0] == pytest.approx(0.2) and sigma[0] == pytest.approx(0.05)  # std 0 -> floor
    assert mu[1] == pytest.approx(spc.mean()) and sigma[1] == pytest.approx(spc.std())


@pytest.mark.parametrize("target", [0.01, 0.05, 0.1, 0.3])
def test_calibration_threshold_hits_requested_fpr_on_calibration_set(target):
    rng = np.random.default_rng(1)
    spc = rng.integers(0, 6, 2000) / 5
    labels = rng.integers(0, 10, 2000)
    cal = fit_calibration(spc, labels, scales=(3, 5, 7, 9, 11), target_fpr=target)
    realized = float((cal.nspc(spc, labels) >= cal.threshold).mean())
    assert realized == pytest.approx(cal.achieved_fpr)
    assert realized <= target
    # the next lower distinct score would exceed the target: the threshold is as low as allowed
    scores = np.unique(cal.nspc(spc, labels))
    lower = scores[scores < cal.threshold]
    if lower.size:
        assert float((cal.nspc(spc, labels) >= lower[-1]).mean()) > target


def test_calibration_file_round_trip_and_mismatch(tmp_path):
    cal = fit_calibration(np.array([0.2, 0.4, 0.6, 0.0]), np.array([1, 1, 2, 2]), scales=(3, 5, 7, 9, 11),
                          model_sha256="a" * 64)
    cal.save(tmp_path / "cal.json")
    back = Calibration.load(tmp_path / "cal.json")
    assert back.to_dict() == cal.to_dict()
    back.check_compatible(model_sha256="a" * 64, scales=(3, 5, 7, 9, 11))
    with pytest.raises(CalibrationError, match="another model"):
        back.check_compatible(model_sha256="b" * 64, scales=(3, 5, 7, 9, 11))
    with pytest.raises(CalibrationError, match="scales 3,5,7,9,11"):
        back.check_compatible(model_sha256="a" * 64, scales=tuple(range(1, 12)))
    (tmp_path / "bad.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CalibrationError, match="not a scanner calibration file"):
        Calibration.load(tmp_path / "bad.json")


def _v2(tmp_path):
    """A format-2 calibration of the trigger fixture model with every detector (library call)."""
    import onnx_models as om
    from scanner.calibrating import calibrate

    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    clean = np.rint(om.make_images(80, seed=21, triggered_fraction=0.0) * 255).astype(np.uint8)
    np.save(tmp_path / "clean.npy", clean)
    run = calibrate(fx.path, [tmp_path / "clean.npy"], detector_params={"strip": {"n_blends": 4},
                                                                                "teco": {"severities": 2}})
    cal, result = run.calibration, run.scan
    return fx, cal, result


def test_format_2_round_trip_keeps_detectors_values_images_and_decision(tmp_path):
    from scanner import Scanner

    fx, cal, result = _v2(tmp_path)
    assert cal.detector_names == ("scaleup", "strip", "teco", "transplant")
    assert cal.decision == "q_fisher"  # ~25 images a class: too few for the profile
    assert cal.n_samples == 80 - 4 and cal.clean_images.shape == (4, 8, 8, 3) and cal.clean_images.dtype == np.uint8
    assert set(cal.values) == {"spc", "prob_consistency", "strip", "teco", "transplant", "profile"}
    # the detectors a scan rebuilds from the file are the ones the calibration scored with: a rescan
    # of the calibration inputs gives their stored raw scores back
    clean = np.load(tmp_path / "clean.npy")[result.indices]
    rescan = Scanner(fx.path, calibration=cal).score_arrays(clean)
    kept = ~np.isnan(cal.values["strip"])
    rows = np.flatnonzero(np.isin(result.indices, result.indices))  # every scanned input, held ones included
    for name in ("strip", "teco", "transplant"):
        np.testing.assert_array_equal(np.asarray(result.scores.named[name])[rows], rescan.named[name])
    cal.save(tmp_path / "cal.json")
    back = Calibration.load(tmp_path / "cal.json")
    assert back.to_dict() == cal.to_dict()
    np.testing.assert_array_equal(back.clean_images, cal.clean_images)
    # the scan rebuilds the same detectors: STRIP blends with the stored images, identical scores
    images = om_images()
    a = Scanner(fx.path, calibration=cal).score_arrays(images)
    b = Scanner(fx.path, calibration=tmp_path / "cal.json").score_arrays(images)
    for name in ("strip", "teco", "transplant", "q_fisher", "q_profile", "nspc"):
        np.testing.assert_array_equal(a.named[name], b.named[name])
    assert a.score_name == "q-fisher"
    # a subset of the detectors: their own references and combination, fewer queries
    fast = Scanner(fx.path, calibration=cal, detectors="scaleup")
    assert fast.detector.queries_per_input == 6 and fast.score_name == "q-prob-consistency"
    with pytest.raises(Exception, match="not strip"):
        Scanner(fx.path, calibration=_without(cal, "strip"), detectors="strip")


def om_images():
    import onnx_models as om

    return om.make_images(12, seed=22, triggered_fraction=0.5)


def _without(cal, name):
    from dataclasses import replace

    return replace(cal, detectors=tuple(d for d in cal.detectors if d["name"] != name))


def test_format_2_fields_are_checked(tmp_path):
    fx, cal, _ = _v2(tmp_path)
    good = cal.to_dict()
    for key, value, message in (("labels", [0, 1], "must list"), ("values", {"spc": [0.5] * 3}, "must list"),
                                ("detectors", [], "non-empty list"),
                                ("clean_images", {"shape": [1, 2], "dtype": "uint8", "base64": ""}, "uint8")):
        bad = dict(good, **{key: value})
        (tmp_path / "bad.json").write_text(json.dumps(bad))
        with pytest.raises(CalibrationError, match=message):
            Calibration.load(tmp_path / "bad.json")
    bad = json.loads(json.dumps(good))
    bad["values"]["strip"][0] = "0.5"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CalibrationError, match="strip"):
        Calibration.load(tmp_path / "bad.json")


def test_zero_spread_class_is_reported_not_silently_unflaggable():
    from scanner.decide.calibration import unflaggable

    spc = np.r_[np.ones(30), np.linspace(0, 1, 30)]
    labels = np.r_[np.zeros(30, int), np.ones(30, int)]
    cal = fit_calibration(spc, labels, scales=(3, 5, 7, 9, 11), min_class_samples=10)
    nspc = unflaggable(cal, "nspc")
    assert list(nspc) == [0] and "zero spread" in nspc[0]
    cal.labels, cal.values, cal.detectors = labels, {"spc": spc}, ({"name": "scaleup"},)
    q = unflaggable(cal, "q_spc")
    assert list(q) == [0] and "share the top value 1" in q[0]


# -- every field checked alike (issue 28) ----------------------------------------------------------
@pytest.fixture(scope="module")
def v2(tmp_path_factory):
    """A format-2 calibration with every detector, made once: (fixture model, calibration)."""
    fx, cal, _ = _v2(tmp_path_factory.mktemp("v2"))
    return fx, cal


def _strip(doc, **settings):
    doc["detectors"] = [dict(d, **settings) if d["name"] == "strip" else d for d in doc["detectors"]]


def _set(key, value):
    return lambda doc: doc.__setitem__(key, value)


@pytest.mark.parametrize("edit,message", [
    (lambda d: d["values"]["spc"].__setitem__(3, float("nan")), r"values\['spc'\]\[3\] is NaN, not a finite number "
     r"\(null, not NaN, marks an input the detector could not judge\)"),
    (lambda d: d["values"]["teco"].__setitem__(0, float("inf")), r"values\['teco'\]\[0\] is infinite"),
    (lambda d: d["values"]["strip"].__setitem__(0, 10**400), r"values\['strip'\]\[0\] is an integer too large"),
    (_set("decision", "q_evil"), "field 'decision' must be one of the scores it calibrates .*got 'q_evil'"),
    (lambda d: _strip(d, n_blends=-1), "field 'detectors': detector strip: n_blends: expected a value of at least 1"),
    (lambda d: _strip(d, n_blends=3), "field 'detectors': detector strip: n_blends is 3 but the calibration holds 4"),
    (lambda d: _strip(d, seed=1.5), "field 'detectors': detector strip: seed: expected an integer, got 1.5"),
    (lambda d: _strip(d, mode="evil"), "field 'detectors': detector strip: mode"),
    (lambda d: _strip(d, blend=1), "field 'detectors': detector strip: .*'blend'"),
    (lambda d: d["detectors"].append({"name": "scaleup"}), "field 'detectors' must name each of"),
    (lambda d: d["detectors"][0].__setitem__("scales", [3, 5]), "scaleup's scales \\[3, 5\\] are not"),
    (lambda d: d["spec"].__setitem__("mean", [float("inf"), 0, 0]), "field 'spec': field 'mean': expected finite"),
    (lambda d: d["labels"].__setitem__(0, 10**30), "field 'labels' must list 76 class labels"),
    (lambda d: d["per_class"].__setitem__("\u00b2", d["per_class"].popitem()[1]), "field 'per_class': key '\u00b2' is not"),
    (_set("threshold", 10**400), "field 'threshold': expected a finite number, got 1000000000"),
])
def test_every_field_of_a_calibration_file_is_checked(tmp_path, v2, edit, message):
    """NaN (which Python's json reads), infinity, numbers too large for a float, an unknown
    decision and detector settings a scan would not accept: one CalibrationError naming the field."""
    doc = json.loads(json.dumps(v2[1].to_dict()))
    edit(doc)
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(tmp_path / "bad.json")


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "is nested too deeply to read"),
    ('{"format": "scanner-calibration", "n": ' + "1" * 5001 + "}", "holds an integer of more than 4300 digits"),
    (b"\xff\xfe{}", "is not valid JSON: not UTF-8 text"),
])
def test_a_calibration_file_json_cannot_read_is_one_error(tmp_path, text, message):
    path = tmp_path / "cal.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(CalibrationError, match=message):
        Calibration.load(path)


def test_a_decision_the_scan_cannot_compute_is_refused_not_replaced(tmp_path, v2):
    """Every calibration input's STRIP value is null, so q_strip has no reference: a scan that runs
    STRIP refuses (naming --score) instead of flagging by another score unasked."""
    from dataclasses import replace

    from scanner import Scanner
    from scanner.errors import ScannerError

    fx, cal = v2
    blind = replace(cal, values=dict(cal.values, strip=np.full(cal.n_samples, np.nan)), decision="q_strip")
    blind.save(tmp_path / "blind.json")
    for given in (blind, tmp_path / "blind.json"):
        with pytest.raises(ScannerError, match="the calibration's decision q-strip cannot be computed by this scan: "
                                               "every calibration input's strip is null .*--score"):
            Scanner(fx.path, calibration=given)
    assert Scanner(fx.path, calibration=blind, score="q-teco").score_name == "q-teco"
    # a subset without STRIP (--detector) still falls back to what it offers, as before
    assert Scanner(fx.path, calibration=blind, detectors="scaleup").score_name == "q-prob-consistency"


def test_format_version_true_is_not_version_1(tmp_path):
    """JSON's true equals 1 in Python: found by the leaf-by-leaf fuzz (bench.fuzz)."""
    fx, cal, _ = _v2(tmp_path)
    bad = dict(cal.to_dict(), format_version=True)
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(CalibrationError, match="format_version True is not supported"):
        Calibration.load(tmp_path / "bad.json")
