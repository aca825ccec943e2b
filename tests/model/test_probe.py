"""The preprocessing probe: ranks candidates by accuracy or label-free evidence, through the
loaded model's own session, and says when it cannot tell."""

import json

import numpy as np
import pytest
from PIL import Image

import onnx_models as om
from helpers import write_pngs
from scanner.errors import InputError
from scanner.model.loader import load_model
from scanner.model.probe import Candidate, candidates, probe


@pytest.fixture(scope="module")
def mixed():
    """60 images spread over the classes (brightness up to 1), a fifth triggered."""
    return om.make_images(60, seed=2, max_value=1.0, triggered_fraction=0.2)


def image_folder(root, images, labels):
    """ImageFolder layout: one subfolder per true label."""
    for i, (img, label) in enumerate(zip(images, labels)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(root / str(label) / f"{i:03d}.png")
    return root


def test_byte_model_without_labels_ranks_byte_first(tmp_path, mixed):
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    result = probe(load_model(fx.path, device="cpu"), [write_pngs(tmp_path / "imgs", mixed)])
    best = result.best
    assert best.candidate == Candidate("byte", "no normalization", False) and result.decided
    assert best.accuracy is None and best.diversity > 0.5
    assert result.best.candidate.flags(3) == "--pixel-range byte"
    # the default [0, 1] (current) collapses every input onto class 1
    current = next(t for t in result.trials if t.candidate == result.current)
    assert result.current == Candidate("unit", "no normalization", False)
    assert (current.top_class, current.top_share, current.diversity) == (1, 1.0, 0.0)
    # BGR gives the same predictions on a channel-symmetric model: reported as equivalent
    assert result.trials[1].candidate == Candidate("byte", "no normalization", True) and result.trials[1].same_as == 1
    text = str(result)
    assert "best: [0, 255], no normalization, RGB" in text and "flags: --pixel-range byte" in text
    assert "current" in text and "same predictions as #1" in text


@pytest.mark.parametrize("kw,flags", [
    ({}, "--pixel-range unit --mean 0.406,0.456,0.485 --std 0.225,0.224,0.229 --bgr"),
    (dict(mean=None, std=None, bgr=False, pixel_range="byte"), "--pixel-range byte"),
    (dict(mean=(0.5,), std=(0.5,), bgr=True), "--pixel-range unit --mean 0.5 --std 0.5 --bgr"),
])
def test_true_labels_from_subfolders_rank_the_right_preprocessing_first(tmp_path, mixed, kw, flags):
    fx = om.trigger_preprocessed(tmp_path / "m", **kw)
    folder = image_folder(tmp_path / "labelled", mixed, fx.predict(mixed))
    result = probe(load_model(fx.path, device="cpu"), [folder])
    assert result.truth == "integer subfolder names"
    assert result.best.accuracy == 1.0 and result.decided, str(result)
    assert result.best.candidate.flags(3) == flags
    assert "wrong on 0" in result.reason


def test_labels_file_and_array_inputs(tmp_path, mixed):
    fx = om.trigger_preprocessed(tmp_path / "m")
    np.save(tmp_path / "x.npy", (mixed * 255).round().astype(np.uint8))
    labels = fx.predict(mixed)
    (tmp_path / "labels.csv").write_text("".join(f"{tmp_path / 'x.npy'}[{i}],{y}\n" for i, y in enumerate(labels)))
    result = probe(load_model(fx.path, device="cpu"), [tmp_path / "x.npy"], labels_file=tmp_path / "labels.csv",
                   sample=40)
    assert result.sampled == 40 and result.inputs_found == 60
    assert result.best.candidate == Candidate("unit", "ImageNet", True) and result.best.accuracy == 1.0
    with pytest.raises(InputError, match="has no label for"):
        (tmp_path / "short.csv").write_text(f"{tmp_path / 'x.npy'}[0],1\n")
        probe(load_model(fx.path, device="cpu"), [tmp_path / "x.npy"], labels_file=tmp_path / "short.csv")


def test_cannot_tell_when_every_candidate_collapses(tmp_path):
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    dark = om.make_images(30, seed=4, max_value=0.05, triggered_fraction=0.0)  # class 1 whatever the preprocessing
    result = probe(load_model(fx.path, device="cpu"), [write_pngs(tmp_path / "imgs", dark)])
    assert not result.decided and "collapses onto one class" in result.reason
    # issue 27, point 4: it says so and recommends nothing (no flags, no spec to write)
    text = str(result)
    assert "cannot tell:" in text and "most likely" not in text and "flags:" not in text and "no recommendation" in text
    doc = result.to_dict()
    assert doc["best_flags"] is None and doc["spec"] is None and not doc["decided"]
    with pytest.raises(InputError, match="cannot tell the preprocessing, so no spec is written"):
        result.write_spec(tmp_path / "spec.json")
    assert not (tmp_path / "spec.json").exists()


def test_cannot_tell_when_the_runner_up_is_close(tmp_path, mixed):
    fx = om.trigger_preprocessed(tmp_path / "m")  # ImageNet, BGR: RGB gives similar evidence
    result = probe(load_model(fx.path, device="cpu"), [write_pngs(tmp_path / "imgs", mixed)])
    assert not result.decided and "give true labels" in result.reason
    assert result.best.candidate.stats == "ImageNet"


def test_flags_given_are_kept_fixed_and_only_the_models_session_is_used(tmp_path, mixed, monkeypatch):
    import onnxruntime

    fx = om.trigger_byte_nhwc(tmp_path / "m")
    model = load_model(fx.path, device="cpu", options={"bgr": True})

    def no_new_sessions(*args, **kwargs):
        raise AssertionError("the probe must query the loaded model's session only")

    monkeypatch.setattr(onnxruntime, "InferenceSession", no_new_sessions)
    result = probe(model, [write_pngs(tmp_path / "imgs", mixed)])
    assert {t.candidate.bgr for t in result.trials} == {True}
    assert result.best.candidate == Candidate("byte", "no normalization", True)


def test_written_spec_is_the_one_schema(tmp_path, mixed):
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    result = probe(load_model(fx.path, device="cpu"), [write_pngs(tmp_path / "imgs", mixed)])
    result.write_spec(tmp_path / "spec.json")
    doc = json.loads((tmp_path / "spec.json").read_text())
    assert doc["schema_version"] == 1 and doc["pixel_range"] == "byte" and doc["layout"] == "nhwc"
    model = load_model(fx.path, device="cpu", spec_file=tmp_path / "spec.json")
    assert model.spec.pixel_range == "byte" and model.resolved.sources["pixel_range"] == "spec file"
    assert json.loads(json.dumps(result.to_dict()))["ranking"][0]["flags"] == "--pixel-range byte"


def test_candidates_for_one_channel_and_for_uint8_inputs():
    gray = candidates(1)
    assert {c.bgr for c in gray} == {False} and {c.stats for c in gray} == {"no normalization", "mean/std 0.5", "MNIST"}
    assert Candidate("unit", "MNIST", False).flags(1) == "--pixel-range unit --mean 0.1307 --std 0.3081"
    assert [str(c) for c in candidates(3, byte_only=True)] == ["[0, 255], no normalization, RGB",
                                                               "[0, 255], no normalization, BGR"]
    # mean/std are in pixel-range units and in the model's channel order
    assert Candidate("byte", "ImageNet mean only", True).fields(3) == {
        "pixel_range": "byte", "mean": (103.53, 116.28, 123.675), "std": None, "bgr": True}
    assert len(candidates(3)) == 14


def test_one_channel_candidates_are_grayscale_not_rgb():
    """Issue 27, point 4: 1-channel candidates were called "RGB"."""
    assert [str(c) for c in candidates(1)] == ["[0, 1], no normalization, grayscale", "[0, 1], mean/std 0.5, grayscale",
                                               "[0, 1], MNIST, grayscale", "[0, 255], no normalization, grayscale"]
    assert all("RGB" not in str(c) and "BGR" not in str(c) for c in candidates(1))


def _scaled_gray_model(tmp_path):
    """[N, 1, 8, 8] unit-range pixels -> logits [N, 4]: 20 x the mean of each quarter of the image
    (the class is the brightest quarter), plus ``relu(10 x sum of pixels - 1000)`` on class 0. In
    [0, 1] it is always 0; fed [0, 255] pixels the model gets surer (logits x 255) and every
    image bright enough collapses onto class 0, as [0, 1] models fed bytes do."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    quarters = np.zeros((64, 4), np.float32)
    for k, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)]):
        block = np.zeros((8, 8), np.float32)
        block[r:r + 4, c:c + 4] = 20 / 16
        quarters[:, k] = block.ravel()
    consts = {"shape": np.array([-1, 64], np.int64), "quarters": quarters, "ones": np.full((64, 1), 10, np.float32),
              "hundred": np.float32(1000).reshape(()), "to_class_0": np.eye(4, dtype=np.float32)[:1]}
    nodes = [helper.make_node("Reshape", ["x", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "quarters"], ["means"]),
             helper.make_node("MatMul", ["flat", "ones"], ["total"]),
             helper.make_node("Sub", ["total", "hundred"], ["over"]),
             helper.make_node("Relu", ["over"], ["excess"]),
             helper.make_node("MatMul", ["excess", "to_class_0"], ["bump"]),
             helper.make_node("Add", ["means", "bump"], ["logits"])]
    graph = helper.make_graph(nodes, "quarters", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 1, 8, 8])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 4])],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    path = tmp_path / "quarters.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_without_labels_a_sure_but_collapsing_byte_range_does_not_win(tmp_path):
    """Issue 27, point 4: [0, 255] pixels make a [0, 1] model surer (larger logits) while its
    predictions collapse; the label-free score diversity x confidence chose 0-255 here."""
    rng = np.random.default_rng(0)
    images = np.full((80, 8, 8, 1), 0.01, np.float32)
    for i, (r, c) in enumerate([(0, 0), (0, 4), (4, 0), (4, 4)] * 20):
        bright = i % 5 < 3  # 60% bright enough to reach the byte-range collapse, 40% dim
        images[i] = 0.01 if bright else 0.0005
        images[i, r:r + 4, c:c + 4] = (0.15 if bright else 0.012) + 0.01 * rng.random()
    np.save(tmp_path / "x.npy", images)
    model = load_model(_scaled_gray_model(tmp_path), device="cpu", options={"channels": 1})
    result = probe(model, [tmp_path / "x.npy"], sample=80)
    unit = next(t for t in result.trials if t.candidate == Candidate("unit", "no normalization", False, gray=True))
    byte = next(t for t in result.trials if t.candidate == Candidate("byte", "no normalization", False, gray=True))
    assert unit.diversity > byte.diversity and byte.confidence > unit.confidence  # the trap
    assert unit.diversity * unit.confidence < byte.diversity * byte.confidence  # the old score fell into it
    assert result.trials.index(unit) < result.trials.index(byte)
    assert result.best.candidate.pixel_range == "unit"
