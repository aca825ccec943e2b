"""Checks for values that come from flags, spec files, metadata, calibration files or callers.

Each check returns the value normalized or raises one :class:`~scanner.errors.ScannerError`
(or the subclass given) whose message names the value's source: NaN, infinities, wrong types
and out-of-range values never reach the scoring or the decisions.
"""

from __future__ import annotations

import math
from typing import Any

from .errors import ScannerError

# Bounds on sizes a user can ask for: beyond them a scan would not finish or not fit in memory.
MAX_SIDE = 8192            # pixels per image side
MAX_PIXELS = 1 << 24       # pixels per image (4096 x 4096)
MAX_SCALES = 64            # scales in one scale set
MAX_SCALE = 1000.0         # largest amplification factor


def check_number(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, integer: bool = False, error=ScannerError):
    """A finite number (an int if ``integer``) within ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        kind = "an integer" if integer else "a finite number"
        raise error(f"{name}: expected {kind}, got {value!r}")
    if integer and value != int(value):
        raise error(f"{name}: expected an integer, got {value!r}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise error(f"{name}: expected a value {'above' if lo_open else 'of at least'} {lo:g}, got {value!r}")
    if hi is not None and value > hi:
        raise error(f"{name}: expected a value of at most {hi:g}, got {value!r}")
    return int(value) if integer else float(value)


def check_rate(value: Any, name: str, error=ScannerError) -> float:
    """A probability: finite, in [0, 1]."""
    return check_number(value, name, lo=0.0, hi=1.0, error=error)


def check_scales(scales, name: str = "scales", error=ScannerError) -> tuple:
    """A non-empty scale set of positive, finite, bounded factors."""
    try:
        values = tuple(scales)
    except TypeError:
        raise error(f"{name}: expected a sequence of numbers, got {scales!r}") from None
    if not values:
        raise error(f"{name}: the scale set is empty")
    if len(values) > MAX_SCALES:
        raise error(f"{name}: {len(values)} scales; at most {MAX_SCALES} are allowed")
    for v in values:
        check_number(v, name, lo=0.0, lo_open=True, hi=MAX_SCALE, error=error)
    return values


def check_size(height: int, width: int, name: str, error=ScannerError) -> None:
    """An image size the scanner can hold: each side at most MAX_SIDE, at most MAX_PIXELS pixels."""
    for side in (height, width):
        check_number(side, name, lo=1, hi=MAX_SIDE, integer=True, error=error)
    if height * width > MAX_PIXELS:
        raise error(f"{name}: {height}x{width} is {height * width} pixels; at most {MAX_PIXELS} are allowed")
