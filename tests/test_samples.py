"""The bundled sample: a real BadNets CIFAR-10 model, its clean and triggered images."""

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from scanner import Scanner
from scanner.cli.app import app

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
pytestmark = pytest.mark.skipif(not (SAMPLES / "model.onnx").exists(), reason="samples/model.onnx not built")


def test_triggered_flagged_clean_mostly_not():
    scanner = Scanner(SAMPLES / "model.onnx", device="cpu")
    triggered = scanner.scan([SAMPLES / "triggered"])
    clean = scanner.scan([SAMPLES / "clean"])
    assert triggered.n_scored == 10 and clean.n_scored == 10
    assert (triggered.scores.labels == 0).all()  # the backdoor's target class
    assert triggered.scores.flagged.all()
    assert clean.scores.flagged.sum() <= 2


def test_per_class_calibration_finding():
    """Recorded finding (README): amplified benign images of this model drift to the target class
    itself, so benign SPC of class 0 is already near 1 and per-class NSPC cannot separate
    triggered inputs (all predicted 0) from benign airplanes; the default calibrated decision
    (SCALE-UP, STRIP and TeCo combined) flags them all."""
    nspc = Scanner(SAMPLES / "model.onnx", device="cpu", calibration=SAMPLES / "calibration.json", score="nspc")
    assert nspc.calibration.per_class[0].mean > 0.9
    triggered = nspc.scan([SAMPLES / "triggered"])
    assert (triggered.scores.spc == 1).all() and not triggered.scores.flagged.any()
    default = Scanner(SAMPLES / "model.onnx", device="cpu", calibration=SAMPLES / "calibration.json")
    assert default.score_name == "q-profile"
    assert default.scan([SAMPLES / "triggered"]).scores.flagged.all()


def test_readme_first_command():
    result = CliRunner().invoke(app, ["-q", "scan", str(SAMPLES / "model.onnx"), str(SAMPLES / "clean"),
                                      str(SAMPLES / "triggered"), "--calibration", str(SAMPLES / "calibration.json"),
                                      "-f", "json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["spec"]["class_names"][0] == "airplane" and doc["spec"]["mean"] is not None
    suspects = doc["summary"]["verdict"]["suspected_targets"]
    assert [s["label"] for s in suspects] == [0]
    flagged = {Path(r["input"]).parent.name for r in doc["results"] if r["flagged"]}
    assert "triggered" in flagged
    assert np.mean([r["flagged"] for r in doc["results"] if "/triggered/" in r["input"]]) == 1.0



def test_audit_names_the_samples_target_and_passes_the_clean_model():
    """Both verdicts of scanner audit on the bundled files (their outputs are docs/gen.py's examples)."""
    for model, status in (("model.onnx", "verdict: suspect"), ("clean-model.onnx", "verdict: no backdoor found")):
        r = CliRunner().invoke(app, ["audit", str(SAMPLES / model), str(SAMPLES / "audit-clean"), "--device", "cpu"])
        assert r.exit_code == 0 and r.stdout.startswith(status), r.output
