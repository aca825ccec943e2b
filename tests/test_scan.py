"""The scanner on hand-built models whose labels are known in advance.

Each fixture model has an exact numpy twin (tests/onnx_models.py). For every model quirk the
scanner's vectorized path must equal (a) the twin's SCALE-UP result and (b) a brute-force loop
that feeds one image at one scale at a time through ONNX Runtime, with preprocessing written
independently of the scanner.
"""

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

from scanner import Scanner
from scanner.errors import ModelLoadError, SpecError

import onnx_models as om

SCALES = (3, 5, 7, 9, 11)

RGB_FIXTURES = [
    "trigger_nchw", "trigger_old_opset", "trigger_nhwc", "trigger_flat", "trigger_fixed_batch1",
    "trigger_fixed_batch1_unrewritable", "trigger_fixed_batch4", "trigger_byte", "trigger_normalized_outside",
    "trigger_normalized_inside", "trigger_bgr", "trigger_labels_only", "trigger_probabilities",
    "trigger_logits_and_label", "trigger_external_data", "trigger_initializer_inputs", "trigger_unsorted_nodes",
]


def write_pngs(folder, images):
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        mode = "L" if img.shape[-1] == 1 else "RGB"
        Image.fromarray(np.rint(img * 255).astype(np.uint8).squeeze(-1) if mode == "L" else
                        np.rint(img * 255).astype(np.uint8), mode).save(folder / f"img_{i:03d}.png")
    return folder


def brute_force(fx, images, scales=SCALES):
    """One image, one scale, one session call at a time; preprocessing by the fixture's own code."""
    session = ort.InferenceSession(str(fx.path), providers=["CPUExecutionProvider"])
    out_name = fx.output_name

    def label(img):
        x = om.to_model_input(img[None], fx.spec)
        if fx.batch and fx.batch > 1:
            x = np.concatenate([x, np.zeros((fx.batch - 1,) + x.shape[1:], np.float32)])
        y = session.run([out_name], {fx.input_name: x})[0]
        return int(np.asarray(y).reshape(len(x), -1)[0].argmax()) if fx.output_kind != "labels" else int(np.asarray(y).reshape(-1)[0])

    labels = np.array([label(img) for img in images])
    scaled = np.array([[label(om.scale_images(img[None], n)[0]) for n in scales] for img in images])
    return labels, scaled


@pytest.fixture(scope="module")
def images():
    return om.make_images(24, seed=3, triggered_fraction=0.5)


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


def test_scale_one_is_counted_and_reuses_the_unscaled_label(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    scales = tuple(range(1, 12))
    s = Scanner(fx.path, device="cpu", scales=scales).score_arrays(images)
    np.testing.assert_array_equal(s.scaled_labels[:, 0], s.labels)
    np.testing.assert_array_equal(s.spc, om.known_spc(images, scales))


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


def test_spec_from_metadata_is_used(tmp_path, images):
    fx = om.trigger_normalized_outside(tmp_path, embed_spec=True)
    scanner = Scanner(fx.path, device="cpu")
    assert scanner.resolved.sources["mean"] == "model metadata"
    np.testing.assert_array_equal(scanner.score_arrays(images).spc, om.known_spc(images, SCALES, fx.predict))


def test_flags_override_spec_file_override_metadata(tmp_path):
    fx = om.trigger_normalized_outside(tmp_path, embed_spec=True)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"schema_version": 1, "mean": [0.1, 0.1, 0.1], "bgr": true}')
    scanner = Scanner(fx.path, device="cpu", spec_file=spec_file, spec={"bgr": False})
    assert scanner.spec.mean == (0.1, 0.1, 0.1) and scanner.resolved.sources["mean"] == "spec file"
    assert scanner.spec.bgr is False and scanner.resolved.sources["bgr"] == "option"
    assert scanner.spec.std == tuple(om.NORM_STD) and scanner.resolved.sources["std"] == "model metadata"


@pytest.mark.parametrize("name,mode", [
    ("trigger_nchw", "symbolic"), ("trigger_fixed_batch1", "rewritten"),
    ("trigger_fixed_batch1_unrewritable", "per-sample"), ("trigger_fixed_batch4", "padded"),
])
def test_batch_plan(tmp_path, name, mode):
    fx = getattr(om, name)(tmp_path)
    assert Scanner(fx.path, device="cpu", spec=fx.spec).model.plan.mode == mode


def test_output_choice(tmp_path):
    fx = om.trigger_two_outputs(tmp_path)
    scanner = Scanner(fx.path, device="cpu")
    assert scanner.model.output.tensor.name == "logits"  # the hinted [N, K] output over "features"
    fx = om.trigger_labels_only(tmp_path)
    assert Scanner(fx.path, device="cpu").model.output_kind == "labels"
    with pytest.raises(SpecError, match="output 'nope' not found"):
        Scanner(fx.path, device="cpu", spec={"output_name": "nope"})


def test_wrong_layout_flag_is_a_clear_error(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    with pytest.raises(SpecError, match="model input is input float32 \\[N, 3, 8, 8\\]"):
        Scanner(fx.path, device="cpu", spec={"layout": "nhwc"})


@pytest.mark.parametrize("builder,match", [
    (om.trigger_external_data_missing, "external file .* is missing"),
    (om.two_data_inputs, "2 data inputs"),
])
def test_unusable_models(tmp_path, builder, match):
    fx = builder(tmp_path)
    with pytest.raises(ModelLoadError, match=match):
        Scanner(fx.path, device="cpu")


def test_broken_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|not an ONNX model"):
        Scanner(om.write_truncated_model(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|not an ONNX model"):
        Scanner(om.write_not_onnx(tmp_path), device="cpu")


def test_both_onnxruntime_packages_installed_is_detected(tmp_path):
    from scanner.runtime import check_runtime, runtime_distributions

    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime_gpu-1.31.1.dist-info").mkdir()
    assert runtime_distributions(tmp_path) == {"onnxruntime_gpu"}
    check_runtime(tmp_path)  # one runtime: fine
    (tmp_path / "onnxruntime-1.20.0.dist-info").mkdir()
    with pytest.raises(ModelLoadError, match="pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"):
        check_runtime(tmp_path)


def test_runtime_check_reads_the_installed_folder():
    from scanner.runtime import runtime_distributions

    # this environment has exactly one of the two (CI installs onnxruntime-gpu only)
    assert len(runtime_distributions()) == 1


def test_auto_device_never_fails_without_a_gpu(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    scanner = Scanner(fx.path, device="auto")
    assert scanner.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert scanner.provider == scanner.model.session.get_providers()[0]


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
