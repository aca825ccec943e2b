"""Per-class counts of a scan's inputs, and whether their labels collapsed onto one class.

Split from :mod:`scanner.decide.verdict`, which re-exports them; pure functions of labels and flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A scan "collapses" when at least this share of its scored inputs (and at least this many)
# get one unscaled label. Under guessed preprocessing that is the signature of feeding the model
# wrong (a 0-255 model fed [0, 1] pixels predicts one class for everything), and a suspect named
# from it is an artefact, so none is named.
COLLAPSE_SHARE = 0.90
COLLAPSE_MIN_INPUTS = 20


@dataclass(frozen=True)
class ClassCount:
    """Inputs predicted as ``label`` and how many of them were flagged."""

    label: int
    inputs: int
    flagged: int
    class_name: str | None = None


def per_class_counts(labels: np.ndarray, flagged: np.ndarray, class_names=None) -> tuple[ClassCount, ...]:
    """Inputs and flagged inputs for each predicted label present, in label order."""
    # a sort, not np.unique: that imports numpy.ma on first use, ~15 ms of every scan's start
    order = np.argsort(labels, kind="stable")
    sorted_labels = np.asarray(labels)[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(order) else np.array([], int)
    counts = np.diff(np.r_[starts, len(order)])
    hits = np.add.reduceat(np.asarray(flagged, dtype=np.int64)[order], starts) if len(order) else []
    return tuple(ClassCount(int(sorted_labels[s]), int(n), int(k), _class_name(class_names, int(sorted_labels[s])))
                 for s, n, k in zip(starts, counts, hits))


def _class_name(names, label: int) -> str | None:
    return names[label] if names and 0 <= label < len(names) else None


def collapsed(labels: np.ndarray) -> tuple[int, float] | None:
    """``(label, share)`` when at least ``COLLAPSE_SHARE`` of at least ``COLLAPSE_MIN_INPUTS``
    labels are one class, else None."""
    labels = np.asarray(labels)
    if len(labels) < COLLAPSE_MIN_INPUTS:
        return None
    counts = per_class_counts(labels, np.zeros(len(labels), bool))
    top = max(counts, key=lambda c: c.inputs)
    share = top.inputs / len(labels)
    return (top.label, share) if share >= COLLAPSE_SHARE else None
