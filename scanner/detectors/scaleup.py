"""SCALE-UP (Guo et al., ICLR 2023): amplified copies and scaled prediction consistency.

For an image x in [0, 1] and a scale set S, the amplified copies are ``clip(n * x, 0, 1)`` for
n in S (pixel space: the model's range and mean/std come after, from the preprocessor), and
``SPC(x) = |{n in S : argmax f(clip(n x)) == argmax f(x)}| / |S|``. Higher SPC means more
suspicious (a trigger keeps dominating the prediction under scaling). With a calibration, SPC
becomes the paper's NSPC (per-class benign mean and std, Eq. 3-4). ``prob_consistency`` (beyond
the paper) is the mean probability of the unscaled label across the scales.

Cost: |S| + 1 model queries per input (n = 1 reuses the unscaled query).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

import math

from .._validation import MAX_SCALE, MAX_SCALES, check_scales
from ..inputs.decode import BYTE_MAX
from ..model.preprocess import Preprocessor
from .base import Detector, DetectorScores, Preview, unit_queries

DEFAULT_SCALES: tuple[float, ...] = (3, 5, 7, 9, 11)
DEFAULT_THRESHOLD = 0.5
# An input is undecidable when, averaged over the scales, fewer than UNDECIDABLE_SHARE of its
# pixel values change by more than UNDECIDABLE_DELTA (unit range) under amplification: its
# copies are the input again (near-binary digits, saturated or black images). Measured on the
# test splits (`python -m bench.undecidable`): every MNIST digit is below 0.2 (max 0.172), and
# 0.4% of CIFAR-10 and 0.25% of GTSRB images (near-white or near-black ones).
UNDECIDABLE_DELTA = 0.1
UNDECIDABLE_SHARE = 0.2


def parse_scales(text: str) -> tuple[float, ...]:
    """Parse ``"3,5,7,9,11"``, ``"1-11"`` or a mix such as ``"1,3-5"`` into sorted unique scales."""
    values: set[float] = set()
    for item in str(text).replace(" ", "").split(","):
        if not item:
            continue
        try:
            if "-" in item[1:]:
                lo, hi = item.split("-", 1) if not item.startswith("-") else (item, "")
                lo_i, hi_i = int(lo), int(hi)
                if hi_i < lo_i:
                    raise ValueError
                if hi_i - lo_i >= MAX_SCALES:
                    raise ValueError(f"the range {item} has {hi_i - lo_i + 1} scales; at most {MAX_SCALES} are allowed")
                values.update(float(v) for v in range(lo_i, hi_i + 1))
            else:
                values.add(float(item))
        except ValueError as exc:
            if str(exc).startswith("the range"):
                raise
            raise ValueError(f"cannot read scale {item!r}: use numbers and integer ranges, e.g. 3,5,7,9,11 or 1-11") from None
    if not values:
        raise ValueError("the scale set is empty")
    if any(not math.isfinite(v) for v in values):
        raise ValueError(f"scales must be finite numbers, got {sorted(values)}")
    if any(v <= 0 for v in values):
        raise ValueError(f"scales must be positive, got {sorted(values)}")
    if len(values) > MAX_SCALES or max(values) > MAX_SCALE:
        raise ValueError(f"at most {MAX_SCALES} scales of at most {MAX_SCALE:g} are allowed, got {len(values)} "
                         f"up to {max(values):g}")
    return tuple(int(v) if float(v).is_integer() else v for v in sorted(values))


# Rows per block in fill_scaled_batch: about 256 KB of float32, so a block and its amplified
# copies stay in the core's L2 cache through multiply, clip and normalization.
_BLOCK_ELEMENTS = 1 << 16


def fill_scaled_batch(base: np.ndarray, scales, out: np.ndarray, *,
                      finish: Callable[[np.ndarray], object] | None = None) -> np.ndarray:
    """Fill ``out`` with ``base`` followed by ``clip(n * base, 0, 1)`` for each n in ``scales``.

    Parameters
    ----------
    base : ndarray of shape (b, ...), float32 in [0, 1] or uint8 pixels
        The unscaled images, already in the model's layout (a transposed view is fine). Bytes
        are converted as ``float32(p) / 255`` while copied, the loader's own rule.
    scales : sequence of positive numbers
        Copy ``i`` (rows ``(i + 1) * b`` to ``(i + 2) * b`` of ``out``) is scaled by ``scales[i]``.
    out : ndarray of shape ((1 + len(scales)) * b, ...), float32
        Receives the unscaled copy in its first ``b`` rows, then the copies scale-major.
    finish : callable, optional
        Applied in place to every piece of ``out`` once written (the model's normalization),
        while the piece is still in cache. The unscaled piece is finished last, after the
        copies were computed from it.

    Arithmetic stays in float32. The clip's lower bound cannot bind (n > 0 and base >= 0), so
    only the upper one is applied; the values are those of ``np.clip(n * base, 0, 1)``.
    """
    b = len(base)
    block = max(1, _BLOCK_ELEMENTS // max(1, out[0].size))
    one = np.float32(1.0)
    factors = [np.float32(n) for n in scales]
    for lo in range(0, b, block):
        hi = min(b, lo + block)
        src = out[lo:hi]
        if base.dtype == np.uint8:
            np.divide(base[lo:hi], BYTE_MAX, out=src, casting="unsafe")
        else:
            np.copyto(src, base[lo:hi])
        for i, n in enumerate(factors, start=1):
            seg = out[i * b + lo:i * b + hi]
            np.multiply(src, n, out=seg)
            np.minimum(seg, one, out=seg)
            if finish is not None:
                finish(seg)
        if finish is not None:
            finish(src)
    return out


def spc_score(labels: np.ndarray, scaled_labels: np.ndarray) -> np.ndarray:
    """Scaled prediction consistency.

    Parameters
    ----------
    labels : ndarray of shape (n_inputs,)
        Label of each unscaled input.
    scaled_labels : ndarray of shape (n_inputs, n_scales)
        Label of each amplified copy.

    Returns
    -------
    spc : ndarray of shape (n_inputs,), float64 in [0, 1]; higher is more suspicious.
    """
    labels = np.asarray(labels)
    scaled_labels = np.asarray(scaled_labels)
    if scaled_labels.ndim != 2 or len(scaled_labels) != len(labels):
        raise ValueError(f"expected scaled_labels of shape ({len(labels)}, n_scales), got {scaled_labels.shape}")
    return (scaled_labels == labels[:, None]).mean(axis=1)


def amplification_change(images: np.ndarray, scales) -> np.ndarray | None:
    """Per image, the share of pixel values that ``clip(n x, 0, 1)`` moves by more than
    :data:`UNDECIDABLE_DELTA`, averaged over ``scales`` other than 1 (None without one)."""
    scales = [np.float32(n) for n in scales if n != 1]
    if not scales:
        return None
    flat = np.asarray(images).reshape(len(images), -1)
    x = flat.astype(np.float32) / BYTE_MAX if flat.dtype == np.uint8 else flat.astype(np.float32, copy=False)
    d, one = np.float32(UNDECIDABLE_DELTA), np.float32(1)
    total = np.zeros(len(x), dtype=np.float64)
    for n in scales:
        total += (np.abs(np.minimum(x * n, one) - x) > d).mean(axis=1)
    return total / len(scales)


class ScaleUp(Detector):
    """SCALE-UP as a detector: scores ``spc``, ``nspc`` (with a calibration), ``prob_consistency``.

    Parameters
    ----------
    scales : sequence of positive numbers, default=(3, 5, 7, 9, 11)
        The scale set S; n = 1 (the official code's variant) reuses the unscaled label.
    """

    name = "scaleup"
    score_names = ("spc", "nspc", "prob_consistency")
    calibrated = {"nspc": "spc"}
    probability_scores = frozenset({"prob_consistency"})
    query_labels_key = "scaled_labels"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, scales=DEFAULT_SCALES) -> None:
        self.scales = check_scales(scales)
        # n = 1 gives the unscaled image again: reuse its label instead of running it twice
        self._extra = [n for n in self.scales if n != 1]

    @property
    def queries_per_input(self) -> int:
        return 1 + len(self._extra)

    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        fill_scaled_batch(pre.to_layout(images), self._extra, out, finish=pre.normalize_)

    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        unscaled = labels[:b]
        by_scale = dict(zip(self._extra, labels[b:].reshape(len(self._extra), b))) if self._extra else {}
        scaled = np.stack([unscaled if n == 1 else by_scale[n] for n in self.scales], axis=1)
        consistency = None
        if probs is not None:
            # probability of the unscaled label in each copy; copy k of scale i is row (i + 1) * b + k
            p_y = probs.reshape(1 + len(self._extra), b, -1)[:, np.arange(b), unscaled]
            per_scale = {n: p_y[1 + i] for i, n in enumerate(self._extra)}
            consistency = np.mean([p_y[0] if n == 1 else per_scale[n] for n in self.scales], axis=0)
        return DetectorScores(unscaled, scaled, {"spc": spc_score(unscaled, scaled), "prob_consistency": consistency})

    def undecidable(self, images: np.ndarray) -> tuple[np.ndarray, str] | None:
        changed = amplification_change(images, self._extra)
        if changed is None:
            return None
        return changed < UNDECIDABLE_SHARE, (
            f"amplification barely changes it: on average {UNDECIDABLE_SHARE:.0%} or fewer of its pixel values "
            f"move by more than {UNDECIDABLE_DELTA:g} (near-binary or saturated image); SCALE-UP cannot judge it")

    def query_names(self) -> list[str]:
        return [str(n) for n in self.scales]

    def preview(self, image: np.ndarray) -> list[Preview]:
        """Every amplified copy ``clip(n x, 0, 1)``, one per scale (n = 1: the input), each with
        the query name its reported label has (not capped: these are the labels a report shows)."""
        queries = unit_queries(self, image)
        row = {n: 1 + i for i, n in enumerate(self._extra)}
        return [Preview(f"x{n}", queries[row.get(n, 0)], str(n)) for n in self.scales]

    def settings(self) -> dict[str, Any]:
        return {"scales": list(self.scales)}

    def describe(self) -> str:
        return "scales " + ",".join(map(str, self.scales))
