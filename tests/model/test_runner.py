"""The runner: float batches in, the chosen output out, chunked and padded as the plan says."""

import numpy as np
import pytest

from scanner.model.runner import ROWS_PER_CALL, Runner, cast_input, labels_from_output, to_probabilities


class RecordingSession:
    """Stands in for an ONNX Runtime session: output row = [sum of the input row, batch size]."""

    def __init__(self, fixed=None):
        self.fixed = fixed
        self.calls = []

    def run(self, names, feed, run_options=None):
        (x,) = feed.values()
        self.calls.append(len(x))
        if self.fixed is not None:
            assert len(x) == self.fixed
        return [np.stack([x.reshape(len(x), -1).sum(1), np.full(len(x), len(x))], axis=1)]


def batch(n):
    return np.arange(n * 4, dtype=np.float32).reshape(n, 2, 2)


def test_symbolic_batch_is_one_call():
    session = RecordingSession()
    out = Runner(session, input_name="x", input_dtype="float32", output_name="y").run(batch(10))
    assert session.calls == [10] and out.shape == (10, 2)


def test_any_batch_model_gets_calls_of_at_most_rows_per_call_and_the_same_rows_back():
    """The loader caps the calls of a model that takes any batch (activations set the memory)."""
    session = RecordingSession()
    x = batch(2 * ROWS_PER_CALL + 5)
    out = Runner(session, input_name="x", input_dtype="float32", output_name="y", max_batch=ROWS_PER_CALL).run(x)
    assert session.calls == [ROWS_PER_CALL, ROWS_PER_CALL, 5]
    np.testing.assert_array_equal(out[:, 0], x.reshape(len(x), -1).sum(1))


def test_per_sample_runs_one_at_a_time():
    session = RecordingSession(fixed=1)
    out = Runner(session, input_name="x", input_dtype="float32", output_name="y", max_batch=1).run(batch(3))
    assert session.calls == [1, 1, 1]
    np.testing.assert_array_equal(out[:, 0], batch(3).reshape(3, -1).sum(1))


def test_fixed_batch_is_padded_and_only_real_rows_come_back():
    session = RecordingSession(fixed=4)
    out = Runner(session, input_name="x", input_dtype="float32", output_name="y", max_batch=4, pad=True).run(batch(6))
    assert session.calls == [4, 4] and len(out) == 6
    np.testing.assert_array_equal(out[:, 0], batch(6).reshape(6, -1).sum(1))


def test_uint8_inputs_are_rounded_and_clipped():
    got = cast_input(np.array([-3.0, 0.4, 0.6, 254.5, 300.0], np.float32), "uint8")
    assert got.dtype == np.uint8 and got.tolist() == [0, 0, 1, 254, 255]


def test_labels_from_scores_and_from_labels():
    assert labels_from_output(np.array([[0.1, 0.9], [2.0, -1.0]]), "scores", 2).tolist() == [1, 0]
    assert labels_from_output(np.array([[3], [1]]), "labels", 2).tolist() == [3, 1]


def test_probabilities_kept_or_softmaxed():
    probs = np.array([[0.2, 0.8], [0.5, 0.5]], np.float32)
    np.testing.assert_array_equal(to_probabilities(probs, 2), probs)
    logits = np.array([[0.0, np.log(3.0)]], np.float32)
    np.testing.assert_allclose(to_probabilities(logits, 1), [[0.25, 0.75]], rtol=1e-6)


@pytest.mark.parametrize("dtype", ["float16", "float64"])
def test_other_float_inputs_are_cast(dtype):
    assert cast_input(np.ones(2, np.float32), dtype).dtype == np.dtype(dtype)


def test_a_model_returning_the_wrong_number_of_rows_is_refused():
    from scanner.errors import ModelLoadError

    class OneRow(RecordingSession):
        def run(self, names, feed, run_options=None):
            return [np.zeros((1, 10), np.float32)]  # 10 values: reshape(2, -1) would silently work

    with pytest.raises(ModelLoadError, match=r"the model returned 1 rows for a batch of 2 \(output 'y' shaped \(1, 10\)\)"):
        Runner(OneRow(), input_name="x", input_dtype="float32", output_name="y").run(batch(2))


def test_a_model_failing_while_running_is_one_model_error():
    from scanner.errors import ModelLoadError

    class Fails(RecordingSession):
        def run(self, names, feed, run_options=None):
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : Non-zero status code\\nReshape")

    with pytest.raises(ModelLoadError, match="the model failed while running a batch of 3 inputs: RuntimeError"):
        Runner(Fails(), input_name="x", input_dtype="float32", output_name="y").run(batch(3))


def test_the_default_call_limit_grows_with_the_call_and_stops_a_call_that_never_returns(tmp_path, monkeypatch):
    """auto: 60 s plus 60 s per million input values; on by default (here with a 0.5 s base)."""
    import time

    import onnxruntime as ort

    from hanging_models import loop_model
    from scanner.model import runner
    from scanner.model.runner import CallTimedOut, call_limit, guarded_run

    assert call_limit("auto", 6 * 3 * 8 * 8) == pytest.approx(60.07, abs=0.01)
    assert call_limit("auto", 1 << 24) == pytest.approx(60 + 60 * 16.777216)
    assert call_limit(5.0, 1 << 24) == 5.0 and call_limit(None, 10) is None
    session = ort.InferenceSession(loop_model(tmp_path / "loop.onnx", only_black=False))
    monkeypatch.setattr(runner, "AUTO_BASE_S", 0.5)
    started = time.monotonic()
    with pytest.raises(CallTimedOut, match="per-call limit of 0.512 s"):  # 0.5 s + 60 us x 192 values
        guarded_run(session, "logits", {"input": np.zeros((1, 3, 8, 8), np.float32)})
    assert time.monotonic() - started < 10
