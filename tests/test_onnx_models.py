"""The hand-built ONNX fixtures really do what their numpy twins say (ONNX Runtime only, no
scanner code), and the broken ones really are broken."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

try:  # tests/ as a package, or tests/ on sys.path (pytest's default rootdir-less import)
    from . import onnx_models as om
except ImportError:
    import onnx_models as om

SCALES_WITH_ONE = (1, 3, 5, 7, 9, 11)


def session(model) -> ort.InferenceSession:
    """An ORT CPU session from a path or a ModelProto, warnings silenced."""
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])


def spread(total: int, n: int) -> np.ndarray:
    """n non-negative ints <= 255 summing to ``total``, as even as possible."""
    assert 0 <= total <= 255 * n
    values = np.full(n, total // n, dtype=np.int64)
    values[: total % n] += 1
    return values


def byte_image(corner_sum: int, total_sum: int, size: int = 8) -> np.ndarray:
    """An RGB image on the 1/255 grid with given byte sums over the corner patch and the image."""
    q = np.zeros((size, size, 3), dtype=np.int64)
    mask = np.zeros((size, size, 3), dtype=bool)
    mask[-2:, -2:, :] = True
    q[mask] = spread(corner_sum, int(mask.sum()))
    q[~mask] = spread(total_sum - corner_sum, int((~mask).sum()))
    return q.astype(np.float32) / np.float32(255)


def tie_images() -> np.ndarray:
    """Images sitting exactly on the rule's boundaries (8x8 RGB: corner 12 values, image 192)."""
    images = [
        byte_image(2754, 5440 * 2),  # corner == 0.9 exactly (not a trigger), 9g == 2 exactly -> 3
        byte_image(2755, 5440 * 2),  # corner just above 0.9 -> 0
        byte_image(2753, 5440 * 2 - 1),  # 9g just below 2 -> 2
    ]
    images += [byte_image(0, 5440 * m) for m in range(0, 9)]  # 9g == m exactly -> 1 + m
    images += [byte_image(0, 5440 * m - 1) for m in range(1, 9)]  # just below -> m
    return np.stack(images)


def channel_images(size: int = 8) -> np.ndarray:
    """Images whose corner patch is hot in ONE channel only, and channel-unbalanced images."""
    base = om.make_images(6, size=size, seed=11, triggered_fraction=0.0, max_value=0.2)
    out = []
    for c in range(3):
        x = base[c].copy()
        x[-2:, -2:, c] = 1.0
        out.append(x)
    for c in range(3):
        x = base[3 + c].copy()
        x[..., c] = np.minimum(1.0, x[..., c] * 4)
        out.append(x)
    return np.stack(out)


def standard_images(size: int = 8) -> np.ndarray:
    """Triggered and clean images, ties and channel-asymmetric ones, at scales 1, 3, ..., 11."""
    parts = [om.make_images(24, size=size, seed=3, triggered_fraction=0.25, max_value=0.9), channel_images(size)]
    if size == 8:
        parts.append(tie_images())
    x = np.concatenate(parts)
    return np.concatenate([om.scale_images(x, n) for n in SCALES_WITH_ONE])


def run_labels(fx: om.Fixture, model_input: np.ndarray, sess: ort.InferenceSession | None = None) -> np.ndarray:
    """Labels the model gives on an already preprocessed batch, honouring a fixed batch size."""
    sess = sess or session(fx.path)
    n = len(model_input)
    step = fx.batch or n
    pad = (-n) % step
    if pad:
        model_input = np.concatenate([model_input, np.zeros((pad,) + model_input.shape[1:], model_input.dtype)])
    outs = []
    for i in range(0, len(model_input), step):
        chunk = model_input[i:i + step]
        feed = {fx.input_name: chunk}
        if "labels" in [v.name for v in sess.get_inputs()]:
            feed["labels"] = np.zeros(len(chunk), dtype=np.int64)
        outs.append(sess.run([fx.output_name], feed)[0])
    out = np.concatenate(outs)[:n]
    if fx.output_kind == "labels":
        assert out.dtype == np.int64 and out.shape == (n,)
        return out
    assert out.dtype == np.float32 and out.shape == (n, fx.num_classes)
    return out.argmax(axis=1).astype(np.int64)


def twin_images(fx: om.Fixture, rgb: np.ndarray) -> np.ndarray:
    return om.rgb_to_gray(rgb) if fx.predict_input == "gray" else rgb


# -- every loadable fixture, fed as its spec says, gives predict's labels ---------------------
FIXTURES = {
    "nchw": lambda d: om.trigger_nchw(d),
    "nchw_size32": lambda d: om.trigger_nchw(d, size=32),
    "nchw_opset11": lambda d: om.trigger_old_opset(d),
    "nchw_opset13": lambda d: om.trigger_old_opset(d, opset=13),
    "nchw_opset18": lambda d: om.trigger_nchw(d, opset=18),
    "nchw_opset21": lambda d: om.trigger_nchw(d, opset=21),
    "nhwc": lambda d: om.trigger_nhwc(d),
    "flat": lambda d: om.trigger_flat(d),
    "flat_size32": lambda d: om.trigger_flat(d, size=32),
    "fixed_batch1": lambda d: om.trigger_fixed_batch1(d),
    "fixed_batch1_value_info": lambda d: om.trigger_fixed_batch1(d, infer_shapes=True),
    "fixed_batch1_unrewritable_wrong": lambda d: om.trigger_fixed_batch1_unrewritable(d),
    "fixed_batch1_unrewritable_error": lambda d: om.trigger_fixed_batch1_unrewritable(d, failure="error"),
    "fixed_batch4": lambda d: om.trigger_fixed_batch4(d),
    "byte": lambda d: om.trigger_byte(d),
    "normalized_outside": lambda d: om.trigger_normalized_outside(d),
    "normalized_inside": lambda d: om.trigger_normalized_inside(d),
    "gray": lambda d: om.trigger_gray(d),
    "bgr": lambda d: om.trigger_bgr(d),
    "labels_only": lambda d: om.trigger_labels_only(d),
    "probabilities": lambda d: om.trigger_probabilities(d),
    "two_outputs": lambda d: om.trigger_two_outputs(d),
    "logits_and_label": lambda d: om.trigger_logits_and_label(d),
    "label_and_logits": lambda d: om.trigger_logits_and_label(d, label_first=True),
    "external_data": lambda d: om.trigger_external_data(d),
    "initializer_inputs": lambda d: om.trigger_initializer_inputs(d),
    "unsorted_nodes": lambda d: om.trigger_unsorted_nodes(d),
    "two_data_inputs_fed_labels": lambda d: om.two_data_inputs(d),
}


@pytest.mark.parametrize("key", list(FIXTURES))
def test_model_matches_twin(key, tmp_path):
    fx = FIXTURES[key](tmp_path)
    assert fx.path.is_file() and fx.predict is not None
    assert (fx.expected_error is None) == (key != "two_data_inputs_fed_labels")
    size = fx.spec["height"]
    images = twin_images(fx, standard_images(size))
    expected = fx.predict(images)
    got = run_labels(fx, om.to_model_input(images, fx.spec))
    mismatch = np.flatnonzero(got != expected)
    assert mismatch.size == 0, f"{key}: {mismatch.size} mismatches, first {mismatch[:5]}: {got[mismatch[:5]]} vs {expected[mismatch[:5]]}"
    # the batch is a meaningful test: triggered and several clean classes
    assert 0 in expected and len(np.unique(expected)) >= 5, np.bincount(expected)


@pytest.mark.parametrize("key", list(FIXTURES))
def test_model_declared_io(key, tmp_path):
    fx = FIXTURES[key](tmp_path)
    model = onnx.load(str(fx.path))
    assert model.opset_import[0].version == fx.opset
    sess = session(fx.path)
    inputs = {v.name: v for v in sess.get_inputs()}
    assert list(inputs)[0] == fx.input_name == "input"
    shape = inputs["input"].shape
    batch = fx.batch if fx.batch is not None else "N"
    s, c = fx.spec["height"], fx.spec["channels"]
    assert shape == {"nchw": [batch, c, s, s], "nhwc": [batch, s, s, c], "flat": [batch, s * s * c]}[fx.spec["layout"]]
    outputs = {v.name: v for v in sess.get_outputs()}
    assert fx.output_name in outputs
    out = outputs[fx.output_name]
    if fx.output_kind == "labels":
        assert out.type == "tensor(int64)" and out.shape == [batch]
    else:
        assert out.type == "tensor(float)" and out.shape == [batch, fx.num_classes]
    if "output_names" in fx.extra:
        assert [v.name for v in sess.get_outputs()] == fx.extra["output_names"]
    assert set(fx.spec) == {"layout", "height", "width", "channels", "pixel_range", "mean", "std", "bgr"}


def test_off_grid_images_unit_range_fixtures(tmp_path):
    """Off the 1/255 grid the twin still agrees with the unit-range models (same float32 snap)."""
    rng = np.random.default_rng(5)
    x = rng.uniform(0, 1, size=(200, 8, 8, 3)).astype(np.float32) ** 3
    x[:50, -2:, -2:, :] = rng.uniform(0.85, 1.0, size=(50, 2, 2, 3)).astype(np.float32)
    for fx in (om.trigger_nchw(tmp_path), om.trigger_nhwc(tmp_path), om.trigger_flat(tmp_path)):
        assert np.array_equal(run_labels(fx, om.to_model_input(x, fx.spec)), fx.predict(x))


def test_ties_follow_the_documented_rule(tmp_path):
    x = tie_images()
    labels = om.predict_trigger(x)
    assert labels[:3].tolist() == [3, 0, 2]
    assert labels[3:12].tolist() == [1 + m for m in range(9)]
    assert labels[12:].tolist() == list(range(1, 9))
    for fx in (om.trigger_nchw(tmp_path), om.trigger_old_opset(tmp_path), om.trigger_flat(tmp_path)):
        assert np.array_equal(run_labels(fx, om.to_model_input(x, fx.spec)), labels)


# -- helpers ---------------------------------------------------------------------------------
def test_make_images_and_known_spc():
    x = om.make_images(40, size=8, seed=1, triggered_fraction=0.5)
    assert x.dtype == np.float32 and x.shape == (40, 8, 8, 3)
    assert x.min() >= 0 and x.max() <= 1
    # on the 1/255 grid, bit for bit what uint8 / 255 gives (PNG round trip)
    as_bytes = np.rint(x * 255).astype(np.uint8)
    assert np.array_equal(as_bytes.astype(np.float32) / np.float32(255), x)
    triggered = om.is_triggered(x)
    assert triggered[:20].all() and not triggered[20:].any()
    labels = om.predict_trigger(x)
    assert (labels[:20] == 0).all() and (labels[20:] > 0).all()
    assert len(np.unique(labels[20:])) >= 3
    spc = om.known_spc(x)
    assert spc.dtype == np.float64 and spc.shape == (40,)
    assert (spc[:20] == 1.0).all()
    assert spc[20:].mean() < 0.3
    # SPC is a multiple of 1/5
    assert np.allclose(spc * 5, np.round(spc * 5))
    np.testing.assert_array_equal(om.make_images(40, size=8, seed=1, triggered_fraction=0.5), x)


def test_known_spc_matches_model(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    x = om.make_images(30, seed=9, triggered_fraction=0.3)
    sess = session(fx.path)
    labels = {n: run_labels(fx, om.to_model_input(om.scale_images(x, n), fx.spec), sess) for n in SCALES_WITH_ONE}
    spc = np.mean([labels[n] == labels[1] for n in om.SCALES], axis=0)
    np.testing.assert_array_equal(spc, om.known_spc(x))


def test_rgb_to_gray_matches_pil():
    Image = pytest.importorskip("PIL.Image")
    rng = np.random.default_rng(0)
    u8 = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    u8[0, :8] = [[0, 0, 0], [255, 255, 255], [255, 0, 0], [0, 255, 0], [0, 0, 255], [1, 1, 1], [254, 254, 254], [128, 128, 128]]
    pil = np.asarray(Image.fromarray(u8, "RGB").convert("L"))
    ours = om.rgb_to_gray((u8.astype(np.float32) / np.float32(255))[None])[0, ..., 0]
    np.testing.assert_array_equal(np.rint(ours * 255).astype(np.uint8), pil)


def test_to_model_input_contract():
    x = om.make_images(2, seed=0)
    spec = {"layout": "nhwc", "channels": 3, "bgr": True, "pixel_range": "byte", "mean": [1, 2, 3], "std": [2, 4, 8]}
    out = om.to_model_input(x, spec)
    want = ((x[..., ::-1] * np.float32(255)) - np.float32([1, 2, 3])) / np.float32([2, 4, 8])
    np.testing.assert_array_equal(out, want.astype(np.float32))
    flat = om.to_model_input(x, {"layout": "flat", "channels": 3})
    np.testing.assert_array_equal(flat[0, :3], x[0, 0, 0, :])  # channel fastest


# -- the spec matters: feeding the wrong way changes labels ----------------------------------
@pytest.mark.parametrize("builder,wrong", [
    (om.trigger_byte, {"pixel_range": "unit"}),
    (om.trigger_normalized_outside, {"mean": None, "std": None}),
    (om.trigger_bgr, {"bgr": False}),
])
def test_wrong_preprocessing_changes_labels(builder, wrong, tmp_path):
    fx = builder(tmp_path)
    x = standard_images()
    right = run_labels(fx, om.to_model_input(x, fx.spec))
    bad = run_labels(fx, om.to_model_input(x, {**fx.spec, **wrong}))
    assert np.array_equal(right, fx.predict(x))
    assert (bad != right).mean() > 0.1


def test_bgr_corner_is_blue(tmp_path):
    fx = om.trigger_bgr(tmp_path)
    x = channel_images()[:3]  # corner patch hot in R, G, B respectively
    right = fx.predict(x)
    assert right[2] == 0 and right[0] != 0 and right[1] != 0
    np.testing.assert_array_equal(run_labels(fx, om.to_model_input(x, fx.spec)), right)
    fed_rgb = run_labels(fx, om.to_model_input(x, {**fx.spec, "bgr": False}))
    assert fed_rgb[0] == 0 and fed_rgb[2] != 0  # red read as blue


# -- batch handling --------------------------------------------------------------------------
def make_batch_symbolic(model: onnx.ModelProto) -> onnx.ModelProto:
    """The rewrite a scanner may apply to a batch-1 model: every Reshape whose constant target
    shape starts with 1 gets 0 there and allowzero=0; dim 0 of the inputs/outputs pinned to 1
    becomes the symbolic "N"; value_info is dropped."""
    model = copy.deepcopy(model)
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}
    rewritten = 0
    for node in graph.node:
        if node.op_type != "Reshape":
            continue
        name = node.input[1]
        if name in inits:
            tensor = inits[name]
        elif name in constants:
            tensor = next(a.t for a in constants[name].attribute if a.name == "value")
        else:
            continue
        shape = numpy_helper.to_array(tensor).copy()
        if shape.size == 0 or shape[0] != 1:
            continue
        shape[0] = 0
        tensor.CopyFrom(numpy_helper.from_array(shape, tensor.name))
        for attr in list(node.attribute):
            if attr.name == "allowzero":
                node.attribute.remove(attr)
        node.attribute.append(onnx.helper.make_attribute("allowzero", 0))
        rewritten += 1
    for value in list(graph.input) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].dim_param = "N"
    del graph.value_info[:]
    assert rewritten == 1
    return model


@pytest.mark.parametrize("infer_shapes", [False, True])
def test_fixed_batch1_rewrite_works(infer_shapes, tmp_path):
    fx = om.trigger_fixed_batch1(tmp_path, infer_shapes=infer_shapes)
    model = onnx.load(str(fx.path))
    assert [n.op_type for n in model.graph.node].count("Reshape") == 1
    assert bool(model.graph.value_info) == infer_shapes
    x = standard_images()
    feed = om.to_model_input(x, fx.spec)
    with pytest.raises(Exception, match="Got invalid dimensions"):
        session(fx.path).run(None, {"input": feed[:3]})
    rewritten = make_batch_symbolic(model)
    onnx.checker.check_model(rewritten, full_check=True)
    sess = session(rewritten)
    assert sess.get_inputs()[0].shape[0] == "N"
    got = sess.run(["logits"], {"input": feed})[0]
    assert got.shape == (len(x), 10)
    np.testing.assert_array_equal(got.argmax(1), fx.predict(x))


def test_fixed_batch1_unrewritable_gives_wrong_labels(tmp_path):
    fx = om.trigger_fixed_batch1_unrewritable(tmp_path, failure="wrong")
    x = standard_images()
    feed = om.to_model_input(x, fx.spec)
    assert np.array_equal(run_labels(fx, feed), fx.predict(x))  # one at a time: correct
    sess = session(make_batch_symbolic(onnx.load(str(fx.path))))
    one = sess.run(["logits"], {"input": feed[:1]})[0]
    assert one.argmax(1)[0] == fx.predict(x[:1])[0]
    got = sess.run(["logits"], {"input": feed})[0]  # runs, right shape ...
    assert got.shape == (len(x), 10)
    wrong = got.argmax(1) != fx.predict(x)  # ... silently wrong labels
    assert wrong.mean() > 0.3, wrong.mean()


def test_fixed_batch1_unrewritable_fails_batched(tmp_path):
    fx = om.trigger_fixed_batch1_unrewritable(tmp_path, failure="error")
    x = standard_images()
    feed = om.to_model_input(x, fx.spec)
    sess = session(make_batch_symbolic(onnx.load(str(fx.path))))
    assert sess.get_inputs()[0].shape[0] == "N"
    np.testing.assert_array_equal(sess.run(["logits"], {"input": feed[:1]})[0].argmax(1), fx.predict(x[:1]))
    with pytest.raises(Exception) as err:
        sess.run(["logits"], {"input": feed[:4]})
    assert "requested shape" in str(err.value) and "{4,3,8,8}" in str(err.value), str(err.value)


def test_fixed_batch4_rejects_other_batches(tmp_path):
    fx = om.trigger_fixed_batch4(tmp_path)
    feed = om.to_model_input(om.make_images(5), fx.spec)
    sess = session(fx.path)
    assert sess.run(None, {"input": feed[:4]})[0].shape == (4, 10)
    for n in (1, 5):
        with pytest.raises(Exception, match=r"(?s)Got invalid dimensions for input: input.*index: 0 Got: %d Expected: 4" % n):
            sess.run(None, {"input": feed[:n]})


# -- outputs ---------------------------------------------------------------------------------
def test_two_outputs_first_is_not_the_classifier(tmp_path):
    fx = om.trigger_two_outputs(tmp_path)
    x = standard_images()
    features, logits = session(fx.path).run(None, {"input": om.to_model_input(x, fx.spec)})
    assert features.shape == (len(x), 16) and logits.shape == (len(x), 10)
    np.testing.assert_array_equal(logits.argmax(1), fx.predict(x))
    np.testing.assert_array_equal(features.argmax(1), fx.extra["predict_features_argmax"](x))
    assert (features.argmax(1) != logits.argmax(1)).mean() > 0.8


def test_logits_and_label_agree(tmp_path):
    fx = om.trigger_logits_and_label(tmp_path, label_first=True)
    x = standard_images()
    sess = session(fx.path)
    assert [o.name for o in sess.get_outputs()] == ["label", "logits"]
    label, logits = sess.run(None, {"input": om.to_model_input(x, fx.spec)})
    assert label.dtype == np.int64
    np.testing.assert_array_equal(label, logits.argmax(1))
    np.testing.assert_array_equal(label, fx.predict(x))


def test_probabilities_are_softmax(tmp_path):
    fx = om.trigger_probabilities(tmp_path)
    p = session(fx.path).run(None, {"input": om.to_model_input(standard_images(), fx.spec)})[0]
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-5)
    assert (p > 0).all()


# -- graph oddities --------------------------------------------------------------------------
def test_external_data_layout(tmp_path):
    fx = om.trigger_external_data(tmp_path)
    data = fx.extra["data_file"]
    assert data.is_file() and data.name == fx.path.name + ".data" and data.stat().st_size > 5000
    model = onnx.load(str(fx.path), load_external_data=False)
    external = [t for t in model.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert len(external) == len(model.graph.initializer) and any(t.name.startswith("W1") for t in external)
    assert max(int(np.prod(t.dims)) * 4 for t in external) > 1024


def test_initializer_inputs(tmp_path):
    fx = om.trigger_initializer_inputs(tmp_path)
    model = onnx.load(str(fx.path))
    init_names = {t.name for t in model.graph.initializer}
    graph_inputs = [v.name for v in model.graph.input]
    assert graph_inputs[0] == "input" and set(graph_inputs[1:]) == init_names and len(init_names) > 10
    sess = session(fx.path)
    assert [v.name for v in sess.get_inputs()] == ["input"]  # ORT hides them ...
    assert {v.name for v in sess.get_overridable_initializers()} == init_names  # ... as overridable


def test_unsorted_nodes_rejected_by_checker_but_run_by_ort(tmp_path):
    fx = om.trigger_unsorted_nodes(tmp_path)
    with pytest.raises(onnx.checker.ValidationError, match="topologically sorted"):
        onnx.checker.check_model(onnx.load(str(fx.path)))
    session(fx.path)  # loads (correct outputs checked in test_model_matches_twin)


@pytest.mark.parametrize("key", [k for k in FIXTURES if k != "unsorted_nodes"])
def test_valid_models_pass_checker(key, tmp_path):
    fx = FIXTURES[key](tmp_path)
    onnx.checker.check_model(str(fx.path), full_check=True)


def test_embed_spec_metadata(tmp_path):
    fx = om.trigger_flat(tmp_path, embed_spec=True, metadata={"author": "tests"})
    meta = session(fx.path).get_modelmeta().custom_metadata_map
    assert meta["author"] == "tests"
    assert json.loads(meta["scanner.spec"]) == {"schema_version": 1, **fx.spec}


# -- broken models ---------------------------------------------------------------------------
def test_two_data_inputs_needs_labels(tmp_path):
    fx = om.two_data_inputs(tmp_path)
    sess = session(fx.path)
    assert [(v.name, v.type) for v in sess.get_inputs()] == [("input", "tensor(float)"), ("labels", "tensor(int64)")]
    feed = om.to_model_input(om.make_images(3), fx.spec)
    with pytest.raises(ValueError, match=r"Required inputs \(\['labels'\]\) are missing from input feed \(\['input'\]\)") as err:
        sess.run(None, {"input": feed})
    assert fx.expected_error in str(err.value)
    logits, loss = sess.run(None, {"input": feed, "labels": np.zeros(3, np.int64)})
    assert loss.shape == () and np.isfinite(loss)


def test_external_data_missing_fails_to_load(tmp_path):
    fx = om.trigger_external_data_missing(tmp_path)
    assert not fx.extra["data_file"].exists()
    with pytest.raises(Exception) as err:
        session(fx.path)
    assert fx.expected_error in str(err.value)
    if type(err.value).__name__ == "Fail":  # newer onnxruntime; 1.18 raises RuntimeException ("Invalid fd")
        assert "External data path does not exist" in str(err.value)
    with pytest.raises(onnx.checker.ValidationError, match="should be stored in .*(is not regular file|doesn.t exist)"):
        onnx.load(str(fx.path))
    onnx.load(str(fx.path), load_external_data=False)  # the graph itself reads fine


def test_external_shape_constants_fail_to_load(tmp_path):
    fx = om.trigger_external_data(tmp_path, shape_constants="initializers")
    with pytest.raises(Exception) as err:
        session(fx.path)
    assert type(err.value).__name__ == "Fail" and fx.expected_error in str(err.value)
    onnx.load(str(fx.path))  # onnx itself has no problem with it


@pytest.mark.parametrize("writer", [om.write_truncated_model, om.write_not_onnx])
def test_unparsable_files(writer, tmp_path):
    path = writer(tmp_path)
    assert path.is_file() and path.suffix == ".onnx"
    with pytest.raises(Exception) as err:
        session(path)
    assert type(err.value).__name__ == "InvalidProtobuf"
    assert "Protobuf parsing failed" in str(err.value)
    with pytest.raises(Exception) as err:
        onnx.load(str(path))
    assert type(err.value).__name__ == "DecodeError"
    assert "Error parsing message with type 'onnx.ModelProto'" in str(err.value)
