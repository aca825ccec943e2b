"""STRIP (Gao et al., ACSAC 2019): the entropy of an input's predictions under superimposition.

An input x is superimposed with N clean images c_1 .. c_N and every blend is classified. A
trojaned input keeps its trigger through the blends, so the predictions stay on the target class
and have low entropy; a clean input's blends spread over classes. With the class probabilities
p_j of blend j (K classes), the score is::

    strip(x) = 1 - mean_j H(p_j) / log K,     H(p) = -sum_k p_k log p_k   (0 log 0 = 0)

in [0, 1]; higher means lower entropy, so more suspicious (the direction every scanner score
uses). The paper thresholds the mean entropy itself; dividing by log K only fixes the range.

Superimposition is in pixel space, before the model's range and mean/std (the preprocessor's
job). The default, ``mode="add"``, is what the STRIP paper does: the pixel-wise sum of the input
and the clean image, saturated, ``clip(x + c, 0, 1)``. ``mode="alpha"`` is the equal-weight
blend ``0.5 * x + 0.5 * c`` that some reimplementations use.

The clean images come from a calibration (``fit``); every input is blended with the same N held
images, so an input's score never depends on the batch it is scored in.

Cost: 1 + N model queries per input (the input itself, then one per blend; N = 20 by default).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._validation import check_number
from ..inputs.decode import BYTE_MAX
from ..model.preprocess import Preprocessor
from .base import MAX_PREVIEWS, Detector, DetectorScores, Preview, unit_queries
from .held import held_for, take, unit_images

DEFAULT_BLENDS = 20
#: blends a report draws for one input (:meth:`Strip.preview`)
PREVIEW_BLENDS = 4
MAX_BLENDS = 256
MODES = ("add", "alpha")
#: flag threshold without a calibration: data-free (half of the normalized entropy range), not
#: calibrated on any model; a calibration on clean images should set the real one
DEFAULT_THRESHOLD = 0.5

_NOT_FITTED = ("STRIP needs clean images from a calibration "
               "(scanner calibrate MODEL CLEAN... -o cal.json, then scan with --calibration cal.json); none were given")


def prediction_entropy(probs: np.ndarray) -> np.ndarray:
    """Shannon entropy (natural log, 0 log 0 = 0) of each row of class probabilities, float64.

    Rows are renormalized to sum 1 first (a model's probability output may be off by rounding).
    """
    p = np.asarray(probs, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / p.sum(axis=-1, keepdims=True)
        terms = p * np.log(p)
    terms[p == 0] = 0.0  # 0 log 0 = 0; NaN (non-finite outputs) stays NaN
    return -terms.sum(axis=-1)


def label_entropy(labels: np.ndarray) -> np.ndarray:
    """Entropy (natural log) of the histogram of each row of labels (rows, n), float64."""
    labels = np.asarray(labels)
    rows, n = labels.shape
    s = np.sort(labels, axis=1)
    # a run of equal labels in a sorted row is one histogram bin: number the runs row by row
    starts = np.ones((rows, n), dtype=np.int64)
    starts[:, 1:] = s[:, 1:] != s[:, :-1]
    run = np.cumsum(starts, axis=1) - 1 + (np.arange(rows) * n)[:, None]
    counts = np.bincount(run.ravel(), minlength=rows * n).reshape(rows, n)
    p = counts / n
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(counts > 0, p * np.log(np.where(counts > 0, p, 1.0)), 0.0)
    return -terms.sum(axis=1)


class Strip(Detector):
    """STRIP as a detector: one score, ``strip`` (higher = lower blend entropy = more suspicious).

    Parameters
    ----------
    n_blends : int, default=20
        N, the clean images every input is superimposed with (1 to 256).
    mode : {"add", "alpha"}, default="add"
        "add": ``clip(x + c, 0, 1)``, the STRIP paper's superimposition; "alpha":
        ``0.5 * x + 0.5 * c``.
    seed : int, default=0
        Seeds the choice of the N held images among those given to :meth:`fit`.

    Notes
    -----
    With class probabilities the score is ``1 - mean_j H(p_j) / log K``. For a label-only model
    (no probabilities) it falls back to the entropy of the histogram of the N blend labels,
    normalized by its largest possible value ``log N`` (all N labels different; K is not known
    from labels): ``1 - H(histogram) / log N``, again in [0, 1]; with N = 1 the score is 1.
    The two forms are not on the same scale, so a threshold does not carry from one to the other.

    Rows of the query buffer: rows 0 .. b-1 are the inputs themselves; row ``j * b + k``
    (j = 1 .. N) is input k superimposed with held image ``j - 1``.

    Examples
    --------
    >>> det = Strip(n_blends=20)                                           # doctest: +SKIP
    >>> det.fit(clean_images)          # (n >= 20, H, W, C) at the model's input size  # doctest: +SKIP
    >>> Scanner("model.onnx", detector=det).score_arrays(x).scores["strip"]  # doctest: +SKIP

    A calibration stores :attr:`held_images` and rebuilds the same detector with
    ``Strip.from_images(images, mode=..., seed=...)``.
    """

    name = "strip"
    score_names = ("strip",)
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, n_blends: int = DEFAULT_BLENDS, mode: str = "add", seed: int = 0) -> None:
        self.n_blends = check_number(n_blends, "n_blends", lo=1, hi=MAX_BLENDS, integer=True, error=ValueError)
        if mode not in MODES:
            raise ValueError(f"mode: expected 'add' (the STRIP paper's superimposition) or 'alpha' "
                             f"(0.5 * input + 0.5 * clean), got {mode!r}")
        self.mode = mode
        self.seed = check_number(seed, "seed", lo=0, integer=True, error=ValueError)
        #: clean images :meth:`fit` must be given, at least
        self.clean_images_needed = self.n_blends
        self._held: np.ndarray | None = None

    @classmethod
    def from_images(cls, images: Any, *, mode: str = "add", seed: int = 0) -> "Strip":
        """The detector that holds exactly ``images`` (n, H, W, C), in order, so n_blends = n.

        What a calibration file stores (:attr:`held_images`, plus mode and seed for the record)
        gives back the same queries and scores.
        """
        held = unit_images(images, "images")
        if len(held) > MAX_BLENDS:
            raise ValueError(f"images: {len(held)} images; at most {MAX_BLENDS} blends are allowed")
        det = cls(n_blends=len(held), mode=mode, seed=seed)
        det._hold(held)
        return det

    def _hold(self, held: np.ndarray) -> None:
        held = np.ascontiguousarray(held, dtype=np.float32)
        held.flags.writeable = False
        self._held = held

    def fit(self, clean_images: Any) -> None:
        """Keep ``n_blends`` of ``clean_images``: all of them in their order when exactly that many
        are given (what a calibration stores and gives back), else a seeded choice without replacement.

        ``clean_images`` : (n, H, W, C), uint8 or float32 in [0, 1], at the model's input size,
        with n >= n_blends.
        """
        self._held = take(clean_images, self.n_blends, self.seed, f"STRIP with {self.n_blends} blends")

    @property
    def held_images(self) -> np.ndarray | None:
        """The N held clean images (N, H, W, C), float32 in [0, 1], read-only; None before :meth:`fit`."""
        return self._held

    @property
    def queries_per_input(self) -> int:
        return 1 + self.n_blends

    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        held = held_for(self._held, images, "STRIP", _NOT_FITTED)
        b = len(images)
        src = out[:b]
        base = pre.to_layout(images)
        if images.dtype == np.uint8:
            np.divide(base, BYTE_MAX, out=src, casting="unsafe")
        else:
            np.copyto(src, base)
        alpha = self.mode == "alpha"
        half = np.float32(0.5)
        clean = pre.to_layout(held * half if alpha else held)
        for j in range(self.n_blends):
            seg = out[(j + 1) * b:(j + 2) * b]
            if alpha:  # 0.5 * x + 0.5 * c (halving is exact in float32, so one rounding, in the sum)
                np.multiply(src, half, out=seg)
                np.add(seg, clean[j], out=seg)
            else:
                np.add(src, clean[j], out=seg)
                np.clip(seg, np.float32(0), np.float32(1), out=seg)
            pre.normalize_(seg)
        pre.normalize_(src)  # last: the blends were made from its unit-range pixels

    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        n = self.n_blends
        if probs is not None:
            k = probs.shape[-1]
            if k < 2:
                raise ValueError(f"STRIP needs at least 2 class probabilities per row, got {k}")
            entropy = prediction_entropy(probs.reshape(1 + n, b, k)[1:]).mean(axis=0)
            strip = 1.0 - entropy / np.log(k)
        else:  # label-only model: the entropy of the blends' label histogram, over its maximum log N
            blend_labels = np.asarray(labels[b:]).reshape(n, b).T
            strip = (np.ones(b) if n == 1 else 1.0 - label_entropy(blend_labels) / np.log(n))
        strip = np.clip(strip, 0.0, 1.0)  # rounding only; NaN (non-finite outputs) stays NaN
        return DetectorScores(np.asarray(labels[:b]), np.zeros((b, 0), np.int64), {"strip": strip})

    def query_names(self) -> list[str]:
        return []

    def preview(self, image: np.ndarray, count: int = PREVIEW_BLENDS) -> list[Preview]:
        """The first ``count`` blends of ``image`` (with held images 1 .. count), built by
        :meth:`build_queries` of a detector holding only those; none before :meth:`fit`."""
        if self._held is None:
            return []
        count = min(count, self.n_blends, MAX_PREVIEWS)
        part = Strip.from_images(self._held[:count], mode=self.mode, seed=self.seed)
        queries = unit_queries(part, image)
        return [Preview(f"blend {j}", queries[j]) for j in range(1, count + 1)]

    def settings(self) -> dict[str, Any]:
        return {"n_blends": self.n_blends, "mode": self.mode, "seed": self.seed}

    def describe(self) -> str:
        kind = "additive" if self.mode == "add" else "alpha (0.5/0.5)"
        return f"{self.n_blends} {kind} blend{'s' if self.n_blends != 1 else ''}"
