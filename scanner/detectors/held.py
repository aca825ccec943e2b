"""Clean images a detector holds (STRIP blends with them, the transplant detector pastes onto
them): checked once when given, and checked against each batch's size before queries are built."""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import ScannerError
from ..inputs.decode import BYTE_MAX


def unit_images(images: Any, name: str) -> np.ndarray:
    """(n, H, W, C) uint8 or unit-range float images -> a new float32 array (ValueError if not)."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.dtype.kind not in "uf" or arr.shape[0] == 0:
        raise ValueError(f"{name}: expected a non-empty array of images shaped (n, H, W, C), uint8 or float "
                         f"in [0, 1], got {arr.shape} {arr.dtype}")
    if arr.dtype == np.uint8:
        return arr.astype(np.float32) / BYTE_MAX
    if arr.dtype.kind == "u":
        raise ValueError(f"{name}: integer pixels must be uint8, got {arr.dtype}")
    out = np.array(arr, dtype=np.float32)
    if not np.isfinite(out).all() or out.min() < 0 or out.max() > 1:
        raise ValueError(f"{name}: float pixels must be finite and in [0, 1]")
    return out


def held_for(held: np.ndarray | None, images: np.ndarray, who: str, not_fitted: str) -> np.ndarray:
    """The held images, if there are some and they are the batch's size (ScannerError if not)."""
    if held is None:
        raise ScannerError(not_fitted)
    if tuple(images.shape[1:]) != held.shape[1:]:
        h, w, c = held.shape[1:]
        raise ScannerError(f"{who} holds clean images of {h}x{w}x{c} but the inputs are "
                           f"{'x'.join(map(str, images.shape[1:]))}; calibrate it for this model's input size")
    return held


def take(clean_images: Any, n: int, seed: int, who: str, *, pool_order: bool = False) -> np.ndarray:
    """``n`` of ``clean_images`` ((k, H, W, C), uint8 or unit-range float) as read-only float32:
    all of them in their order when exactly ``n`` are given (what a calibration stores and gives
    back), else a seeded choice without replacement, in the order drawn or, with ``pool_order``,
    in the pool's order (the transplant detector's, whose calibrations depend on it). ``who``
    names the detector in the error."""
    imgs = np.asarray(clean_images)
    if imgs.ndim != 4:
        unit_images(imgs, "clean_images")  # raises, naming the shape expected
    if len(imgs) < n:
        raise ValueError(f"clean_images: {who} needs at least {n} clean images, got {len(imgs)}")
    if len(imgs) > n:
        chosen = np.random.default_rng(seed).choice(len(imgs), n, replace=False)
        imgs = imgs[np.sort(chosen) if pool_order else chosen]
    held = np.ascontiguousarray(unit_images(imgs, "clean_images"), dtype=np.float32)
    held.flags.writeable = False
    return held
