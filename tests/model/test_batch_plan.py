"""Batch plans: symbolic, fixed batch 1 rewritten and verified, padded, one input per call."""

import numpy as np
import pytest

import onnx_models as om
from scanner import Scanner


@pytest.mark.parametrize("name,mode", [
    ("trigger_nchw", "symbolic"), ("trigger_fixed_batch1", "rewritten"),
    ("trigger_fixed_batch1_unrewritable", "per-sample"), ("trigger_fixed_batch4", "padded"),
])
def test_batch_plan(tmp_path, name, mode):
    fx = getattr(om, name)(tmp_path)
    assert Scanner(fx.path, device="cpu", spec=fx.spec).model.plan.mode == mode


def test_batch_dependent_model_runs_one_input_per_call(tmp_path):
    """DynamicQuantizeLinear: an input's outputs depend on its companions in a call. The plan
    says so, and the scan's labels are those of per-image ONNX Runtime."""
    fx = om.dynamic_quant(tmp_path)
    scanner = Scanner(fx.path, device="cpu")
    plan = scanner.model.plan
    assert plan.mode == "per-sample" and "depend on the other inputs of a call" in plan.note
    assert "one input per call" in str(scanner.model) and scanner.settings().batch_mode == "per-sample"
    rng = np.random.default_rng(0)  # off the byte grid, dark and bright side by side
    bright = np.r_[np.full(20, 0.006), np.ones(20)].astype(np.float32)[:, None, None, None]
    x = rng.random((40, 8, 8, 3), dtype=np.float32) * bright
    together = ort_labels(fx, x)
    per_image = fx.extra["per_image"](x)
    assert (together != per_image).sum() > 0  # the fixture really is batch-dependent
    np.testing.assert_array_equal(scanner.score_arrays(x).labels, per_image)


def ort_labels(fx, x):
    import onnxruntime as ort

    session = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])
    return session.run([fx.output_name], {fx.input_name: om.to_model_input(x, fx.spec)})[0].argmax(1)


def test_batch_independent_models_keep_their_fast_plan(tmp_path):
    from scanner.model.runner import ROWS_PER_CALL

    for builder in (om.trigger_nchw, om.trigger_probabilities, om.trigger_labels_only):
        model = Scanner(builder(tmp_path).path, device="cpu").model
        assert model.plan.mode == "symbolic" and model.runner.max_batch == ROWS_PER_CALL


def test_fixed_batch_per_sample_pads_with_copies_of_the_input():
    from scanner.model.runner import Runner

    class Session:
        calls = []

        def run(self, names, feed, run_options=None):
            (x,) = feed.values()
            assert len(x) == 4
            self.calls.append(x.reshape(4, -1)[:, 0].tolist())
            return [x.reshape(4, -1).sum(1, keepdims=True)]

    session = Session()
    batch = np.arange(6, dtype=np.float32).reshape(3, 2)
    out = Runner(session, input_name="x", input_dtype="float32", output_name="y", max_batch=1, pad_to=4).run(batch)
    assert session.calls == [[0.0] * 4, [2.0] * 4, [4.0] * 4]
    np.testing.assert_array_equal(out[:, 0], [1, 5, 9])
