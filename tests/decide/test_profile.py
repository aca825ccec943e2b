"""The response-profile decision: features from every query's answer, a per-class shrinkage
Mahalanobis distance, split-conformal p-values, the calibration file, and a scan end to end."""

import json

import numpy as np
import pytest

from scanner.decide.calibration import Calibration
from scanner.decide.profile import ProfileModel, split
from scanner.decide.reference import ScoreReference
from scanner.detectors.profile import PROB_FLOOR, response_profile
from scanner.errors import CalibrationError


def test_features_by_hand():
    # two inputs (b = 2), three queries each, three classes; query-major rows
    probs = np.array([
        [0.7, 0.2, 0.1], [0.1, 0.8, 0.1],     # query 0 (the inputs themselves): labels 0, 1
        [0.5, 0.5, 0.0], [0.2, 0.2, 0.6],     # query 1
        [1.0, 0.0, 0.0], [0.0, 1.0, 0.0],     # query 2
    ])
    labels = probs.argmax(axis=1)
    f = response_profile(labels, probs, 2)
    assert f.shape == (2, 6)

    def h(p):
        p = np.asarray(p)
        return -sum(x * np.log(max(x, PROB_FLOOR)) for x in p)

    np.testing.assert_allclose(f[0], [np.log(0.7), np.log(0.5), np.log(1.0), h([.7, .2, .1]), h([.5, .5, 0]), 0.0])
    np.testing.assert_allclose(f[1], [np.log(0.8), np.log(0.2), np.log(1.0), h([.1, .8, .1]), h([.2, .2, .6]), 0.0])
    # a vanishing probability of the input's own class stays finite
    probs[3] = [1.0, 0.0, 0.0]
    assert response_profile(labels, probs, 2)[1, 1] == pytest.approx(np.log(PROB_FLOOR))


def test_split_alternates_within_each_class():
    labels = np.array([3, 3, 1, 3, 1, 1, 3])
    np.testing.assert_array_equal(split(labels), [True, False, True, True, False, True, False])


def test_distance_is_the_standardized_mahalanobis_distance_of_the_class():
    """Hand computation: standardize over all fit inputs, class means, one Ledoit-Wolf covariance
    of the deviations from the class means; an unseen class uses the pooled mean and covariance."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 3)), rng.normal(5, 2, (40, 3))])
    labels = np.repeat([0, 1], 40)
    model = ProfileModel(x, labels, min_class_samples=10)
    from sklearn.covariance import LedoitWolf

    z = (x - x.mean(0)) / x.std(0)
    means = [z[labels == k].mean(0) for k in (0, 1)]
    shared = LedoitWolf(assume_centered=True).fit(np.concatenate([z[labels == k] - means[k] for k in (0, 1)]))
    probe = np.array([[4.0, 6.0, 5.5]])
    zp = (probe - x.mean(0)) / x.std(0)
    d = zp - means[1]
    assert model.distance(probe, np.array([1]))[0] == pytest.approx(float((d @ shared.precision_ @ d.T).item()))
    lw_all = LedoitWolf().fit(z)
    d_all = zp - lw_all.location_
    assert model.distance(probe, np.array([7]))[0] == pytest.approx(float((d_all @ lw_all.precision_ @ d_all.T).item()))
    assert model.pooled_classes([0, 1, 7]) == [7]


def test_split_conformal_p_values_keep_the_rate_on_fresh_clean_inputs():
    """Fit on one half, reference on the other, fresh inputs of the same law: flagging p <= 0.05
    flags about 5% of them per class, never far above (a finite-sample guarantee)."""
    rng = np.random.default_rng(1)
    n, dims = 400, 8

    def draw(m):
        labels = rng.integers(0, 2, m)
        return rng.normal(labels[:, None] * 2.0, 1.0, (m, dims)), labels

    x, labels = draw(n)
    fit = split(labels)
    model = ProfileModel(x[fit], labels[fit])
    ref = ScoreReference.fit(model.distance(x[~fit], labels[~fit]), labels[~fit], 10)
    fresh, fresh_labels = draw(4000)
    p = ref.p_values(model.distance(fresh, fresh_labels), fresh_labels)
    for k in (0, 1):
        assert (p[fresh_labels == k] <= 0.05).mean() < 0.075
    # an input far from its class gets the smallest p-value the reference allows
    far = ref.p_values(model.distance(np.full((1, dims), 9.0), np.array([0])), np.array([0]))
    assert far[0] == pytest.approx(1 / (len(ref.reference(0)) + 1))


def test_the_model_round_trips_and_a_tampered_one_is_refused():
    rng = np.random.default_rng(2)
    model = ProfileModel(rng.normal(size=(30, 4)), np.repeat([0, 1, 2], 10), 5)
    back = ProfileModel.from_dict(json.loads(json.dumps(model.to_dict())), "profile")
    probe = rng.normal(size=(5, 4))
    np.testing.assert_array_equal(back.distance(probe, np.arange(5) % 3), model.distance(probe, np.arange(5) % 3))
    bad = model.to_dict() | {"shape": [30, 5]}
    with pytest.raises(CalibrationError, match="response-profile model"):
        ProfileModel.from_dict(bad, "profile")
    nan = np.full((30, 4), np.nan).tobytes()
    import base64
    with pytest.raises(CalibrationError, match="not finite"):
        ProfileModel.from_dict(model.to_dict() | {"base64": base64.b64encode(nan).decode()}, "profile")


def test_calibrate_then_scan_with_the_profile(model, tmp_path):
    """Library end to end on the trigger fixture: the calibration fits the model on half of each
    class and keeps the other half's distances; a scan offers q_profile with the calibrated
    detectors, a reloaded file gives the same scores, a subset of detectors does not offer it."""
    import onnx_models as om
    from scanner import Scanner
    from scanner.calibrating import calibrate

    clean = np.rint(om.make_images(80, seed=31, triggered_fraction=0.0) * 255).astype(np.uint8)
    run = calibrate(model.path, [_save(tmp_path / "clean.npy", clean)],
                       detector_params={"strip": {"n_blends": 4}, "teco": {"severities": 2}})
    cal = run.calibration
    assert cal.profile is not None
    ref = cal.values["profile"]
    np.testing.assert_array_equal(np.isnan(ref), split(cal.labels))  # the fit half is not its own reference
    assert cal.profile.n_features == 2 * (1 + 5 + 4 + 12 * 2 + 3 * 3 * 2)  # input, scales, blends, corruptions, regions
    mixed = np.rint(om.make_images(24, seed=5, triggered_fraction=0.5) * 255).astype(np.uint8)
    scores = Scanner(model.path, calibration=cal).score_arrays(mixed)
    q = scores.named["q_profile"]
    assert q is not None and np.all((q >= 0) & (q < 1))
    cal.save(tmp_path / "cal.json")
    again = Scanner(model.path, calibration=tmp_path / "cal.json", score="q-profile").score_arrays(mixed)
    np.testing.assert_array_equal(again.named["q_profile"], q)
    assert again.score_name == "q-profile" and np.array_equal(again.flagged, (q >= 0.95 - 1e-12) & ~again.undecidable)
    subset = Scanner(model.path, calibration=cal, detectors="scaleup")
    assert "q_profile" not in subset.score_names


def test_a_calibration_file_with_half_a_profile_is_refused(model, tmp_path):
    import onnx_models as om
    from scanner.calibrating import calibrate

    clean = np.rint(om.make_images(60, seed=3, triggered_fraction=0.0) * 255).astype(np.uint8)
    run = calibrate(model.path, [_save(tmp_path / "clean.npy", clean)], detectors="scaleup,strip",
                       detector_params={"strip": {"n_blends": 4}})
    cal = run.calibration
    doc = cal.to_dict()
    (tmp_path / "a.json").write_text(json.dumps({**doc, "profile": None}))
    with pytest.raises(CalibrationError, match=r"values\['profile'\] needs the 'profile' model"):
        Calibration.load(tmp_path / "a.json")
    values = {k: v for k, v in doc["values"].items() if k != "profile"}
    (tmp_path / "b.json").write_text(json.dumps({**doc, "values": values}))
    with pytest.raises(CalibrationError, match=r"needs values\['profile'\]"):
        Calibration.load(tmp_path / "b.json")
    # a label of 10^30 (found by the leaf-by-leaf fuzz: an OverflowError, exit 3, before)
    big = json.loads(json.dumps(doc))
    big["profile"]["labels"][0] = 10**30
    (tmp_path / "c.json").write_text(json.dumps(big))
    with pytest.raises(CalibrationError, match="must be a response-profile model"):
        Calibration.load(tmp_path / "c.json")


def _save(path, array):
    np.save(path, array)
    return path


def test_calibrate_says_when_a_class_is_too_small_for_the_profile_flag(model, tmp_path):
    """The profile's reference is half of a class's images: with about 15 of them the smallest
    p-value is 1/16 > 0.05, and the calibration says so, naming the floor."""
    import onnx_models as om
    from scanner.calibrating import calibrate
    from scanner.decide.calibration import unflaggable
    from scanner.report.calibration import calibration_lines

    clean = np.rint(om.make_images(120, seed=8, triggered_fraction=0.0) * 255).astype(np.uint8)
    run = calibrate(model.path, [_save(tmp_path / "clean.npy", clean)], detectors="scaleup,strip",
                            detector_params={"strip": {"n_blends": 4}})
    cal, result = run.calibration, run.scan
    sizes = {k: int((cal.labels[~np.isnan(cal.values["profile"])] == k).sum()) for k in np.unique(cal.labels)}
    small = {k for k, n in sizes.items() if 10 <= n < 19}  # own reference, floor 1/(n+1) > 0.05
    assert small, sizes
    blind = unflaggable(cal, "q_profile")
    for k in small:
        assert blind[k] == f"profile: only {sizes[k]} calibration inputs (p cannot go below 1/{sizes[k] + 1})"
    assert any(line.startswith("Warning: q-profile can never flag") for line in calibration_lines(cal, result))
    # a default blind to a class is not chosen: Fisher's references use every calibration image
    assert cal.decision == "q_fisher"
