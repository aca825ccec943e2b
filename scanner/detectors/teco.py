"""TeCo (Liu et al., CVPR 2023): corruption robustness consistency.

An input is classified under each of several image corruptions at severities 1..S. For each
corruption type its *flip severity* is the first severity whose label differs from the input's
own label (S + 1 when none does). The paper's observation: a clean image's prediction gives way
at similar severities whatever the corruption, while a trigger survives some corruptions and
breaks under others early, so a backdoored input's flip severities spread further apart. The
score is their standard deviation across corruption types (population, ddof = 0)::

    teco(x) = std_c( min{s in 1..S : f(corrupt_c(x, s)) != f(x)}, or S + 1 if none )

Higher is more suspicious. Only labels are used, so label-only models work. The corruptions are
CIFAR-10-C's (:mod:`scanner.detectors.corruptions`), deterministic per image: an input's score
does not depend on the batch it is scored in.

Cost: 1 + (number of corruptions) x S model queries per input: 61 with the default 12
corruptions at 5 severities.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..model.preprocess import Preprocessor
from .base import MAX_PREVIEWS, Detector, DetectorScores, Preview
from .corruptions import CORRUPTIONS, SEVERITIES, apply_corruption, prepare, to_planar

#: flag threshold without a calibration: a data-free value, NOT calibrated on any model (the
#: flip severities of 12 corruptions at 5 severities spread at most 2.5; a clean, uniformly
#: robust or uniformly fragile input scores near 0). A calibration on clean inputs should set it.
DEFAULT_THRESHOLD = 1.0
# Images per block of build_queries: about 256 KB of float32 pixels, so that the arrays a
# corruption works on stay in the core's cache.
_BLOCK_ELEMENTS = 1 << 16


def flip_severities(labels: np.ndarray, corrupted_labels: np.ndarray) -> np.ndarray:
    """The first severity whose label differs from the input's own label, per corruption.

    Parameters
    ----------
    labels : ndarray of shape (n_inputs,)
        Label of each input itself.
    corrupted_labels : ndarray of shape (n_inputs, n_corruptions, n_severities)
        Label of each corrupted copy, severities in increasing order.

    Returns
    -------
    ndarray of shape (n_inputs, n_corruptions), int64 in 1 .. n_severities + 1
        (n_severities + 1 where the label never changes).
    """
    labels = np.asarray(labels)
    corrupted_labels = np.asarray(corrupted_labels)
    if corrupted_labels.ndim != 3 or len(corrupted_labels) != len(labels):
        raise ValueError(f"expected corrupted_labels of shape ({len(labels)}, n_corruptions, n_severities), "
                         f"got {corrupted_labels.shape}")
    changed = corrupted_labels != labels[:, None, None]
    first = changed.argmax(axis=2) + 1
    return np.where(changed.any(axis=2), first, corrupted_labels.shape[2] + 1).astype(np.int64)


def teco_score(labels: np.ndarray, corrupted_labels: np.ndarray) -> np.ndarray:
    """TeCo's score: the standard deviation (ddof = 0) of :func:`flip_severities` across
    corruptions, float64 (n_inputs,); higher is more suspicious."""
    return flip_severities(labels, corrupted_labels).std(axis=1)


def _planar_view(seg: np.ndarray, pre: Preprocessor, shape: tuple) -> np.ndarray | None:
    """``seg`` (rows of the query buffer in the model's layout) as a (b, C, H, W) view in RGB
    order, so corruptions write straight into it; None for a layout this does not know."""
    b, c, h, w = shape
    layout = pre.spec.layout
    if layout == "nchw" and seg.shape[1:] == (c, h, w):
        view = seg
    elif layout == "nhwc" and seg.shape[1:] == (h, w, c):
        view = seg.transpose(0, 3, 1, 2)
    elif layout == "flat" and seg.shape[1:] == (h * w * c,):
        view = seg.reshape(b, h, w, c).transpose(0, 3, 1, 2)
    else:
        return None
    return view[:, ::-1] if pre.spec.bgr else view


def _write(x: np.ndarray, seg: np.ndarray, pre: Preprocessor, name: str | None = None, severity: int = 0,
           prep=None) -> None:
    """Planar images ``x`` (b, C, H, W), corrupted by ``name`` at ``severity`` unless name is
    None, into ``seg`` (b rows of the query buffer in the model's layout), then normalized."""
    planar = _planar_view(seg, pre, x.shape)
    if planar is not None:  # the corruption writes straight into the buffer
        if name is None:
            np.copyto(planar, x)
        else:
            apply_corruption(x, name, severity, out=planar, prep=prep)
    else:
        result = x if name is None else apply_corruption(x, name, severity, prep=prep)
        np.copyto(seg, pre.to_layout(result.transpose(0, 2, 3, 1)))
    pre.normalize_(seg)


def _check_corruptions(corruptions: Any) -> tuple[str, ...]:
    if isinstance(corruptions, str):
        corruptions = [c.strip() for c in corruptions.split(",") if c.strip()]
    try:
        names = tuple(corruptions)
    except TypeError:
        raise ValueError(f"corruptions: expected a sequence of corruption names, got {corruptions!r}") from None
    unknown = [n for n in names if not isinstance(n, str) or n not in CORRUPTIONS]
    if unknown:
        raise ValueError(f"corruptions: unknown {', '.join(map(repr, unknown))}; available: {', '.join(CORRUPTIONS)}")
    if len(set(names)) != len(names):
        raise ValueError(f"corruptions: each may be named once, got {list(names)}")
    if len(names) < 2:
        raise ValueError(f"corruptions: TeCo compares flip severities across corruptions and needs at least 2, "
                         f"got {list(names)}")
    return names


class TeCo(Detector):
    """TeCo as a detector: one score, ``teco`` (higher = less consistent = more suspicious).

    Parameters
    ----------
    corruptions : sequence of str (or one comma-separated str), default=all 12 of CORRUPTIONS
        The corruption types, at least 2, each once (order sets the query order).
    severities : int, default=5
        S: severities 1..S of each corruption are queried (1 to 5).

    Notes
    -----
    Rows of the query buffer are query-major: rows 0 .. b-1 are the inputs themselves; query
    ``q = 1 + ci * S + (s - 1)`` (corruption ``ci`` at severity ``s``) is rows ``q * b`` to
    ``q * b + b - 1``. The per-query labels are not reported (:meth:`query_names` is empty):
    61 columns per input would swamp a report.

    The default threshold (:data:`DEFAULT_THRESHOLD`, 1.0) is data-free, not calibrated.

    On gray images (a one-channel model) ``saturate`` is the identity, so its flip severity is
    always S + 1; leave it out for such models if that constant entry is unwanted.

    Examples
    --------
    >>> det = TeCo(corruptions=("gaussian_noise", "contrast", "jpeg_compression"), severities=5)
    >>> det.queries_per_input
    16
    """

    name = "teco"
    score_names = ("teco",)
    query_labels_key = "corruption_labels"
    default_threshold = DEFAULT_THRESHOLD

    def __init__(self, corruptions: Sequence[str] | str = CORRUPTIONS, severities: int = SEVERITIES) -> None:
        self.corruptions = _check_corruptions(corruptions)
        if (isinstance(severities, bool) or not isinstance(severities, (int, np.integer))
                or not 1 <= severities <= SEVERITIES):
            raise ValueError(f"severities: expected an integer from 1 to {SEVERITIES}, got {severities!r}")
        self.severities = int(severities)

    @property
    def queries_per_input(self) -> int:
        return 1 + len(self.corruptions) * self.severities

    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        b, S = len(images), self.severities
        # blocks of images small enough that a corruption's working arrays stay in cache
        block = max(1, _BLOCK_ELEMENTS // max(1, int(np.prod(images.shape[1:]))))
        for lo in range(0, b, block):
            hi = min(b, lo + block)
            x = to_planar(images[lo:hi])
            _write(x, out[lo:hi], pre)  # query 0: the input itself
            for ci, name in enumerate(self.corruptions):
                prep = prepare(x, name)  # what the severities share
                for s in range(1, S + 1):
                    q = 1 + ci * S + (s - 1)
                    _write(x, out[q * b + lo:q * b + hi], pre, name, s, prep)

    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        own = labels[:b]
        corrupted = labels[b:self.queries_per_input * b].reshape(len(self.corruptions), self.severities, b)
        score = teco_score(own, corrupted.transpose(2, 0, 1))
        return DetectorScores(own, np.zeros((b, 0), np.int64), {"teco": score})

    def preview(self, image: np.ndarray) -> list[Preview]:
        """Each corruption of ``image`` at the highest severity queried (at most
        :data:`MAX_PREVIEWS`), written as :meth:`build_queries` writes it (planar, then the
        preprocessor's layout; here one that keeps unit-range RGB)."""
        x = to_planar(np.asarray(image)[None])
        out = []
        for name in self.corruptions[:MAX_PREVIEWS]:
            corrupted = apply_corruption(x, name, self.severities, prep=prepare(x, name))
            out.append(Preview(f"{name.replace('_', ' ')} {self.severities}", corrupted[0].transpose(1, 2, 0)))
        return out

    def settings(self) -> dict[str, Any]:
        return {"corruptions": list(self.corruptions), "severities": self.severities}

    def describe(self) -> str:
        return f"{len(self.corruptions)} corruptions x {self.severities} severities"
