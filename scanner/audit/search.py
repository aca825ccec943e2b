"""The search for each class's strongest trigger, by queries alone.

Every seeded random candidate of every family (``triggers.candidates``)
is stamped on the search images; for each class k, the candidate that sends the largest share of
the search images the model does not already call k to k is kept. Labels are all it needs, so a
model that outputs labels only is audited the same way.

The chosen trigger is then measured once on the held-back images, which the search never saw: its
success rate there is what the report states and what the verdict reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import triggers as T

Predict = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray | None]]


@dataclass
class Budget:
    """How hard the search tries: ``draws`` random members per family and setting. The search
    costs ``len(candidates) * search images`` queries, shared by all classes, plus one pass over
    the held-back images per distinct trigger chosen (at most one per class, at most one per
    candidate), so it grows with the number of classes only until every candidate is chosen."""

    draws: int = 4


@dataclass
class ClassSearch:
    """What the search found for one class."""

    trigger: T.Trigger
    search_rate: float          # share of the search images (not already k) it sent to k
    heldout_rate: float         # the same on the held-back images
    heldout_n: int              # held-back images not already k
    queries: int               # queries this class added (0 when it shares an earlier class's trigger)


def _rates(labels: np.ndarray, clean: np.ndarray, k: int) -> float:
    moved = clean != k
    return float((labels[moved] == k).mean()) if moved.any() else 0.0


class Searcher:
    """Runs the search over one model's ``predict`` and a fixed split of clean images."""

    def __init__(self, predict: Predict, search: np.ndarray, heldout: np.ndarray, num_classes: int,
                 *, budget: Budget, seed: int, families: tuple[str, ...] = T.FAMILIES) -> None:
        self.predict, self.budget, self.seed, self.families = predict, budget, seed, families
        self.search, self.heldout, self.k = search, heldout, num_classes
        self.queries = 0
        self.search_labels = self._labels(search)
        self.heldout_labels = self._labels(heldout)

    def _labels(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return self.predict(x)[0]

    def random_stage(self, progress: Callable[[int, int], None] | None = None) -> list[tuple[T.Trigger, float]]:
        """Per class, the random candidate with the highest search rate (ties: the smaller one, then the first)."""
        _, h, w, c = self.search.shape
        best: list[tuple[T.Trigger, float] | None] = [None] * self.k
        found = T.candidates(h, w, c, self.seed, self.budget.draws, self.families)
        for i, trig in enumerate(found):
            if progress:
                progress(i, len(found) + self.k)
            labels = self._labels(trig.apply(self.search))
            for k in range(self.k):
                r = _rates(labels, self.search_labels, k)
                cur = best[k]
                if cur is None or r > cur[1] or (r == cur[1] and trig.size < cur[0].size and trig.family == cur[0].family):
                    best[k] = (trig, r)
        return best  # type: ignore[return-value]

    def run(self, progress: Callable[[int, int], None] | None = None) -> list[ClassSearch]:
        chosen = self.random_stage(progress)
        n = len(T.candidates(*self.search.shape[1:], self.seed, self.budget.draws, self.families))
        # classes often share their best candidate: each distinct trigger crosses the held-back set once
        heldout: dict[int, np.ndarray] = {}
        out = []
        for k in range(self.k):
            before = self.queries
            trig, rate = chosen[k]
            if id(trig) not in heldout:
                heldout[id(trig)] = self._labels(trig.apply(self.heldout))
            labels = heldout[id(trig)]
            moved = int((self.heldout_labels != k).sum())
            out.append(ClassSearch(trig, rate, _rates(labels, self.heldout_labels, k), moved,
                                   self.queries - before))
            if progress:
                progress(n + k + 1, n + self.k)
        return out
