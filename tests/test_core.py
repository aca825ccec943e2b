"""The scanner on hand-built models whose labels are known in advance.

Each fixture model has an exact numpy twin (tests/onnx_models.py). For every model quirk the
scanner's vectorized path must equal (a) the twin's SCALE-UP result and (b) a brute-force loop
that feeds one image at one scale at a time through ONNX Runtime, with preprocessing written
independently of the scanner.
"""

import numpy as np
import onnxruntime as ort
import pytest

import onnx_models as om
from helpers import RGB_FIXTURES, SCALES, brute_force, write_pngs
from scanner import Scanner
from scanner.errors import ModelLoadError


@pytest.mark.parametrize("name", RGB_FIXTURES)
def test_vectorized_scan_equals_twin_and_brute_force(tmp_path, images, name):
    fx = getattr(om, name)(tmp_path)
    folder = write_pngs(tmp_path / "imgs", images)
    scanner = Scanner(fx.path, device="cpu", spec=fx.spec, batch_size=7)  # 7: batches of uneven size
    result = scanner.scan([folder])
    assert result.n_scored == len(images) and not result.failures
    s = result.scores
    # the twin
    np.testing.assert_array_equal(s.labels, fx.predict(images))
    np.testing.assert_array_equal(s.spc, om.known_spc(images, SCALES, fx.predict))
    # brute force, one forward pass per image and scale
    labels, scaled = brute_force(fx, images)
    np.testing.assert_array_equal(s.labels, labels)
    np.testing.assert_array_equal(s.scaled_labels, scaled)
    # the triggered half is flagged, with SPC 1
    triggered = om.is_triggered(images)
    assert s.flagged[triggered].all() and (s.spc[triggered] == 1).all()


def test_grayscale_model(tmp_path, images):
    fx = om.trigger_gray(tmp_path)
    folder = write_pngs(tmp_path / "imgs", images)  # RGB files: the scanner converts to L
    result = Scanner(fx.path, device="cpu", spec=fx.spec).scan([folder])
    gray = om.rgb_to_gray(images)
    np.testing.assert_array_equal(result.scores.labels, fx.predict(gray))
    np.testing.assert_array_equal(result.scores.spc, om.known_spc(gray, SCALES, fx.predict))


def test_score_arrays_matches_scan(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    scanner = Scanner(fx.path, device="cpu")
    a = scanner.score_arrays(images)
    b = scanner.score_arrays(np.rint(images * 255).astype(np.uint8))
    np.testing.assert_array_equal(a.scaled_labels, b.scaled_labels)
    np.testing.assert_array_equal(a.spc, om.known_spc(images))


def test_normalization_is_applied_after_clipping(tmp_path, images):
    """The common bug scales the normalized tensor; this model tells the two apart."""
    fx = om.trigger_normalized_outside(tmp_path)
    s = Scanner(fx.path, device="cpu", spec=fx.spec).score_arrays(images)
    np.testing.assert_array_equal(s.spc, om.known_spc(images, SCALES, fx.predict))
    # what the bug would produce: clip(n * normalized) fed to the model
    session = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])
    normalized = om.to_model_input(images, fx.spec)
    base = session.run(None, {fx.input_name: normalized})[0].argmax(1)
    buggy = np.mean([session.run(None, {fx.input_name: np.clip(n * normalized, 0, 1)})[0].argmax(1) == base
                     for n in SCALES], axis=0)
    assert not np.array_equal(buggy, s.spc), "fixture cannot tell the bug apart; make it sharper"


@pytest.mark.parametrize("name", ["trigger_nchw", "trigger_probabilities", "trigger_fixed_batch4"])
def test_prob_consistency_equals_brute_force(tmp_path, images, name):
    fx = getattr(om, name)(tmp_path)
    scanner = Scanner(fx.path, device="cpu", spec=fx.spec, score="prob-consistency", threshold=0.9)
    s = scanner.score_arrays(images)
    session = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])

    def probs(img):
        x = om.to_model_input(img[None], fx.spec)
        if fx.batch:
            x = np.concatenate([x] * fx.batch)
        out = session.run([fx.output_name], {fx.input_name: x})[0][0].astype(np.float64)
        if fx.output_kind == "probabilities":
            return out
        e = np.exp(out - out.max())
        return e / e.sum()

    expected = np.array([np.mean([probs(om.scale_images(img[None], n)[0])[y] for n in SCALES])
                         for img, y in zip(images, s.labels)])
    np.testing.assert_allclose(s.prob_consistency, expected, rtol=1e-5)
    np.testing.assert_array_equal(s.flagged, expected >= 0.9)
    assert s.flagged[om.is_triggered(images)].all()


def test_prob_consistency_needs_scores(tmp_path):
    fx = om.trigger_labels_only(tmp_path)
    assert Scanner(fx.path, device="cpu").score_arrays(om.make_images(4)).prob_consistency is None
    with pytest.raises(Exception, match="labels only"):
        Scanner(fx.path, device="cpu", score="prob-consistency")


# -- garbage is failed, not scored (issue 12, case 7) -----------------------------------------
def _reduce_model(tmp_path, name, tail_nodes, k):
    import onnx
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"])] + tail_nodes
    graph = helper.make_graph(
        nodes, name, [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, None if k is None else ["N", k])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("half", TensorProto.FLOAT, [], [0.5])])
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def test_inputs_whose_outputs_are_nan_fail_one_by_one(tmp_path):
    from onnx import helper

    # logits = [log(mean - 0.5), 0]: NaN for dark images, finite once the mean passes 0.5
    path = _reduce_model(tmp_path, "nan_dark", [helper.make_node("Sub", ["m1", "half"], ["d"]),
                                                helper.make_node("Log", ["d"], ["l"]),
                                                helper.make_node("Sub", ["d", "d"], ["z"]),
                                                helper.make_node("Concat", ["l", "z"], ["logits"], axis=1)], 2)
    x = np.stack([np.full((8, 8, 3), v, np.float32) for v in (0.9, 0.1, 0.8, 0.02)])
    scanner = Scanner(path, device="cpu", spec={"height": 8, "width": 8})
    inputs = _array_inputs(x)
    result = scanner.scan(inputs)
    assert result.indices.tolist() == [0, 2]
    assert [i for i, _ in result.failures] == [1, 3]
    assert all("NaN or infinite" in reason for _, reason in result.failures)


def test_a_one_class_model_is_refused(tmp_path):
    from onnx import helper
    from scanner.errors import ModelLoadError

    # the output's shape is not declared, so only a run shows it has one column
    path = _reduce_model(tmp_path, "one_class", [helper.make_node("Identity", ["m1"], ["logits"])], None)
    scanner = Scanner(path, device="cpu", spec={"height": 8, "width": 8})
    with pytest.raises(ModelLoadError, match="gives 1 class score per input; a classifier with at least 2"):
        scanner.scan(_array_inputs(np.zeros((2, 8, 8, 3), np.float32)))


def _array_inputs(x):
    from scanner.inputs.find import InputSet, MemoryArray

    inputs = InputSet()
    inputs.add_array(MemoryArray(x))
    return inputs


def test_scan_timeout_stops_a_model_call_in_flight_and_lists_the_rest(tmp_path):
    import time

    from hanging_models import loop_model

    scanner = Scanner(loop_model(tmp_path / "black.onnx", only_black=True), device="cpu",
                      spec={"height": 8, "width": 8}, batch_size=2)
    x = np.full((5, 8, 8, 3), 0.5, np.float32)
    x[2:4] = 0  # the second batch is all black: the model loops
    started = time.monotonic()
    result = scanner.scan(_array_inputs(x), timeout=1.0)
    assert time.monotonic() - started < 10
    assert result.indices.tolist() == [0, 1] and [i for i, _ in result.failures] == [2, 3, 4]
    assert result.incomplete.startswith("the time limit of 1 s was reached after 2 of 5 inputs")
    assert scanner.scan(_array_inputs(x[:2])).n_scored == 2  # the session works again afterwards


def test_a_model_call_that_never_returns_is_stopped_by_the_per_call_watchdog(tmp_path):
    """No time limit asked for: the per-call watchdog (call_timeout, default 600 s, here 1 s)
    stops the looping call, the scan ends there, the rest listed as not scored."""
    import time

    from hanging_models import loop_model
    from scanner.model.runner import DEFAULT_CALL_TIMEOUT

    path = loop_model(tmp_path / "black.onnx", only_black=True)
    assert Scanner(path, device="cpu", spec={"height": 8, "width": 8}).model.runner.call_timeout == DEFAULT_CALL_TIMEOUT == "auto"
    scanner = Scanner(path, device="cpu", spec={"height": 8, "width": 8}, batch_size=2, call_timeout=1)
    x = np.full((5, 8, 8, 3), 0.5, np.float32)
    x[2:4] = 0
    started = time.monotonic()
    result = scanner.scan(_array_inputs(x))
    assert time.monotonic() - started < 10
    assert result.indices.tolist() == [0, 1] and [i for i, _ in result.failures] == [2, 3, 4]
    assert "did not return within the per-call limit of 1 s" in result.incomplete
    assert result.incomplete.endswith("after 2 of 5 inputs")
    assert scanner.scan(_array_inputs(x[:2])).n_scored == 2  # the session works again afterwards
    with pytest.raises(ModelLoadError, match="per-call limit of 0.5 s"):  # one that never returns at load
        Scanner(loop_model(tmp_path / "loop.onnx", only_black=False), device="cpu", call_timeout=0.5)


_BAD_CALLS = {
    "scan([None])": lambda s, fx: s.scan([None]),
    "scan(5)": lambda s, fx: s.scan(5),
    "scan(['a\\0b'])": lambda s, fx: s.scan(["a\0b"]),
    "scan(ndarray of 5 channels)": lambda s, fx: s.scan(np.zeros((2, 8, 8, 5), np.uint8)),
    "Scanner(None)": lambda s, fx: Scanner(None),
    "Scanner(5)": lambda s, fx: Scanner(5),
    "calibration=123": lambda s, fx: Scanner(fx.path, calibration=123),
    "spec_file=5": lambda s, fx: Scanner(fx.path, spec_file=5),
    "score=5": lambda s, fx: Scanner(fx.path, score=5),
    "detectors=['teco', 5]": lambda s, fx: Scanner(fx.path, detectors=["teco", 5]),
    "detectors=5": lambda s, fx: Scanner(fx.path, detectors=5),
    "detector_params=5": lambda s, fx: Scanner(fx.path, detectors="teco", detector_params=5),
    "score_arrays(5 channels)": lambda s, fx: s.score_arrays(np.zeros((2, 8, 8, 5), np.uint8)),
    "score_arrays(ragged list)": lambda s, fx: s.score_arrays([[1], [1, 2]]),
    # one 20000 x 20000 image, without allocating it: refused before any work, as an image file is
    "score_arrays(20000 x 20000)": lambda s, fx: s.score_arrays(
        np.lib.stride_tricks.as_strided(np.zeros(1, np.uint8), (1, 20000, 20000, 3), (0, 0, 0, 0))),
    "scan(on_batch='x')": lambda s, fx: s.scan(np.zeros((1, 8, 8, 3), np.uint8), on_batch="x"),
    "scan(progress='x')": lambda s, fx: s.scan(np.zeros((1, 8, 8, 3), np.uint8), progress="x"),
    "calibrate(model, [None])": lambda s, fx: __import__("scanner.calibrating").calibrating.calibrate(fx.path, [None]),
    "calibrate(detectors=['scaleup', 5])": lambda s, fx: __import__("scanner.calibrating").calibrating.calibrate(
        fx.path, np.zeros((4, 8, 8, 3), np.uint8), detectors=["scaleup", 5]),
}


@pytest.mark.parametrize("call", list(_BAD_CALLS))
def test_bad_library_arguments_raise_scanner_errors(tmp_path, call):
    """Every bad argument is a ScannerError naming it, never TypeError/ValueError/AttributeError."""
    from scanner.errors import ScannerError

    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    scanner = Scanner(fx.path, device="cpu")
    with pytest.raises(ScannerError) as info:
        _BAD_CALLS[call](scanner, fx)
    assert type(info.value).__module__ == "scanner.errors" and "\n" not in str(info.value)


def test_scan_takes_an_image_array_and_one_bytes_path(tmp_path):
    """An ndarray is a batch of images (as score_arrays takes it); bytes name one path."""
    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    scanner = Scanner(fx.path, device="cpu")
    x = om.make_images(6, seed=2, triggered_fraction=0.5)
    result = scanner.scan(x)
    assert result.n_scored == 6 and next(result.records())["input"] == "array[0]"
    np.testing.assert_array_equal(result.scores.score, scanner.score_arrays(x).score)
    folder = write_pngs(tmp_path / "imgs", x)
    assert scanner.scan(str(folder).encode()).n_scored == 6
