"""The committed attack zoo (bench/zoo) agrees with its manifests and scans without flags."""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from scanner import Scanner

ZOO = Path(__file__).resolve().parent.parent / "bench" / "zoo"
ENTRIES = sorted(p for p in ZOO.iterdir() if (p / "manifest.json").exists()) if ZOO.is_dir() else []
POISONED = [p for p in ENTRIES if (p / "poisoned_test.npz").exists()]


def test_zoo_has_every_attack_and_fits_the_size_budget():
    names = {p.name for p in ENTRIES}
    assert {"clean", "badnets", "badnets-white", "blended", "wanet", "physicalba", "tuap",
            "label-consistent"} <= names
    total = sum(f.stat().st_size for f in ZOO.rglob("*") if f.is_file())
    assert total < 130 * 10**6, f"zoo is {total / 1e6:.1f} MB"


@pytest.mark.parametrize("entry", ENTRIES, ids=[p.name for p in ENTRIES])
def test_manifest_matches_files(entry):
    manifest = json.loads((entry / "manifest.json").read_text())
    model = entry / "model.onnx"
    assert hashlib.sha256(model.read_bytes()).hexdigest() == manifest["model_sha256"]
    assert model.stat().st_size == manifest["model_bytes"]
    if manifest["attack"] == "clean":
        assert not (entry / "poisoned_test.npz").exists()
        return
    with np.load(entry / "poisoned_test.npz") as z:
        x, y = z["x"], z["y"]
    c, h, w = manifest.get("input", {}).get("shape", (3, 32, 32))
    assert x.dtype == np.uint8 and x.shape[1:] == (h, w, c) and len(x) >= 1000
    assert len(y) == len(x) == manifest["poisoned_test"]["n"]
    assert not np.any(y == manifest["target_class"]), "poisoned test images come from non-target classes"


@pytest.mark.parametrize("entry", POISONED, ids=[p.name for p in POISONED])
def test_zoo_model_scans_from_its_own_metadata(entry):
    manifest = json.loads((entry / "manifest.json").read_text())
    scanner = Scanner(entry / "model.onnx", device="cpu")
    assert scanner.resolved.sources["mean"] == "model metadata"
    with np.load(entry / "poisoned_test.npz") as z:
        x = z["x"][::5]  # the set is sorted by source class: every fifth image spans all nine
    labels = scanner.score_arrays(x).labels
    # the manifest's ASR was measured in PyTorch on all 9,000 triggered images; 200 of them
    # through ONNX Runtime land within a few points of it
    assert abs(float(np.mean(labels == manifest["target_class"])) - manifest["attack_success_rate"]) < 0.08
