"""Parity check: does the ONNX file, fed the way its spec says, reproduce the PyTorch model?

Both sides start from the same unit-range images ``x`` (random uniform in [0, 1]) and from
their SCALE-UP amplifications ``clip(n * x, 0, 1)``. The ONNX side gets them through the
scanner's own :class:`scanner.model.preprocess.Preprocessor` compiled from the spec (what a scan will
do); the PyTorch side gets them through the reference function of the original model. So the
check also covers the layout wrapper, the embedded normalization and the spec written into the
file.

No torch here: the reference is any callable from images to logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from scanner.model.preprocess import Preprocessor
from scanner.model.spec import Spec

from .errors import ParityError

DEFAULT_BATCH_SIZES = (1, 7, 64)
DEFAULT_SCALES = (3, 5, 7, 9, 11)


@dataclass(frozen=True)
class ParityResult:
    """One comparison of ONNX Runtime against PyTorch.

    Attributes
    ----------
    input_kind : str
        ``"clean"`` for the random images themselves, ``"x3"``, ``"x5"``, ... for
        ``clip(n * x, 0, 1)``.
    batch_size : int
    max_abs_diff : float
        Largest absolute difference between the two sides' logits (lower is better).
    argmax_agreement : float
        Fraction of the batch whose predicted class is the same on both sides.
    argmax_mismatches : int
        Predictions that differ although PyTorch's top two logits are further apart than the
        tolerance (a disagreement that is not a tie).
    """

    input_kind: str
    batch_size: int
    max_abs_diff: float
    argmax_agreement: float
    argmax_mismatches: int

    def to_dict(self) -> dict:
        return {
            "input": self.input_kind,
            "batch_size": self.batch_size,
            "max_abs_diff": self.max_abs_diff,
            "argmax_agreement": self.argmax_agreement,
            "argmax_mismatches": self.argmax_mismatches,
        }


def compare(
    run_onnx: Callable[[np.ndarray], np.ndarray],
    reference: Callable[[np.ndarray], np.ndarray],
    spec: Spec,
    *,
    input_shape: tuple[int, int, int],
    tolerance: float,
    batch_sizes: Sequence[int] = DEFAULT_BATCH_SIZES,
    scales: Sequence[int] = DEFAULT_SCALES,
    seed: int = 0,
) -> tuple[ParityResult, ...]:
    """Compare ``run_onnx`` with ``reference`` on clean and amplified random images.

    Parameters
    ----------
    run_onnx : callable
        Takes a model-ready batch (``spec``'s channel order, layout and normalization) and returns
        logits of shape (N, K).
    reference : callable
        Takes unit-range RGB images of shape (N, H, W, C) and returns PyTorch's logits (N, K)
        (applying the model's own channel order and normalization).
    spec : Spec
        How the ONNX side is fed.
    input_shape : (C, H, W)
    tolerance : float
        Largest allowed absolute logit difference; also the width of a tie between classes.

    Returns
    -------
    tuple of ParityResult, one per (batch size, input kind).

    Raises
    ------
    ParityError
        When ONNX Runtime fails, the shapes differ, a difference exceeds ``tolerance`` or an
        argmax differs beyond a tie.
    """
    channels, height, width = input_shape
    pre = Preprocessor(spec)
    rng = np.random.default_rng(seed)
    results: list[ParityResult] = []
    for batch_size in batch_sizes:
        images = rng.random((batch_size, height, width, channels), dtype=np.float32)
        for scale in (None, *scales):
            kind = "clean" if scale is None else f"x{scale}"
            scaled = images if scale is None else np.clip(images * np.float32(scale), 0.0, 1.0)
            feed = pre(scaled)
            try:
                got = np.asarray(run_onnx(feed))
            except Exception as exc:  # ONNX Runtime raises its own exception types
                raise ParityError(
                    f"ONNX Runtime failed on a batch of {batch_size} {kind} inputs "
                    f"(does the graph hard-code its batch size?): {' '.join(str(exc).split())[:300]}",
                    tuple(results),
                ) from None
            expected = np.asarray(reference(scaled))
            if got.shape != expected.shape:
                raise ParityError(
                    f"ONNX output has shape {got.shape} on a batch of {batch_size}, "
                    f"PyTorch gives {expected.shape}",
                    tuple(results),
                )
            result = _measure(got, expected, kind, batch_size, tolerance)
            results.append(result)
            if not (result.max_abs_diff <= tolerance) or result.argmax_mismatches:
                raise ParityError(_failure_message(result, tolerance), tuple(results))
    return tuple(results)


def _measure(got: np.ndarray, expected: np.ndarray, kind: str, batch_size: int, tolerance: float) -> ParityResult:
    got = got.astype(np.float64)
    expected = expected.astype(np.float64)
    diff = float(np.max(np.abs(got - expected))) if got.size else 0.0
    if np.isnan(got).any() != np.isnan(expected).any():
        diff = float("inf")
    got_label = got.argmax(axis=1)
    ref_label = expected.argmax(axis=1)
    differ = np.flatnonzero(got_label != ref_label)
    rows = np.arange(expected.shape[0])
    # a disagreement is a tie when PyTorch itself barely separates the two classes
    gap = expected[rows[differ], ref_label[differ]] - expected[rows[differ], got_label[differ]]
    mismatches = int(np.count_nonzero(gap > tolerance))
    agreement = 1.0 - differ.size / max(1, expected.shape[0])
    return ParityResult(kind, batch_size, diff, agreement, mismatches)


def _failure_message(result: ParityResult, tolerance: float) -> str:
    where = f"{result.input_kind} inputs at batch size {result.batch_size}"
    parts = []
    if not (result.max_abs_diff <= tolerance):
        parts.append(f"logits differ by up to {result.max_abs_diff:.3g} (tolerance {tolerance:g})")
    if result.argmax_mismatches:
        parts.append(
            f"predicted class differs on {result.argmax_mismatches} of {result.batch_size} inputs"
        )
    return f"parity check failed, ONNX Runtime vs PyTorch on {where}: " + "; ".join(parts)


def summarize(results: Sequence[ParityResult], *, tolerance: float, batch_sizes, scales) -> dict:
    """The JSON-ready parity record stored in the ``scanner.export`` metadata."""
    return {
        "tolerance": tolerance,
        "batch_sizes": list(batch_sizes),
        "scales": list(scales),
        "max_abs_diff": max((r.max_abs_diff for r in results), default=None),
        "argmax_agreement": min((r.argmax_agreement for r in results), default=None),
        "argmax_mismatches": sum(r.argmax_mismatches for r in results),
        "results": [r.to_dict() for r in results],
    }
