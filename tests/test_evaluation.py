"""The paper's protocol as a library call: filters, every figure, and the typed result."""

import json

import numpy as np
import pytest
from PIL import Image

import onnx_models as om
from scanner import Scanner
from scanner.errors import InputError
from scanner.evaluation import evaluate, folder_labels, read_labels_file


def folder(root, images, labels):
    for i, (img, label) in enumerate(zip(images, labels)):
        (root / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(root / str(label) / f"{i:03d}.png")
    return root


def test_protocol_on_known_labels(tmp_path):
    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    clean = om.make_images(30, seed=1, triggered_fraction=0.0)
    triggered = om.make_images(20, seed=2, triggered_fraction=1.0)
    benign = folder(tmp_path / "benign", clean, fx.predict(clean))
    poisoned = folder(tmp_path / "poisoned", triggered, np.full(20, 5))
    result = evaluate(Scanner(fx.path, device="cpu"), [benign], [poisoned], target_label=0)
    doc = result.to_dict()
    assert doc["kind"] == "evaluation" and not any(k.startswith("_") for k in doc)
    assert doc["protocol"]["benign_kept"] == 30 and doc["protocol"]["poisoned_kept"] == 20
    assert doc["protocol"]["attack_success_rate"] == 1.0
    assert doc["metrics"]["spc"]["auroc"] == pytest.approx(
        np.mean(result.poisoned_spc[:, None] > result.benign_spc[None]) +
        0.5 * np.mean(result.poisoned_spc[:, None] == result.benign_spc[None]))
    json.dumps(doc)  # serializable as it is


def test_labels_file_and_folder_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("input,label\na.png,3\nb.png\t4\n")
    assert read_labels_file(path) == {"a.png": 3, "b.png": 4}
    path.write_text("a.png,x\nb.png,y\n")
    with pytest.raises(InputError, match="label 'y' is not an integer"):
        read_labels_file(path)
    labels, note = folder_labels(["r/cat/1.png", "r/dog/2.png"], ("dog", "cat"), 2)
    assert labels.tolist() == [1, 0] and "class names" in note
    assert folder_labels(["r/a/1.png", "r/a/2.png"], None, 2)[0] is None


def test_undecidable_inputs_count_the_same_way_in_both_sets_and_evaluate_runs(tmp_path):
    """Issue 27, point 2: on near-binary images SCALE-UP can judge nothing. Undecidable benign
    inputs were dropped and undecidable poisoned ones kept ("0 benign and 200 poisoned remain");
    now both stay, each score counts what it cannot judge as not flagged, and says how many."""
    from scanner.calibrating import calibrate

    path = om.near_binary_backdoor(tmp_path, target=8)
    np.save(tmp_path / "clean.npy", om.near_binary_images(200, seed=3, triggered=False))
    np.save(tmp_path / "benign.npy", om.near_binary_images(60, seed=4, triggered=False))
    np.save(tmp_path / "poisoned.npy", om.near_binary_images(20, seed=5, triggered=True))
    alone = evaluate(Scanner(path, device="cpu"), [tmp_path / "benign.npy"], [tmp_path / "poisoned.npy"],
                     target_label=8)
    doc = alone.to_dict()
    assert doc["protocol"]["benign_kept"] == 60 and doc["protocol"]["poisoned_kept"] == 20
    assert doc["protocol"]["undecidable"]["benign"] == 60 and doc["protocol"]["undecidable"]["poisoned"] == 20
    spc = doc["metrics"]["spc"]
    assert spc["undecidable"] == {"benign": 60, "poisoned": 20}
    assert spc["auroc"] == 0.5 and spc["at_threshold"]["tpr"] == 0.0 and spc["at_threshold"]["fpr"] == 0.0
    cal, _ = calibrate(path, [tmp_path / "clean.npy"], detectors="scaleup,strip", detector_params={"strip": {"n_blends": 8}})
    judged = evaluate(Scanner(path, device="cpu", calibration=cal), [tmp_path / "benign.npy"],
                      [tmp_path / "poisoned.npy"], target_label=8).to_dict()
    assert judged["protocol"]["undecidable"] == {**doc["protocol"]["undecidable"], "benign": 0, "poisoned": 0}
    decision = next(m for m in judged["metrics"].values() if m["decision"])
    assert decision["undecidable"] == {"benign": 0, "poisoned": 0} and decision["at_threshold"]["tpr"] == 1.0
    assert judged["metrics"]["q_strip"]["auroc"] > 0.9
    assert judged["metrics"]["nspc"]["undecidable"] == {"benign": 60, "poisoned": 20}
