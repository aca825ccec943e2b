"""``audit(model, clean)``: is this model backdoored, judged from clean images by queries alone."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from ..inputs.find import InputSet, MemoryArray, check_memory_images, collect_inputs
from ..inputs.stream import BatchLoader, _as_float
from ..model.loader import Model, load_model
from ..model.runner import DEFAULT_CALL_TIMEOUT
from . import verdict as V
from . import triggers as T
from .search import Budget, ClassSearch, LabelCandidates, Searcher


@dataclass
class ClassAudit:
    """One class: its strongest trigger and the evidence that it is a backdoor target."""

    index: int
    name: str
    heldout_rate: float
    heldout_n: int
    search_rate: float
    anomaly: float
    suspect: bool
    trigger: str
    family: str
    size: float
    queries: int

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "heldout_success": round(self.heldout_rate, 4),
                "heldout_images": self.heldout_n, "search_success": round(self.search_rate, 4),
                "anomaly_index": round(float(self.anomaly), 3), "suspect": self.suspect,
                "trigger": self.trigger, "trigger_family": self.family, "trigger_size": round(self.size, 6),
                "queries": self.queries}


@dataclass
class AuditResult:
    """What ``scanner audit`` reports: the verdict, every class, and what was searched at what cost."""

    model: str
    verdict: V.AuditVerdict
    classes: list[ClassAudit]
    images: int                         # decodable clean images used
    failures: list[tuple[str, str]]     # (input, reason) of clean inputs that could not be read
    search_images: int
    heldout_images: int
    labels_only: bool
    budget: Budget
    seed: int
    queries: int
    seconds: float
    families: tuple[str, ...] = ()
    left_out: str = ""                  # why families were left out, if any
    searches: list[ClassSearch] = field(default_factory=list, repr=False)
    examples: np.ndarray | None = field(default=None, repr=False)  # a few held-back images, for the HTML report

    def to_dict(self) -> dict:
        b = self.budget
        return {"model": self.model, "verdict": self.verdict.to_dict(),
                "classes": [c.to_dict() for c in self.classes],
                "search": {"families": list(self.families), "families_left_out": self.left_out or None,
                           "clean_images": self.images,
                           "search_images": self.search_images, "heldout_images": self.heldout_images,
                           "labels_only": self.labels_only, "seed": self.seed,
                           "random_draws": b.draws,
                           "queries": self.queries, "seconds": round(self.seconds, 2)},
                "failed_inputs": [{"input": n, "reason": r} for n, r in self.failures]}

    def __str__(self) -> str:
        return f"verdict: {self.verdict.status}" + (f" ({self.verdict.reason})" if self.verdict.reason else "")


def _load_clean(model: Model, clean, max_images: int, seed: int) -> tuple[np.ndarray, list[tuple[str, str]]]:
    """The readable clean images (at most ``max_images``, a seeded subset of the inputs chosen
    before decoding, so memory holds only those) and the (input, reason) of each unreadable one."""
    if isinstance(clean, InputSet):
        inputs = clean
    elif isinstance(clean, (str, Path)):
        inputs = collect_inputs([clean])
    elif isinstance(clean, np.ndarray):
        inputs = InputSet()
        inputs.add_array(MemoryArray(check_memory_images(clean, "clean")))
    else:
        inputs = collect_inputs(list(clean))
    chosen = np.arange(len(inputs))
    if len(inputs) > max_images:
        chosen = np.sort(np.random.default_rng(seed).choice(len(inputs), max_images, replace=False))
    spec = model.spec
    loader = BatchLoader(inputs, height=spec.height, width=spec.width, channels=spec.channels, batch_size=256)
    kept, failures = [], []
    for batch in loader:
        rows = np.isin(batch.indices, chosen)
        kept.append(_as_float(batch.images, len(batch.images))[rows])
        failures.extend((inputs.name(i), reason) for i, reason in batch.failures)
    images = np.concatenate(kept) if kept else np.zeros((0, spec.height, spec.width, spec.channels), np.float32)
    return images, failures


def audit(model: str | Path | Model, clean: str | Path | Sequence[str | Path] | InputSet | np.ndarray, *,
          max_images: int = 1000, search_images: int = 128, seed: int = 0, budget: Budget | None = None,
          device: str = "auto", options: dict | None = None, spec_file: str | Path | None = None,
          threads: int | None = None, call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT,
          progress: Callable[[int, int], None] | None = None,
          engine: Callable[..., LabelCandidates] | None = None) -> AuditResult:
    """Search each class for a small trigger that sends clean images to it, and judge the model.

    ``clean``: trusted clean images (files, folders, ``.npy``/``.npz``, or an (N, H, W, C) array),
    at most ``max_images`` of them used (a seeded subset); ``search_images`` of them guide the
    search, the rest are held back to measure what it found. ``call_timeout``: the per-call
    watchdog, as for :func:`~scanner.model.loader.load_model`. ``engine(shape, seed, draws,
    families)``, if given, returns where the candidates are labelled (the Ray engine's actors,
    :func:`scanner.engines.ray_audit.audit`); the result is the same.
    """
    t0 = time.perf_counter()
    if not isinstance(model, Model):
        model = load_model(model, device=device, options=options, spec_file=spec_file, threads=threads,
                           call_timeout=call_timeout)
    budget = budget or Budget()
    images, failures = _load_clean(model, clean, max_images, seed)
    labels_only = model.output_kind != "scores"
    names = list(model.spec.class_names or [])
    k = model.num_classes

    families, left_out = T.FAMILIES, ""
    sat = T.saturation(images)
    if sat > T.MAX_SATURATION:
        families = tuple(f for f in T.FAMILIES if f not in T.TEXTURE_FAMILIES)
        left_out = (f"blend and additive left out: {sat:.0%} of the clean pixels are at 0 or 1 (near-binary "
                    "images), on which any texture is out of distribution")

    def result(verdict, classes=(), searches=(), queries=0, n_search=0, examples=None) -> AuditResult:
        return AuditResult(str(model.info.path), verdict, list(classes), len(images), failures, n_search,
                           len(images) - n_search, labels_only, budget, seed, queries,
                           time.perf_counter() - t0, families, left_out, list(searches), examples)

    if k is None or k < 2:
        return result(V.cannot_judge("the number of classes is unknown (a labels-only output without class names; give --class-names)"))
    names = names if len(names) == k else [str(i) for i in range(k)]
    if len(images) < V.MIN_IMAGES:
        return result(V.cannot_judge(f"too few clean images: {len(images)} readable, the audit needs at least "
                                     f"{V.MIN_IMAGES}"))

    def predict(x: np.ndarray):
        return model.predict(model.preprocessor(np.ascontiguousarray(x, dtype=np.float32)))

    order = np.random.default_rng(seed).permutation(len(images))
    n_search = min(search_images, len(images) // 2)
    searcher = Searcher(predict, images[order[:n_search]], images[order[n_search:]], k, budget=budget,
                        seed=seed, families=families)
    counts = np.bincount(searcher.heldout_labels, minlength=k)
    if counts.max() > V.MAX_ONE_CLASS * counts.sum():
        top = int(counts.argmax())
        return result(V.cannot_judge(f"the model calls {counts.max() / counts.sum():.0%} of the clean images class "
                                     f"{top} ({names[top]}): they do not show it its classes"),
                      queries=searcher.queries, n_search=n_search)
    if engine is not None:  # started only for an audit that will search (Ray actors are not free)
        searcher.label_candidates = engine(images.shape[1:], seed, budget.draws, families)
    searches = searcher.run(progress)
    rates = np.array([s.heldout_rate for s in searches])
    verdict, idx = V.decide(rates, np.array([s.heldout_n for s in searches]), names)
    classes = [ClassAudit(c, names[c], s.heldout_rate, s.heldout_n, s.search_rate, float(idx[c]),
                          c in verdict.targets, s.trigger.describe(), s.trigger.family, s.trigger.size, s.queries)
               for c, s in enumerate(searches)]
    return result(verdict, classes, searches, searcher.queries, n_search, searcher.heldout[:6])
