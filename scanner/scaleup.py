"""SCALE-UP scoring: amplified copies and scaled prediction consistency. Pure numpy, no I/O.

For an image x in [0, 1] and a scale set S, the amplified copies are ``clip(n * x, 0, 1)`` for
n in S, and ``SPC(x) = |{n in S : argmax f(clip(n x)) == argmax f(x)}| / |S|``.
Higher SPC means more suspicious (a trigger keeps dominating the prediction under scaling).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

DEFAULT_SCALES: tuple[float, ...] = (3, 5, 7, 9, 11)
DEFAULT_THRESHOLD = 0.5
# 8-bit pixels become unit-range values as float32(p) * UNIT wherever the conversion happens
# (the loader, array inputs, the model buffer), so every path gives the same bits.
UNIT = np.float32(1 / 255)


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
                values.update(float(v) for v in range(lo_i, hi_i + 1))
            else:
                values.add(float(item))
        except ValueError:
            raise ValueError(f"cannot read scale {item!r}: use numbers and integer ranges, e.g. 3,5,7,9,11 or 1-11") from None
    if not values:
        raise ValueError("the scale set is empty")
    if any(v <= 0 for v in values):
        raise ValueError(f"scales must be positive, got {sorted(values)}")
    return tuple(int(v) if float(v).is_integer() else v for v in sorted(values))


def format_scales(scales) -> str:
    return ",".join(str(s) for s in scales)


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
        are converted as ``float32(p) * float32(1 / 255)`` while copied, the loader's own rule.
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
            np.multiply(base[lo:hi], UNIT, out=src, casting="unsafe")
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
