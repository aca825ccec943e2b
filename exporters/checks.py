"""Checks of :func:`exporters.export`'s arguments: one-line :class:`ExportError` naming the argument."""

from __future__ import annotations

from typing import Any, Sequence

from .errors import ExportError


def check_input_shape(input_shape) -> tuple[int, int, int]:
    try:
        shape = tuple(int(v) for v in input_shape)
        ok = len(shape) == 3 and all(int(a) == a for a in input_shape)
    except (TypeError, ValueError):
        ok = False
    if not ok or min(shape) < 1:
        raise ExportError(f"input_shape must be (channels, height, width) of positive integers, got {input_shape!r}")
    if shape[0] not in (1, 3):
        raise ExportError(f"input_shape must have 1 or 3 channels first (C, H, W), got {shape!r}")
    return shape


def check_choice(name: str, value: Any, allowed: Sequence[str]) -> str:
    text = str(value).lower()
    if text not in allowed:
        raise ExportError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return text


def check_stats(name: str, values, channels: int) -> tuple[float, ...] | None:
    if values is None:
        return None
    if isinstance(values, (int, float)):
        values = [values]
    try:
        out = tuple(float(v) for v in values)
    except (TypeError, ValueError):
        raise ExportError(f"{name} must be numbers, got {values!r}") from None
    if len(out) not in (1, channels):
        raise ExportError(f"{name} has {len(out)} values; expected 1 or {channels} (one per channel)")
    if name == "std" and any(not (v > 0) for v in out):
        raise ExportError(f"std must be positive, got {list(out)}")
    return out
