"""The detector interface: a detector is one class and a registry entry, the core needs no edit."""

import numpy as np
import pytest

import onnx_models as om
from helpers import SCALES
from scanner import Scanner
from scanner.detectors import DETECTORS, Detector, DetectorScores, ScaleUp, make_detector
from scanner.errors import ScannerError


class Brighten(Detector):
    """A toy detector: one brightened copy; score = 1 when its label equals the input's."""

    name = "brighten"
    score_names = ("same",)
    query_labels_key = "brightened_labels"

    @property
    def queries_per_input(self):
        return 2

    def build_queries(self, images, out, pre):
        b = len(images)
        base = pre.to_layout(images.astype(np.float32) / (255 if images.dtype == np.uint8 else 1))
        out[:b] = base
        np.minimum(base * np.float32(2), 1, out=out[b:])
        pre.normalize_(out)

    def score(self, labels, probs, b):
        return DetectorScores(labels[:b], labels[b:, None], {"same": (labels[:b] == labels[b:]).astype(float)})

    def query_names(self):
        return ["x2"]


def test_registry():
    assert DETECTORS["scaleup"] is ScaleUp
    assert make_detector("scaleup", scales=(1, 3)).queries_per_input == 2  # n = 1 reuses the unscaled query
    assert make_detector("scaleup").queries_per_input == 1 + len(SCALES)
    with pytest.raises(ScannerError, match="unknown detector 'strop'; available: scaleup"):
        make_detector("strop")


def test_a_new_detector_runs_through_the_unchanged_core(tmp_path, images):
    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    scanner = Scanner(fx.path, device="cpu", detector=Brighten(), threshold=1.0)
    result = scanner.score_arrays(images)
    x2 = np.minimum(images * np.float32(2), 1)
    expected = (fx.predict(images) == fx.predict(x2)).astype(float)
    np.testing.assert_array_equal(result.same, expected)
    np.testing.assert_array_equal(result.flagged, expected == 1)
    np.testing.assert_array_equal(result.brightened_labels[:, 0], fx.predict(x2))


def test_scaleup_reports_what_produced_the_numbers():
    det = ScaleUp((3, 5))
    assert det.settings() == {"scales": [3, 5]} and det.describe() == "scales 3,5"
    assert det.query_names() == ["3", "5"] and det.calibrated == {"nspc": "spc"}
