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
