"""STRIP's own arithmetic: superimposed queries in pixel space, the normalized blend entropy, the
label-only fallback, the held clean images and their determinism."""

import math
from collections import Counter

import numpy as np
import pytest

import onnx_models as om
from helpers import assert_bytes_and_floats_give_the_same_queries
from scanner import Scanner
from scanner.inputs.decode import BYTE_MAX
from scanner.detectors.strip import Strip, label_entropy, prediction_entropy
from scanner.errors import ScannerError

SIZE = 8


# -- a model whose probabilities are known in closed form ------------------------------------
def _const(v):
    return np.full((SIZE, SIZE, 3), v, np.float32)


def _halves(left, right):
    img = np.empty((SIZE, SIZE, 3), np.float32)
    img[:, : SIZE // 2], img[:, SIZE // 2:] = left, right
    return img


# inputs: three flat images and one whose halves clip differently under the additive blend
HAND_INPUTS = np.stack([_const(0.25), _const(0.0), _const(1.0), _halves(0.75, 0.25)])
HAND_CLEAN = np.stack([_const(0.0), _const(0.5), _const(1.0)])
# mean pixel of each blend, worked out by hand (rows: inputs; columns: clean 0, 0.5, 1)
HAND_MEANS = {
    # clip(x + c, 0, 1); last row: (0.75 | 0.25) + 0.5 -> (1.0 | 0.75), mean 0.875, not 1.0
    "add": [[0.25, 0.75, 1.0], [0.0, 0.5, 1.0], [1.0, 1.0, 1.0], [0.5, 0.875, 1.0]],
    # 0.5 x + 0.5 c
    "alpha": [[0.125, 0.375, 0.625], [0.0, 0.25, 0.5], [0.5, 0.75, 1.0], [0.25, 0.5, 0.75]],
}


def _closed_form_entropy(m, a, k):
    """H(softmax([a m, 0, .., 0])) with z = e^{a m}: p = (z, 1, .., 1) / (z + k - 1), so
    H = log(z + k - 1) - a m z / (z + k - 1)."""
    z = math.exp(a * m)
    return math.log(z + k - 1) - a * m * z / (z + k - 1)


@pytest.mark.parametrize("mode", ["add", "alpha"])
@pytest.mark.parametrize("a,k", [(2.0, 3), (5.0, 2)])
def test_score_equals_the_hand_computed_entropy(tmp_path, mode, a, k):
    det = Strip.from_images(HAND_CLEAN, mode=mode)
    scanner = Scanner(om.mean_softmax_model(tmp_path, a=a, k=k), device="cpu", spec={"height": SIZE, "width": SIZE},
                      detector=det)
    s = scanner.score_arrays(HAND_INPUTS)
    expected = [1 - np.mean([_closed_form_entropy(m, a, k) for m in row]) / math.log(k) for row in HAND_MEANS[mode]]
    np.testing.assert_allclose(s.strip, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(s.labels[[0, 2, 3]], [0, 0, 0])  # input 1 (all zero) ties every class
    assert s.score_name == "strip" and s.query_labels.shape == (4, 0)
    np.testing.assert_array_equal(s.flagged, np.asarray(expected) >= 0.5)


def test_a_uniform_prediction_scores_zero_and_a_certain_one_scores_one():
    b, n, k = 2, 3, 4
    probs = np.empty(((1 + n) * b, k), np.float32)
    probs[:b] = 0.25
    probs[b:].reshape(n, b, k)[:, 0] = 0.25                 # input 0: every blend uniform
    probs[b:].reshape(n, b, k)[:, 1] = [0.0, 1.0, 0.0, 0.0]  # input 1: every blend certain (0 log 0 = 0)
    out = Strip(n_blends=n).score(np.zeros((1 + n) * b, np.int64), probs, b)
    np.testing.assert_allclose(out.scores["strip"], [0.0, 1.0], atol=1e-12)


def test_entropy_helpers():
    np.testing.assert_allclose(prediction_entropy(np.array([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]])), [math.log(2), 0.0])
    # rows are renormalized: a probability output off by rounding does not exceed log K
    assert prediction_entropy(np.array([[0.3336, 0.3336, 0.3336]]))[0] == pytest.approx(math.log(3), abs=1e-12)
    assert np.isnan(prediction_entropy(np.array([[np.nan, 0.5]])))[0]
    # histogram of [1, 1, 2, 3]: p = (1/2, 1/4, 1/4), H = 1.5 log 2
    np.testing.assert_allclose(label_entropy(np.array([[1, 2, 1, 3], [7, 7, 7, 7], [4, 5, 6, 0]])),
                               [1.5 * math.log(2), 0.0, math.log(4)])


# -- label-only models -----------------------------------------------------------------------
def test_label_fallback_is_the_normalized_histogram_entropy():
    b, n = 3, 4
    blend = np.array([[1, 1, 2, 3], [5, 5, 5, 5], [0, 1, 2, 3]])  # (b, n) blend labels
    labels = np.concatenate([[9, 9, 9], blend.T.ravel()])        # query-major: row j * b + k
    out = Strip(n_blends=n).score(labels, None, b)
    # 1 - H / log n: H = 1.5 log 2 over log 4 = 2 log 2 -> 0.25; all equal -> 1; all differ -> 0
    np.testing.assert_allclose(out.scores["strip"], [0.25, 1.0, 0.0], atol=1e-12)
    np.testing.assert_array_equal(out.labels, [9, 9, 9])
    one = Strip(n_blends=1).score(np.array([4, 2]), None, 1)
    assert one.scores["strip"].tolist() == [1.0]


def test_label_only_model_end_to_end(tmp_path, images):
    fx = om.trigger_labels_only(tmp_path)
    det = Strip(n_blends=6, seed=2)
    det.fit(om.make_images(30, seed=9, triggered_fraction=0.0))
    s = Scanner(fx.path, device="cpu", spec=fx.spec, detector=det).score_arrays(images)
    assert s.strip is not None
    expected = []
    for x in images:
        blend_labels = fx.predict(np.clip(x[None] + det.held_images, 0, 1))
        counts = np.array(list(Counter(blend_labels.tolist()).values())) / 6
        expected.append(1 - float(-(counts * np.log(counts)).sum()) / math.log(6))
    np.testing.assert_allclose(s.strip, expected, atol=1e-12)
    np.testing.assert_array_equal(s.labels, fx.predict(images))
    # a trigger corner survives every additive blend: one label, score 1
    assert (s.strip[om.is_triggered(images)] == 1).all()


# -- end to end on logits, against the twin ---------------------------------------------------
def _twin_probabilities(labels):
    logits = 8.0 * np.eye(om.NUM_CLASSES)[labels] + om._BIAS.astype(np.float64)
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("mode", ["add", "alpha"])
@pytest.mark.parametrize("name", ["trigger_nchw", "trigger_nhwc", "trigger_flat", "trigger_normalized_outside",
                                  "trigger_bgr", "trigger_probabilities"])
def test_scanner_scores_equal_the_direct_computation(tmp_path, images, name, mode):
    fx = getattr(om, name)(tmp_path)
    det = Strip(n_blends=5, mode=mode, seed=1)
    det.fit(np.rint(om.make_images(12, seed=4, triggered_fraction=0.0) * 255).astype(np.uint8))
    s = Scanner(fx.path, device="cpu", spec=fx.spec, detector=det, batch_size=7).score_arrays(images)
    half = np.float32(0.5)
    expected = []
    for x in images:
        blends = (np.clip(x[None] + det.held_images, 0, 1) if mode == "add"
                  else half * x[None] + half * det.held_images)
        h = -(lambda p: (p * np.log(p)).sum(axis=1))(_twin_probabilities(fx.predict(blends)))
        expected.append(1 - h.mean() / math.log(om.NUM_CLASSES))
    np.testing.assert_allclose(s.strip, expected, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(s.labels, fx.predict(images))
    if mode == "add":  # the trigger keeps every blend on class 0: low entropy, flagged
        assert s.flagged[om.is_triggered(images)].all()


def test_scores_do_not_depend_on_the_batch(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    det = Strip(n_blends=4)
    det.fit(om.make_images(10, seed=4, triggered_fraction=0.0))
    whole = Scanner(fx.path, device="cpu", detector=det, batch_size=len(images)).score_arrays(images).strip
    for batch_size in (1, 5, 7):
        part = Scanner(fx.path, device="cpu", detector=det, batch_size=batch_size).score_arrays(images).strip
        np.testing.assert_array_equal(part, whole)
    np.testing.assert_array_equal(
        Scanner(fx.path, device="cpu", detector=det).score_arrays(images[[5, 2, 9]]).strip, whole[[5, 2, 9]])


# -- the query buffer -------------------------------------------------------------------------
def _preprocessor(tmp_path, name):
    fx = getattr(om, name)(tmp_path)
    return fx, Scanner(fx.path, device="cpu", spec=fx.spec).model.preprocessor


@pytest.mark.parametrize("mode", ["add", "alpha"])
@pytest.mark.parametrize("name", ["trigger_nchw", "trigger_nhwc", "trigger_flat", "trigger_byte",
                                  "trigger_normalized_outside", "trigger_bgr"])
def test_query_j_of_input_k_is_row_j_b_plus_k(tmp_path, images, name, mode):
    fx, pre = _preprocessor(tmp_path, name)
    clean = om.make_images(6, seed=8, triggered_fraction=0.0)
    det = Strip.from_images(clean, mode=mode)
    x = images[:5]
    b, n = len(x), len(clean)
    out = np.full(((1 + n) * b,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(x, out, pre)
    half = np.float32(0.5)
    for k in range(b):
        np.testing.assert_allclose(out[k], om.to_model_input(x[k:k + 1], fx.spec)[0], rtol=1e-6, atol=1e-6)
        for j in range(1, n + 1):
            c = clean[j - 1]
            blend = np.clip(x[k] + c, 0, 1) if mode == "add" else half * x[k] + half * c
            np.testing.assert_allclose(out[j * b + k], om.to_model_input(blend[None], fx.spec)[0],
                                       rtol=1e-6, atol=1e-6)
            # and bit for bit what the scanner's own preprocessor makes of the blend
            assert np.array_equal(out[j * b + k].view(np.uint32), pre(blend[None])[0].view(np.uint32))


def test_bytes_and_unit_floats_give_the_same_bits(tmp_path):
    _, pre = _preprocessor(tmp_path, "trigger_normalized_outside")
    pixels = np.random.default_rng(0).integers(0, 256, (7, SIZE, SIZE, 3), dtype=np.uint8)
    det = Strip.from_images(np.random.default_rng(1).integers(0, 256, (3, SIZE, SIZE, 3), dtype=np.uint8))
    assert_bytes_and_floats_give_the_same_queries(det, pre, pixels)


def test_an_input_gets_the_same_queries_in_any_batch(tmp_path, images):
    _, pre = _preprocessor(tmp_path, "trigger_nchw")
    det = Strip(n_blends=3, seed=5)
    det.fit(om.make_images(8, seed=4, triggered_fraction=0.0))

    def queries(batch):
        out = np.empty((4 * len(batch),) + pre.model_shape, np.float32)
        det.build_queries(batch, out, pre)
        return out.reshape((4, len(batch)) + pre.model_shape)

    first, second = queries(images[0:5]), queries(images[3:10])
    for k in (3, 4):  # images 3 and 4 are in both batches
        assert np.array_equal(first[:, k], second[:, k - 3])


# -- the held clean images ----------------------------------------------------------------------
def test_fit_keeps_a_seeded_choice_without_replacement():
    pool = np.random.default_rng(0).integers(0, 256, (30, SIZE, SIZE, 3), dtype=np.uint8)
    det = Strip(n_blends=20, seed=3)
    det.fit(pool)
    chosen = np.random.default_rng(3).choice(30, 20, replace=False)
    assert len(set(chosen.tolist())) == 20
    held = det.held_images
    assert held.dtype == np.float32 and held.shape == (20, SIZE, SIZE, 3) and not held.flags.writeable
    assert np.array_equal(held, pool[chosen].astype(np.float32) / BYTE_MAX)
    again = Strip(n_blends=20, seed=3)
    again.fit(pool)
    assert np.array_equal(again.held_images, held)
    other = Strip(n_blends=20, seed=4)
    other.fit(pool)
    assert not np.array_equal(other.held_images, held)
    unit = Strip(n_blends=20, seed=3)
    unit.fit(pool.astype(np.float32) / BYTE_MAX)
    assert np.array_equal(unit.held_images, held)


def test_from_images_recreates_the_detector_exactly(tmp_path, images):
    _, pre = _preprocessor(tmp_path, "trigger_nchw")
    det = Strip(n_blends=4, mode="alpha", seed=7)
    det.fit(om.make_images(9, seed=4, triggered_fraction=0.0))
    stored = np.array(det.held_images)  # what a calibration file would keep
    back = Strip.from_images(stored, mode=det.mode, seed=det.seed)
    assert back.settings() == det.settings() == {"n_blends": 4, "mode": "alpha", "seed": 7}
    assert np.array_equal(back.held_images, det.held_images)
    a = np.empty((5 * 6,) + pre.model_shape, np.float32)
    b = np.empty_like(a)
    det.build_queries(images[:6], a, pre)
    back.build_queries(images[:6], b, pre)
    assert np.array_equal(a.view(np.uint32), b.view(np.uint32))


def test_the_interface_values():
    det = Strip()
    assert (det.name, det.score_names, det.n_blends, det.mode, det.seed) == ("strip", ("strip",), 20, "add", 0)
    assert det.queries_per_input == 21 and det.clean_images_needed == 20
    assert det.query_names() == [] and det.held_images is None
    assert det.describe() == "20 additive blends" and Strip.default_threshold == 0.5
    assert Strip(n_blends=1, mode="alpha").describe() == "1 alpha (0.5/0.5) blend"
    assert Strip(n_blends=7).queries_per_input == 8


# -- errors ----------------------------------------------------------------------------------
def test_without_fit_the_queries_ask_for_a_calibration(tmp_path, images):
    fx, pre = _preprocessor(tmp_path, "trigger_nchw")
    with pytest.raises(ScannerError, match=r"STRIP needs clean images from a calibration "
                                           r"\(scanner calibrate MODEL CLEAN\.\.\. -o cal\.json, then scan with --calibration cal\.json\)") as exc:
        Strip().build_queries(images[:2], np.empty((42,) + pre.model_shape, np.float32), pre)
    assert "\n" not in str(exc.value)
    scanner = Scanner(fx.path, device="cpu", detector=Strip(n_blends=3))  # building one needs no images
    with pytest.raises(ScannerError, match="needs clean images"):
        scanner.score_arrays(images[:2])


def test_held_images_of_another_size_are_refused(tmp_path, images):
    _, pre = _preprocessor(tmp_path, "trigger_nchw")
    det = Strip.from_images(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ScannerError, match="4x4x3 but the inputs are 8x8x3"):
        det.build_queries(images[:2], np.empty((6,) + pre.model_shape, np.float32), pre)


@pytest.mark.parametrize("kwargs,match", [
    ({"n_blends": 0}, "n_blends"), ({"n_blends": 257}, "n_blends"), ({"n_blends": 2.5}, "n_blends"),
    ({"n_blends": True}, "n_blends"), ({"n_blends": "20"}, "n_blends"), ({"mode": "mul"}, "mode.*'add'.*'alpha'"),
    ({"mode": None}, "mode"), ({"seed": -1}, "seed"), ({"seed": 1.5}, "seed"),
])
def test_invalid_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Strip(**kwargs)


@pytest.mark.parametrize("images,match", [
    (np.zeros((3, SIZE, SIZE, 3), np.uint8), "at least 4 clean images, got 3"),
    (np.zeros((SIZE, SIZE, 3), np.uint8), r"shaped \(n, H, W, C\)"),
    (np.full((5, SIZE, SIZE, 3), 1.5, np.float32), r"in \[0, 1\]"),
    (np.full((5, SIZE, SIZE, 3), np.nan, np.float32), "finite"),
    (np.zeros((5, SIZE, SIZE, 3), np.int64), r"shaped \(n, H, W, C\)"),
    (np.zeros((5, SIZE, SIZE, 3), np.uint16), "uint8"),
])
def test_fit_refuses_unusable_images(images, match):
    det = Strip(n_blends=4)
    with pytest.raises(ValueError, match=match):
        det.fit(images)
    assert det.held_images is None


def test_from_images_refuses_too_many_or_none():
    with pytest.raises(ValueError, match="at most 256"):
        Strip.from_images(np.zeros((257, 2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="non-empty"):
        Strip.from_images(np.zeros((0, 2, 2, 3), np.uint8))


# -- the preview ----------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["add", "alpha"])
def test_preview_is_the_first_blends_the_model_is_given(tmp_path, images, mode):
    fx, pre = _preprocessor(tmp_path, "trigger_normalized_outside")
    clean = om.make_images(6, seed=8, triggered_fraction=0.0)
    det = Strip.from_images(clean, mode=mode)
    x = images[:3]
    b = len(x)
    out = np.full(((1 + len(clean)) * b,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(x, out, pre)
    for k in range(b):
        shown = det.preview(x[k])
        assert [p.caption for p in shown] == ["blend 1", "blend 2", "blend 3", "blend 4"]
        assert all(p.query is None for p in shown)
        for j, p in enumerate(shown, start=1):
            assert p.image.dtype == np.float32 and p.image.shape == x[k].shape
            unit, c = x[k], clean[j - 1]  # an independent construction, in pixel space
            expected = np.clip(unit + c, 0, 1) if mode == "add" else 0.5 * unit + 0.5 * c
            np.testing.assert_allclose(p.image, expected, atol=1e-6)
            # normalized, bit for bit the query row build_queries writes
            assert np.array_equal(pre(p.image[None])[0].view(np.uint32), out[j * b + k].view(np.uint32))


def test_preview_needs_held_images_and_stops_at_the_blends_held():
    assert Strip().preview(np.zeros((4, 4, 3), np.float32)) == []
    det = Strip.from_images(np.full((2, 4, 4, 3), 0.25, np.float32))
    assert len(det.preview(np.zeros((4, 4, 3), np.float32))) == 2
