"""Benign references for any score: what trusted clean inputs of each predicted class scored.

A calibration keeps, per raw score and per predicted class, the sorted scores of its clean
inputs. A new input predicted as class y with score s gets the conformal p-value

    p = (1 + #{reference inputs of class y scoring >= s}) / (n_y + 1)

which, for clean inputs of the same distribution, is at most ``a`` with probability at most
``a``: flagging ``p <= a`` has a false-positive rate of at most ``a`` in every predicted class,
the target's included. Reports show ``q = 1 - p`` (higher is more suspicious, like every score).
Classes with fewer than ``min_class_samples`` reference inputs use the pooled reference.

Several scores combine by Fisher's method, ``F = -2 sum log p_i``, and ``F`` gets its own
per-class reference from the calibration inputs' leave-one-out p-values, so the combined flag
keeps the same guarantee. A detector that cannot judge an input (SCALE-UP on a near-binary
digit) drops out of that input's combination: ``F`` over the p-values of the detectors that can,
compared with the reference of that same combination (the calibration inputs' leave-one-out
p-values of those detectors), i.e. the null distribution of the k remaining terms (2k degrees of
freedom under independence), measured rather than assumed. One remaining detector: its own
p-value. None: the input is undecidable for the combination.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from .._validation import check_label_key, check_rate, is_finite
from ..errors import CalibrationError

COMBINED = "fisher"


def q_name(score: str) -> str:
    """The report name of a score's calibrated form: ``q_<score>``."""
    return f"q_{score}"


@dataclass
class ScoreReference:
    """Sorted benign values of one score, per predicted class and pooled."""

    per_class: dict[int, np.ndarray]
    pooled: np.ndarray
    min_class_samples: int

    @classmethod
    def fit(cls, values: np.ndarray, labels: np.ndarray, min_class_samples: int) -> "ScoreReference":
        """From benign ``values`` and their predicted ``labels``; NaN values (inputs the detector
        could not judge) are left out."""
        values, labels = np.asarray(values, np.float64), np.asarray(labels, np.int64)
        keep = ~np.isnan(values)
        values, labels = values[keep], labels[keep]
        return cls({int(k): np.sort(values[labels == k]) for k in np.unique(labels)}, np.sort(values),
                   int(min_class_samples))

    def reference(self, label: int) -> np.ndarray:
        own = self.per_class.get(int(label))
        return own if own is not None and len(own) >= self.min_class_samples else self.pooled

    def p_values(self, values: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Conformal p-value of each input against the reference of its predicted class."""
        values, labels = np.asarray(values, np.float64), np.asarray(labels, np.int64)
        p = np.ones(len(values), dtype=np.float64)
        for label in np.unique(labels):
            rows = labels == label
            ref = self.reference(int(label))
            at_least = len(ref) - np.searchsorted(ref, values[rows], side="left")
            p[rows] = (1 + at_least) / (len(ref) + 1)
        return p

    def leave_one_out(self, values: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """p-values of the reference's own inputs, each against the others (what a fresh clean
        input's p-value looks like)."""
        values, labels = np.asarray(values, np.float64), np.asarray(labels, np.int64)
        p = np.ones(len(values), dtype=np.float64)
        for label in np.unique(labels):
            rows = labels == label
            ref = self.reference(int(label))
            at_least = len(ref) - np.searchsorted(ref, values[rows], side="left")  # self included
            p[rows] = at_least / max(len(ref), 1)
        p[np.isnan(values)] = np.nan  # not judged: no p-value
        return p

    def unflaggable(self, rate: float) -> dict[int, float]:
        """Classes (with their own reference) no input can reach ``p <= rate`` in: too few
        reference inputs (``1 / (n + 1) > rate``), or several of them tie at the top, so many that
        an input at that value is not flagged: the sign of a score at its ceiling (SPC = 1), which
        no input can exceed (zero spread is the extreme). Maps the class to that top value."""
        out = {}
        for label, ref in self.per_class.items():
            if len(ref) >= self.min_class_samples:
                ties = len(ref) - np.searchsorted(ref, ref[-1], side="left")
                saturated = ties >= 2 and (1 + ties) / (len(ref) + 1) > rate
                if saturated or 1 / (len(ref) + 1) > rate:
                    out[label] = float(ref[-1])
        return out

    def sizes(self) -> dict[int, int]:
        """Reference size per class with its own reference; key -1: the pooled one (the rest)."""
        own = {k: len(v) for k, v in self.per_class.items() if len(v) >= self.min_class_samples}
        return {**own, -1: len(self.pooled)}

    def to_dict(self) -> dict[str, Any]:
        return {"per_class": {str(k): v.tolist() for k, v in sorted(self.per_class.items())},
                "pooled": self.pooled.tolist()}

    @classmethod
    def from_dict(cls, data: Any, min_class_samples: int, where: str) -> "ScoreReference":
        if not isinstance(data, dict) or set(data) != {"per_class", "pooled"}:
            raise CalibrationError(f"{where} must be an object with per_class and pooled")

        def values(raw, at) -> np.ndarray:
            if not isinstance(raw, list) or not raw or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                                             for v in raw):
                raise CalibrationError(f"{at} must be a non-empty list of numbers")
            if not all(is_finite(v) for v in raw):  # NaN, infinity, an integer too large for a float
                raise CalibrationError(f"{at} holds a value that is not finite")
            return np.sort(np.asarray(raw, dtype=np.float64))

        per_class = {}
        if not isinstance(data["per_class"], dict):
            raise CalibrationError(f"{where}.per_class must be an object keyed by class label")
        for key, raw in data["per_class"].items():
            per_class[check_label_key(key, f"{where}.per_class", error=CalibrationError)] = \
                values(raw, f"{where}.per_class[{key}]")
        return cls(per_class, values(data["pooled"], f"{where}.pooled"), min_class_samples)


def fisher(p_values: Iterable[np.ndarray]) -> np.ndarray:
    """Fisher's combination ``-2 sum log p`` (higher is more suspicious)."""
    return -2.0 * np.sum([np.log(p) for p in p_values], axis=0)


@dataclass
class References:
    """Every calibrated score of a calibration: one reference per raw score, and the combined one."""

    scores: dict[str, ScoreReference]
    combined_of: tuple[str, ...] = ()
    combined: ScoreReference | None = None
    min_class_samples: int = 10
    achieved_fpr: dict[str, float] = field(default_factory=dict)
    #: the calibration inputs' leave-one-out p-values per score (NaN: not judged) and their labels:
    #: the references of combinations of fewer scores are made from them when an input needs one
    loo: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    labels: np.ndarray | None = field(default=None, repr=False)
    _subsets: dict[tuple[str, ...], ScoreReference | None] = field(default_factory=dict, repr=False)

    @classmethod
    def fit(cls, raw: dict[str, np.ndarray], labels: np.ndarray, *, combine: Iterable[str],
            min_class_samples: int, target_fpr: float) -> "References":
        labels = np.asarray(labels, np.int64)
        raw = {name: v for name, v in raw.items() if np.any(~np.isnan(np.asarray(v, np.float64)))}
        refs = {name: ScoreReference.fit(v, labels, min_class_samples) for name, v in raw.items()}
        out = cls(refs, min_class_samples=int(min_class_samples))
        achieved = {}
        loo = {name: refs[name].leave_one_out(v, labels) for name, v in raw.items()}
        out.loo, out.labels = loo, labels
        for name, p in loo.items():
            achieved[q_name(name)] = float(np.nanmean(p <= target_fpr))
        combine = tuple(c for c in combine if c in raw)
        if len(combine) >= 2:
            stat = fisher(loo[c] for c in combine)  # NaN where a part could not judge the input
            out.combined_of, out.combined = combine, ScoreReference.fit(stat, labels, min_class_samples)
            ok = ~np.isnan(stat)
            achieved[q_name(COMBINED)] = float((out.combined.leave_one_out(stat[ok], labels[ok]) <= target_fpr).mean())
        out.achieved_fpr = achieved
        return out

    @property
    def names(self) -> list[str]:
        """The calibrated score names this reference gives, in report order."""
        names = [q_name(n) for n in self.scores]
        return names + ([q_name(COMBINED)] if self.combined is not None else [])

    def reference_of(self, name: str) -> ScoreReference | None:
        """The reference behind the calibrated score ``name`` (``q_<score>`` or ``q_fisher``)."""
        if name == q_name(COMBINED):
            return self.combined
        return self.scores.get(name[2:]) if name.startswith("q_") else None

    def combined_for(self, parts: tuple[str, ...]) -> ScoreReference | None:
        """The reference of Fisher's combination of ``parts`` (a subset of ``combined_of``, in its
        order): the stored one for all of them, else made from the calibration inputs judged by
        every one of ``parts`` (None when there is none, or no leave-one-out p-values are kept)."""
        if parts == self.combined_of:
            return self.combined
        if parts not in self._subsets:
            ref = None
            if self.labels is not None and all(c in self.loo for c in parts):
                stat = fisher(self.loo[c] for c in parts)
                if np.any(~np.isnan(stat)):
                    ref = ScoreReference.fit(stat, self.labels, self.min_class_samples)
            self._subsets[parts] = ref
        return self._subsets[parts]

    def calibrated(self, raw: dict[str, np.ndarray | None], labels: np.ndarray,
                   judged: dict[str, np.ndarray] | None = None) -> dict[str, np.ndarray | None]:
        """``q_<score>`` (1 - p) for each referenced score, and ``q_fisher`` when combined.

        ``judged`` maps a raw score to the inputs its detector can judge (default: all). An input
        some of the combined detectors cannot judge gets Fisher's combination of the others (see
        :meth:`combined_for`); one none of them can judge keeps the value of the full combination
        (meaningless: the scanner marks it undecidable and never flags it)."""
        p = {name: None if raw.get(name) is None else ref.p_values(raw[name], labels)
             for name, ref in self.scores.items()}
        out: dict[str, np.ndarray | None] = {q_name(n): None if v is None else 1.0 - v for n, v in p.items()}
        if self.combined is None:
            return out
        parts = [p[c] for c in self.combined_of]
        if any(v is None for v in parts):
            out[q_name(COMBINED)] = None
            return out
        labels = np.asarray(labels, np.int64)
        q = 1.0 - self.combined.p_values(fisher(parts), labels)
        if judged:
            can = np.stack([np.asarray(judged[c], bool) if c in judged else np.ones(len(labels), bool)
                            for c in self.combined_of], axis=1)
            partial = np.flatnonzero(can.any(axis=1) & ~can.all(axis=1))
            for pattern in {tuple(row) for row in can[partial].tolist()}:
                rows = partial[(can[partial] == pattern).all(axis=1)]
                keep = tuple(c for c, ok in zip(self.combined_of, pattern) if ok)
                if len(keep) == 1:
                    q[rows] = 1.0 - p[keep[0]][rows]
                    continue
                ref = self.combined_for(keep)
                if ref is not None:
                    q[rows] = 1.0 - ref.p_values(fisher(p[c][rows] for c in keep), labels[rows])
        out[q_name(COMBINED)] = q
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"min_class_samples": self.min_class_samples,
                "scores": {n: r.to_dict() for n, r in self.scores.items()},
                "combined_of": list(self.combined_of),
                "combined": None if self.combined is None else self.combined.to_dict(),
                "achieved_fpr": dict(self.achieved_fpr)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "References":
        if not isinstance(data, dict) or not isinstance(data.get("scores"), dict):
            raise CalibrationError(f"{where} must be an object with scores")
        m = data.get("min_class_samples")
        if not isinstance(m, int) or isinstance(m, bool) or m < 1:
            raise CalibrationError(f"{where}.min_class_samples must be a positive integer")
        scores = {str(n): ScoreReference.from_dict(v, m, f"{where}.scores.{n}") for n, v in data["scores"].items()}
        combined_of = data.get("combined_of") or []
        if not isinstance(combined_of, list) or not all(isinstance(c, str) and c in scores for c in combined_of):
            raise CalibrationError(f"{where}.combined_of must list scores of {where}.scores")
        combined = data.get("combined")
        if (combined is None) != (len(combined_of) < 2):
            raise CalibrationError(f"{where}: combined and combined_of (two or more scores) go together")
        achieved = data.get("achieved_fpr") or {}
        if not isinstance(achieved, dict):
            raise CalibrationError(f"{where}.achieved_fpr must be an object")
        achieved = {str(k): check_rate(v, f"{where}.achieved_fpr[{k!r}]", error=CalibrationError)
                    for k, v in achieved.items()}
        return cls(scores, tuple(combined_of),
                   None if combined is None else ScoreReference.from_dict(combined, m, f"{where}.combined"),
                   m, achieved)
