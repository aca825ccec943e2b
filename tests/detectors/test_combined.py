"""Several detectors in one model call: the shared input query, each part's own rows."""

import numpy as np
import pytest

from scanner.detectors import Combined, ScaleUp, build_detector, parse_names
from scanner.detectors.base import Detector, DetectorScores
from scanner.errors import ScannerError
from scanner.model.preprocess import Preprocessor
from scanner.model.spec import Spec


class Marker(Detector):
    """Writes query j of input k as the constant 100 * j + k (after the input itself)."""

    score_names = ("marker",)

    def __init__(self, name, queries):
        self.name, self._q = name, queries

    @property
    def queries_per_input(self):
        return self._q

    def build_queries(self, images, out, pre):
        b = len(images)
        for j in range(self._q):
            for k in range(b):
                out[j * b + k] = 0.0 if j == 0 else 100 * j + k

    def score(self, labels, probs, b):
        # the score says which rows the part received: the sum of its labels per input
        return DetectorScores(labels[:b], np.zeros((b, 0), np.int64),
                              {self.name: labels.reshape(self._q, b).sum(axis=0).astype(float)})


def test_query_layout_and_scores_of_each_part():
    a, b = Marker("a", 3), Marker("b", 4)
    a.score_names, b.score_names = ("a",), ("b",)
    both = Combined([a, b])
    assert both.queries_per_input == 1 + 2 + 3
    n = 2
    out = np.zeros((both.queries_per_input * n, 1, 1, 1), np.float32)
    both.build_queries(np.zeros((n, 1, 1, 1), np.float32), out, Preprocessor(Spec(height=1, width=1, channels=1)))
    rows = out.reshape(-1).tolist()
    # input rows, then a's queries 1..2, then b's queries 1..3
    assert rows == [0, 0, 100, 101, 200, 201, 100, 101, 200, 201, 300, 301]
    labels = np.asarray(rows, np.int64)  # a "model" that returns each row's value as its label
    scores = both.score(labels, None, n).scores
    np.testing.assert_array_equal(scores["a"], [0 + 100 + 200, 0 + 101 + 201])
    np.testing.assert_array_equal(scores["b"], [0 + 100 + 200 + 300, 0 + 101 + 201 + 301])


def test_names_and_errors():
    assert parse_names("ScaleUp, teco,scaleup") == ("scaleup", "teco")
    with pytest.raises(ScannerError, match="unknown detector 'nope'"):
        parse_names("scaleup,nope")
    assert isinstance(build_detector("scaleup"), ScaleUp)
    with pytest.raises(ValueError, match="two or more different"):
        Combined([ScaleUp(), ScaleUp()])
    both = build_detector("scaleup,teco", {"teco": {"severities": 2}})
    assert both.queries_per_input == 1 + 5 + 12 * 2
    assert both.scales == (3, 5, 7, 9, 11)


def test_preview_is_each_parts_preview_in_order():
    from scanner.detectors import Strip, TeCo

    rng = np.random.default_rng(0)
    x = rng.random((8, 8, 3), dtype=np.float32)
    strip = Strip.from_images(rng.random((5, 8, 8, 3), dtype=np.float32))
    parts = [ScaleUp(scales=(3, 5)), strip, TeCo(corruptions=("contrast", "pixelate"), severities=2)]
    shown = Combined(parts).preview(x)
    expected = [p for part in parts for p in part.preview(x)]
    assert [p.caption for p in shown] == ["x3", "x5", "blend 1", "blend 2", "blend 3", "blend 4", "contrast 2",
                                          "pixelate 2"]
    assert all(np.array_equal(a.image, b.image) and a.query == b.query for a, b in zip(shown, expected))


def test_a_detector_previews_nothing_by_default():
    class Plain(Detector):
        name = "plain"
        score_names = ("plain",)
        queries_per_input = 1

        def build_queries(self, images, out, pre):
            pass

        def score(self, labels, probs, b):
            return DetectorScores(labels[:b], np.zeros((b, 0), np.int64), {})

    assert Plain().preview(np.zeros((4, 4, 3), np.float32)) == []
