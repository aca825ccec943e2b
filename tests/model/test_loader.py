"""The model boundary: the file read once, the spec resolved, a verified plan, a description."""

import hashlib

import numpy as np

import onnx_models as om
from scanner.model.loader import load_model
from scanner.model.onnx_file import read_model_file


def test_one_read_gives_hash_graph_and_facts(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    raw, proto, info = read_model_file(fx.path)
    assert raw == fx.path.read_bytes()
    assert info.sha256 == hashlib.sha256(raw).hexdigest()
    assert info.input.name == "input" and [o.name for o in info.outputs] == ["logits"]
    assert proto.graph.node


def test_described_model_is_what_inspect_prints(tmp_path):
    fx = om.trigger_normalized_outside(tmp_path, embed_spec=True)
    model = load_model(fx.path, device="cpu")
    text = str(model)
    assert text.splitlines()[0] == f"model        {fx.path}"
    assert "output used  logits (scores: the only [N, K] float output)" in text
    assert "batch        symbolic" in text and "(model metadata)" in text
    doc = model.describe()
    assert doc["sha256"] == model.info.sha256 and doc["batch"] == "symbolic"
    assert doc["spec_sources"]["mean"] == "model metadata"


def test_predict_gives_the_twins_labels(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    model = load_model(fx.path, device="cpu", options=fx.spec)
    x = om.make_images(10, seed=1)
    labels, probs = model.predict(model.preprocessor(x), probabilities=True)
    np.testing.assert_array_equal(labels, fx.predict(x))
    assert probs.shape == (10, 10)


def test_plan_is_fixed_at_load_and_kept_through_a_scan(tmp_path, images):
    from scanner import Scanner

    fx = om.trigger_fixed_batch1(tmp_path)
    scanner = Scanner(fx.path, device="cpu", spec=fx.spec)
    plan, session = scanner.model.plan, scanner.model.session
    scanner.score_arrays(images)
    assert scanner.model.plan is plan and scanner.model.session is session and plan.mode == "rewritten"
