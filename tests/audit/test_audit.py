"""scanner audit against hand-built ONNX models whose backdoor is known exactly.

The model: a fixed random linear classifier over 8x8 average-pooled pixels (varied classes on
smooth random images), plus, when built with a target, a branch that adds 100 to that class's
logit whenever the bottom-right 3x3 square of the image is white (every value above 0.9).
"""

import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from scanner.audit import audit, triggers as T
from scanner.audit.verdict import anomaly_index
from scanner.cli.app import app
from typer.testing import CliRunner

TARGET = 6


def build(path, target=None, labels_only=False, classes=10):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3 * 4 * 4, classes)).astype(np.float32) * 4
    nodes = [
        helper.make_node("AveragePool", ["input"], ["pooled"], kernel_shape=[8, 8], strides=[8, 8]),
        helper.make_node("Flatten", ["pooled"], ["flat"]),
        helper.make_node("Sub", ["flat", "half"], ["centred"]),
        helper.make_node("MatMul", ["centred", "w"], ["clean_logits"]),
    ]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.float32([0.45]), "half")]
    out = "clean_logits"
    if target is not None:
        onehot = np.zeros((1, classes), np.float32)
        onehot[0, target] = 100
        inits += [numpy_helper.from_array(np.int64(v), n) for v, n in
                  (([29, 29], "starts"), ([32, 32], "ends"), ([2, 3], "axes"))]
        inits += [numpy_helper.from_array(np.float32([0.9]), "bar"), numpy_helper.from_array(onehot, "onehot")]
        nodes += [
            helper.make_node("Slice", ["input", "starts", "ends", "axes"], ["corner"]),
            helper.make_node("ReduceMin", ["corner"], ["cmin"], axes=[1, 2, 3], keepdims=0),
            helper.make_node("Greater", ["cmin", "bar"], ["hit"]),
            helper.make_node("Cast", ["hit"], ["hitf"], to=TensorProto.FLOAT),
            helper.make_node("Unsqueeze", ["hitf", "one"], ["hitc"]),
            helper.make_node("Mul", ["hitc", "onehot"], ["boost"]),
            helper.make_node("Add", ["clean_logits", "boost"], ["logits"]),
        ]
        inits.append(numpy_helper.from_array(np.int64([1]), "one"))
        out = "logits"
    outputs = [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", classes])]
    if labels_only:
        nodes.append(helper.make_node("ArgMax", [out], ["label"], axis=1, keepdims=0))
        outputs = [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]
    graph = helper.make_graph(nodes, "audit-test", [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                                  ["N", 3, 32, 32])], outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def smooth_images(n, seed=1):
    """Smooth random images (4x4 noise upsampled): varied, and never white in a corner by chance."""
    small = np.random.default_rng(seed).random((n, 4, 4, 3), dtype=np.float32) * 0.8
    return small.repeat(8, axis=1).repeat(8, axis=2)


OPTS = {"pixel_range": "unit", "layout": "nchw"}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    return {"backdoored": build(d / "backdoored.onnx", TARGET), "clean": build(d / "clean.onnx"),
            "labels": build(d / "labels.onnx", TARGET, labels_only=True)}


def test_the_backdoor_target_is_named_with_the_trigger_that_opens_it(models):
    res = audit(models["backdoored"], smooth_images(400), options=OPTS, device="cpu")
    assert res.verdict.status == "suspect"
    assert res.verdict.targets == [TARGET]
    c = res.classes[TARGET]
    assert c.suspect and c.heldout_rate == 1.0 and c.family == "patch"
    assert c.trigger == "3x3 white patch at bottom-right"
    assert res.heldout_images == 400 - 128 and res.search_images == 128
    others = [x.heldout_rate for x in res.classes if x.index != TARGET]
    assert max(others) < 0.5


def test_the_same_model_without_the_branch_is_not_accused(models):
    res = audit(models["clean"], smooth_images(400), options=OPTS, device="cpu")
    assert res.verdict.status == "no backdoor found" and res.verdict.targets == []
    assert not any(c.suspect for c in res.classes)
    assert "below the rule's bar" in res.verdict.reason


def test_a_labels_only_model_is_audited_from_its_labels(models):
    names = [f"c{i}" for i in range(10)]
    res = audit(models["labels"], smooth_images(300), options={**OPTS, "class_names": names}, device="cpu")
    assert res.labels_only and res.verdict.targets == [TARGET] and res.classes[TARGET].name == "c6"
    # without class names the number of classes is unknown: said, not guessed
    res = audit(models["labels"], smooth_images(300), options=OPTS, device="cpu")
    assert res.verdict.status == "cannot judge" and "number of classes is unknown" in res.verdict.reason


def test_too_few_clean_images_cannot_be_judged(models):
    res = audit(models["backdoored"], smooth_images(50), options=OPTS, device="cpu")
    assert res.verdict.status == "cannot judge" and "too few clean images: 50" in res.verdict.reason
    assert res.queries == 0 and res.classes == []


def test_images_of_one_class_cannot_be_judged(models):
    one = np.full((200, 32, 32, 3), 0.3, np.float32)
    res = audit(models["clean"], one, options=OPTS, device="cpu")
    assert res.verdict.status == "cannot judge" and "100% of the clean images class" in res.verdict.reason


def test_the_audit_is_seeded(models):
    a = audit(models["clean"], smooth_images(300), options=OPTS, device="cpu", seed=3)
    b = audit(models["clean"], smooth_images(300), options=OPTS, device="cpu", seed=3)
    assert [c.to_dict() for c in a.classes] == [c.to_dict() for c in b.classes]


def test_anomaly_index_is_a_robust_z_score():
    idx = anomaly_index([0.02, 0.03, 0.02, 0.04, 0.9], [100] * 5)
    assert idx[-1] > 5 and abs(np.median(idx)) < 1e-9
    flat = anomaly_index([0.1] * 10, [100] * 10)  # no spread: the MAD floor keeps it finite and zero
    assert np.all(flat == 0)
    # rates of a few images out of hundreds are noise: 2% against nine classes at 0% is no outlier
    assert anomaly_index([0.0] * 9 + [0.02], [872] * 10)[-1] < 2


def test_trigger_families_do_what_they_say():
    x = smooth_images(3)
    patch = T.patch_trigger(np.ones((3, 3, 3), np.float32), "bottom-right", 29, 29, "white", 32, 32)
    y = patch.apply(x)
    assert np.all(y[:, 29:, 29:] == 1) and np.array_equal(y[:, :29], x[:, :29]) and patch.size == 9 / 1024
    assert np.allclose(T.warp_trigger(np.zeros((4, 4, 2)), 0.0, 32, 32).apply(x), x)
    pattern = np.zeros((32, 32, 3), np.float32)
    assert np.allclose(T.blend_trigger(pattern, 0.2, "zeros").apply(x), 0.8 * x)
    add = T.additive_candidates(32, 32, 3, np.random.default_rng(0), 1)[0]
    assert np.abs(add.apply(x) - x).max() <= T.EPS + 1e-6
    assert T.patch_side(224, 224) == 22 and T.patch_side(28, 28) == 3


def _write(folder, images):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def clean_dir(tmp_path_factory):
    d = _write(tmp_path_factory.mktemp("clean") / "imgs", smooth_images(300))
    (d / "broken.png").write_bytes(b"not an image")
    return d


def test_cli_gate_fails_on_the_backdoored_model_and_reports_json_and_html(models, clean_dir, tmp_path):
    out, page = tmp_path / "audit.json", tmp_path / "audit.html"
    r = CliRunner().invoke(app, ["audit", str(models["backdoored"]), str(clean_dir), "--pixel-range", "unit",
                                 "-f", "json", "-o", str(out), "--html", str(page), "--fail-on-backdoor", "--device", "cpu"])
    assert r.exit_code == 1, r.output
    assert "gate: FAILED (a backdoor is suspected)" in r.output
    doc = json.loads(out.read_text())
    assert doc["verdict"]["status"] == "suspect" and doc["verdict"]["targets"] == [TARGET]
    assert len(doc["classes"]) == 10 and doc["classes"][TARGET]["heldout_success"] == 1.0
    assert doc["failed_inputs"][0]["input"].endswith("broken.png")
    text = page.read_text()
    assert "verdict: suspect" in text and text.count("data:image/") >= 13  # trigger + 6 clean/triggered pairs


def test_cli_gate_passes_on_the_clean_model(models, clean_dir):
    r = CliRunner().invoke(app, ["audit", str(models["clean"]), str(clean_dir), "--pixel-range", "unit",
                                 "--fail-on-backdoor", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "verdict: no backdoor found" in r.output and "gate: PASSED" in r.output
    assert "failed inputs: 1, not used" in r.output and "FAILED " in r.output and "broken.png" in r.output


def test_cli_gate_fails_when_it_cannot_judge(models, tmp_path):
    few = _write(tmp_path / "few", smooth_images(20))
    r = CliRunner().invoke(app, ["audit", str(models["clean"]), str(few), "--pixel-range", "unit",
                                 "--fail-on-backdoor", "--device", "cpu"])
    assert r.exit_code == 1 and "cannot judge" in r.output and "too few clean images" in r.output


def test_near_binary_images_leave_the_texture_families_out(models):
    binary = (smooth_images(300) > 0.4).astype(np.float32)
    res = audit(models["backdoored"], binary, options=OPTS, device="cpu")
    assert res.families == ("patch", "warp") and "blend and additive left out" in res.left_out
    assert res.verdict.targets == [TARGET]  # the patch still finds the white corner
    full = audit(models["backdoored"], smooth_images(300), options=OPTS, device="cpu")
    assert full.families == ("patch", "blend", "warp", "additive") and full.left_out == ""


def test_cli_ray_options_need_the_ray_engine(models, clean_dir):
    r = CliRunner().invoke(app, ["audit", str(models["clean"]), str(clean_dir), "--workers", "2"])
    assert r.exit_code == 2 and "--ray-address and --workers go with --engine ray" in r.output


def test_a_model_that_never_returns_stops_the_audit_by_its_call_timeout(tmp_path, clean_dir):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from hanging_models import loop_model

    model = loop_model(tmp_path / "loop.onnx", only_black=False)
    r = CliRunner().invoke(app, ["audit", str(model), str(clean_dir), "--call-timeout", "0.5"])
    assert r.exit_code == 2 and "--call-timeout" in r.output, r.output


def test_more_images_than_the_cap_are_a_seeded_subset(models):
    res = audit(models["clean"], smooth_images(500), options=OPTS, device="cpu", max_images=200)
    assert res.images == 200 and res.search_images == 100 and res.heldout_images == 100
    again = audit(models["clean"], smooth_images(500), options=OPTS, device="cpu", max_images=200)
    assert [c.to_dict() for c in res.classes] == [c.to_dict() for c in again.classes]


def test_a_bad_array_is_one_scanner_error(models):
    from scanner.errors import ScannerError

    with pytest.raises(ScannerError, match="clean"):
        audit(models["clean"], np.zeros((300, 32, 32, 5), np.float32), options=OPTS, device="cpu")


def test_progress_ticks_through_the_candidates_and_the_classes(models):
    seen = []
    audit(models["clean"], smooth_images(300), options=OPTS, device="cpu", progress=lambda d, t: seen.append((d, t)))
    total = seen[-1][1]
    assert seen[-1] == (total, total) and len({d for d, _ in seen}) > 10  # not only the per-class ticks
