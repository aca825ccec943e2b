"""SPC, scale parsing, calibration (per-class NSPC, thresholds) and metrics, on hand-made numbers."""

import json
import subprocess
import sys
import warnings

import numpy as np
import pytest

from scanner.calibration import Calibration, fit_calibration
from scanner.metrics import threshold_at_fpr
from scanner.errors import CalibrationError
from scanner.metrics import UndefinedMetricWarning, rates_at_threshold, roc_auc_score, tpr_at_fpr
from scanner.detectors.scaleup import fill_scaled_batch, parse_scales, spc_score


def test_spc_counts_agreeing_scales():
    labels = np.array([0, 1, 2])
    scaled = np.array([[0, 0, 0, 0, 0], [1, 2, 1, 2, 2], [3, 3, 3, 3, 3]])
    assert spc_score(labels, scaled).tolist() == [1.0, 0.4, 0.0]


@pytest.mark.parametrize("text,expected", [
    ("3,5,7,9,11", (3, 5, 7, 9, 11)), ("1-11", tuple(range(1, 12))), ("11,3, 5", (3, 5, 11)), ("1.5,2", (1.5, 2)),
])
def test_parse_scales(text, expected):
    assert parse_scales(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0,3", "5-3", "-2"])
def test_parse_scales_rejects(text):
    with pytest.raises(ValueError):
        parse_scales(text)


def test_amplify_clips_in_pixel_space_and_stays_float32():
    base = np.array([[0.0, 0.1, 0.25, 0.5]], dtype=np.float32)
    out = np.empty((3, 4), dtype=np.float32)
    fill_scaled_batch(base, (3, 5), out)
    assert out.dtype == np.float32
    expected = np.clip(np.array([[0, 0.1, 0.25, 0.5], [0, 0.3, 0.75, 1.5], [0, 0.5, 1.25, 2.5]], dtype=np.float32), 0, 1)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("rows", [1, 5, 300])
def test_scaled_batch_in_blocks_equals_clip_then_normalize(rows):
    # 300 rows of 3x16x16 span several cache blocks; the finish step sees every piece once
    rng = np.random.default_rng(rows)
    base = rng.random((rows, 16, 16, 3), dtype=np.float32).transpose(0, 3, 1, 2)  # a strided view
    scales = (3, 5.5, 11)
    mean, std = np.float32(0.25), np.float32(0.5)
    calls = []

    def finish(piece):
        calls.append(piece.shape[0])
        np.subtract(piece, mean, out=piece)
        np.divide(piece, std, out=piece)

    out = np.empty((4 * rows, 3, 16, 16), dtype=np.float32)
    fill_scaled_batch(base, scales, out, finish=finish)
    copies = [base] + [np.clip(base * np.float32(n), np.float32(0), np.float32(1)) for n in scales]
    expected = (np.concatenate(copies) - mean) / std
    assert np.array_equal(out.view(np.uint32), expected.astype(np.float32).view(np.uint32))
    assert sum(calls) == 4 * rows


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


def test_threshold_at_fpr_discrete():
    scores = np.array([0, 0, 0, 0.2, 0.2, 0.4, 0.6, 0.8, 1.0, 1.0])
    assert threshold_at_fpr(scores, 0.2) == (1.0, 0.2)
    assert threshold_at_fpr(scores, 0.35) == (0.8, 0.3)
    t, achieved = threshold_at_fpr(scores, 0.0)
    assert t > 1.0 and achieved == 0.0


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


def test_importing_and_scanning_never_imports_torch(tmp_path):
    code = (
        "import sys, numpy as np, onnx\n"
        "from onnx import helper as h, TensorProto as T\n"
        "g = h.make_graph([h.make_node('ReduceMean', ['x'], ['m'], axes=[2, 3], keepdims=0)], 'g',\n"
        "    [h.make_tensor_value_info('x', T.FLOAT, ['N', 3, 4, 4])], [h.make_tensor_value_info('m', T.FLOAT, ['N', 3])])\n"
        f"p = r'{tmp_path / 'm.onnx'}'\n"
        "onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)], ir_version=8), p)\n"
        "import scanner, scanner.cli\n"
        "from scanner import Scanner\n"
        "Scanner(p, device='cpu').score_arrays(np.random.default_rng(0).random((4, 4, 4, 3), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@pytest.mark.parametrize("layout", ["nchw", "nhwc", "flat"])
def test_normalization_broadcasts_per_channel_in_every_layout(layout):
    from scanner.preprocess import Preprocessor
    from scanner.spec import Spec

    spec = Spec(layout=layout, height=2, width=3, channels=3, pixel_range="byte",
                mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    x = np.random.default_rng(0).random((4, 2, 3, 3), dtype=np.float32)  # NHWC
    expected = (x * np.float32(255) - np.float32([10, 20, 30])) / np.float32([2, 4, 5])
    arranged = {"nchw": x.transpose(0, 3, 1, 2), "nhwc": x, "flat": x.reshape(4, -1)}[layout].copy()
    got = Preprocessor(spec).normalize_(arranged)
    back = {"nchw": lambda g: g.transpose(0, 2, 3, 1), "nhwc": lambda g: g,
            "flat": lambda g: g.reshape(4, 2, 3, 3)}[layout](got)
    np.testing.assert_array_equal(back, expected)


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
