"""Several detectors in one pass: their queries share one model call per batch.

Every detector's query 0 is the input itself, so the combination runs it once: its cost is
``1 + sum(q_i - 1)`` queries per input. Each part scores from its own rows, exactly as it would
alone; the scores are all kept under their own names (they do not clash). How they combine
into one decision is a calibration's business (:mod:`scanner.decide.reference`, Fisher's method).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..model.preprocess import Preprocessor
from .base import Detector, DetectorScores, Preview


class Combined(Detector):
    """The detectors ``parts`` run together (at least two, distinct names)."""

    name = "combined"

    def __init__(self, parts: Sequence[Detector]) -> None:
        parts = list(parts)
        names = [p.name for p in parts]
        if len(parts) < 2 or len(set(names)) != len(names):
            raise ValueError(f"a combination needs two or more different detectors, got {names}")
        self.parts = parts
        self.score_names = tuple(n for p in parts for n in p.score_names)
        self.calibrated = {k: v for p in parts for k, v in p.calibrated.items()}
        self.probability_scores = frozenset().union(*(p.probability_scores for p in parts))
        # the first part that reports query labels names them (SCALE-UP's labels per scale)
        self._reporter = next((p for p in parts if p.query_names()), parts[0])
        self.query_labels_key = self._reporter.query_labels_key
        self.default_threshold = parts[0].default_threshold
        self.clean_images_needed = max(p.clean_images_needed for p in parts)
        self._scratch: np.ndarray | None = None

    @property
    def queries_per_input(self) -> int:
        return 1 + sum(p.queries_per_input - 1 for p in self.parts)

    def _offsets(self) -> list[int]:
        """First query index (after the shared query 0) of each part's own queries."""
        offsets, at = [], 1
        for p in self.parts:
            offsets.append(at)
            at += p.queries_per_input - 1
        return offsets

    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        b = len(images)
        first = self.parts[0]
        first.build_queries(images, out[:first.queries_per_input * b], pre)
        for part, at in zip(self.parts[1:], self._offsets()[1:]):
            rows = part.queries_per_input * b
            if self._scratch is None or len(self._scratch) < rows or self._scratch.shape[1:] != out.shape[1:]:
                self._scratch = np.empty((rows,) + out.shape[1:], dtype=out.dtype)
            scratch = self._scratch[:rows]
            part.build_queries(images, scratch, pre)
            out[at * b:(at + part.queries_per_input - 1) * b] = scratch[b:]  # its query 0 is shared

    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        scores: dict[str, np.ndarray | None] = {}
        reported = None
        for part, at in zip(self.parts, self._offsets()):
            own = slice(at * b, (at + part.queries_per_input - 1) * b)
            part_labels = np.concatenate([labels[:b], labels[own]])
            part_probs = None if probs is None else np.concatenate([probs[:b], probs[own]])
            out = part.score(part_labels, part_probs, b)
            scores.update(out.scores)
            if part is self._reporter:
                reported = out.query_labels
        return DetectorScores(labels[:b], reported, scores)

    def undecidable(self, images: np.ndarray) -> tuple[np.ndarray, str] | None:
        # undecidable only when no part can judge it: a part that cannot judge an input drops out
        # of that input's combined decision (the scanner asks each part, see Scanner.score_batch)
        found = [p.undecidable(images) for p in self.parts]
        if any(f is None for f in found):
            return None
        return np.logical_and.reduce([m for m, _ in found]), "; ".join(reason for _, reason in found)

    def query_names(self) -> list[str]:
        return self._reporter.query_names()

    def preview(self, image: np.ndarray) -> list[Preview]:
        """Every part's previews, in the parts' order."""
        return [shown for p in self.parts for shown in p.preview(image)]

    def settings(self) -> dict[str, Any]:
        return {"detectors": [{"name": p.name, **p.settings()} for p in self.parts]}

    def describe(self) -> str:
        return " + ".join(f"{p.name} ({p.describe()}, {p.queries_per_input} queries)" for p in self.parts)

    def fit(self, clean_images: np.ndarray) -> None:
        for p in self.parts:
            if p.clean_images_needed:
                p.fit(clean_images)

    @property
    def scales(self) -> tuple:
        return next((p.scales for p in self.parts if hasattr(p, "scales")), ())
