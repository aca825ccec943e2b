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


# (candidate indices, images) -> the model's labels for each candidate stamped on the images;
# the local one applies them here, the Ray engine's on its actors (scanner.engines.ray_audit)
LabelCandidates = Callable[[list[int], np.ndarray], list[np.ndarray]]


class Searcher:
    """Runs the search over one model's ``predict`` and a fixed split of clean images."""

    def __init__(self, predict: Predict, search: np.ndarray, heldout: np.ndarray, num_classes: int,
                 *, budget: Budget, seed: int, families: tuple[str, ...] = T.FAMILIES,
                 label_candidates: LabelCandidates | None = None) -> None:
        self.predict, self.budget, self.seed, self.families = predict, budget, seed, families
        self.search, self.heldout, self.k = search, heldout, num_classes
        self.found = T.candidates(*search.shape[1:], seed, budget.draws, families)
        self.label_candidates = label_candidates  # None: here, a few candidates a call (progress ticks)
        self.queries = 0
        self.search_labels = self._labels(search)
        self.heldout_labels = self._labels(heldout)

    def _labels(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return self.predict(x)[0]

    def _label_here(self, indices: list[int], images: np.ndarray) -> list[np.ndarray]:
        return [self.predict(self.found[i].apply(images))[0] for i in indices]

    def _label(self, indices: list[int], images: np.ndarray) -> list[np.ndarray]:
        self.queries += len(indices) * len(images)
        return (self.label_candidates or self._label_here)(indices, images)

    def random_stage(self, progress: Callable[[int, int], None] | None = None) -> list[tuple[int, float]]:
        """Per class, the index of the random candidate with the highest search rate and that rate
        (ties: the smaller trigger of the same family, else the first)."""
        n = len(self.found)
        best: list[tuple[int, float] | None] = [None] * self.k
        step = 8  # candidates per progress tick (and per call of the Ray engine's mapper: all at once)
        labelled: list[np.ndarray] = []
        if self.label_candidates is None:
            for start in range(0, n, step):
                if progress:
                    progress(start, n + self.k)
                labelled += self._label(list(range(start, min(n, start + step))), self.search)
        else:
            labelled = self._label(list(range(n)), self.search)
        for i, labels in enumerate(labelled):
            trig = self.found[i]
            for k in range(self.k):
                r = _rates(labels, self.search_labels, k)
                cur = best[k]
                if cur is None or r > cur[1] or (r == cur[1] and trig.family == self.found[cur[0]].family
                                                 and trig.size < self.found[cur[0]].size):
                    best[k] = (i, r)
        return best  # type: ignore[return-value]

    def run(self, progress: Callable[[int, int], None] | None = None) -> list[ClassSearch]:
        chosen = self.random_stage(progress)
        n = len(self.found)
        # classes often share their best candidate: each distinct trigger crosses the held-back set once
        distinct = sorted({i for i, _ in chosen})
        before = self.queries
        heldout = dict(zip(distinct, self._label(distinct, self.heldout)))
        per_trigger = len(self.heldout)
        seen: set[int] = set()
        out = []
        for k in range(self.k):
            i, rate = chosen[k]
            added = 0 if i in seen else per_trigger
            seen.add(i)
            moved = int((self.heldout_labels != k).sum())
            out.append(ClassSearch(self.found[i], rate, _rates(heldout[i], self.heldout_labels, k), moved, added))
            if progress:
                progress(n + k + 1, n + self.k)
        assert self.queries - before == per_trigger * len(distinct)
        return out
