"""Black-box detectors behind one interface (:class:`~scanner.detectors.base.Detector`).

A new detector is one module here and one entry in :data:`DETECTORS`. Several run together as a
:class:`~scanner.detectors.combined.Combined` (one model call per batch for all of them).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ..errors import ScannerError
from .base import Detector, DetectorScores
from .combined import Combined
from .scaleup import ScaleUp
from .strip import Strip
from .teco import TeCo

DETECTORS: dict[str, type[Detector]] = {ScaleUp.name: ScaleUp, Strip.name: Strip, TeCo.name: TeCo}


def make_detector(name: str, **params: Any) -> Detector:
    """A detector by registry name, with its parameters."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ScannerError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}") from None
    try:
        return cls(**params)
    except (TypeError, ValueError) as exc:
        raise ScannerError(f"detector {name}: {exc}") from None


def parse_names(names: str | Sequence[str]) -> tuple[str, ...]:
    """``"scaleup,strip"`` or a sequence -> unique known names, in the given order."""
    if not isinstance(names, str):
        try:
            items = list(names)
        except TypeError:
            raise ScannerError(f"detectors: expected a name or a sequence of names, got {type(names).__name__}") from None
        strange = [i for i in items if not isinstance(i, str)]
        if strange:
            raise ScannerError(f"detectors: expected detector names (str), got {strange[0]!r} "
                               f"({type(strange[0]).__name__}); available: {', '.join(DETECTORS)}")
    else:
        items = names.split(",")
    out: list[str] = []
    for item in (i.strip().lower() for i in items):
        if not item:
            continue
        if item not in DETECTORS:
            raise ScannerError(f"unknown detector {item!r}; available: {', '.join(DETECTORS)}")
        if item not in out:
            out.append(item)
    if not out:
        raise ScannerError("no detector named; available: " + ", ".join(DETECTORS))
    return tuple(out)


def build_detector(names: str | Sequence[str], params: dict[str, dict[str, Any]] | None = None) -> Detector:
    """One detector, or a :class:`Combined` of several, from names and per-name parameters."""
    params = params or {}
    parts = [make_detector(n, **params.get(n, {})) for n in parse_names(names)]
    return parts[0] if len(parts) == 1 else Combined(parts)


def parts_of(detector: Detector) -> list[Detector]:
    return list(detector.parts) if isinstance(detector, Combined) else [detector]


def from_settings(settings: Sequence[dict[str, Any]], clean_images: np.ndarray | None,
                  names: Sequence[str] | None = None) -> Detector:
    """Rebuild the detectors a calibration recorded (``names``: a subset of them, in the
    calibration's order); STRIP gets the calibration's clean images back."""
    recorded = [d["name"] for d in settings]
    wanted = recorded if names is None else list(parse_names(names))
    missing = [n for n in wanted if n not in recorded]
    if missing:
        raise ScannerError(f"the calibration was made with {', '.join(recorded)}, not {', '.join(missing)}; "
                           f"scan with a subset of those (--detector) or recalibrate with --detector "
                           f"{','.join(dict.fromkeys(recorded + missing))}")
    parts = []
    for entry in settings:
        if entry["name"] not in wanted:
            continue
        params = {k: v for k, v in entry.items() if k != "name"}
        if entry["name"] == Strip.name:
            if clean_images is None:
                raise ScannerError("the calibration records STRIP but holds no clean images")
            # every recorded setting checked as a new detector's would be (n_blends, mode, seed, no others)
            recorded_strip = make_detector(Strip.name, **{"n_blends": len(clean_images), **params})
            if recorded_strip.n_blends != len(clean_images):
                raise ScannerError(f"detector strip: n_blends is {recorded_strip.n_blends} but the calibration holds "
                                   f"{len(clean_images)} clean images to blend with")
            try:
                parts.append(Strip.from_images(clean_images, mode=recorded_strip.mode, seed=recorded_strip.seed))
            except (TypeError, ValueError) as exc:
                raise ScannerError(f"detector strip: {exc}") from None
        else:
            parts.append(make_detector(entry["name"], **params))
    return parts[0] if len(parts) == 1 else Combined(parts)


__all__ = ["Detector", "DetectorScores", "ScaleUp", "Strip", "TeCo", "Combined", "DETECTORS", "make_detector",
           "build_detector", "parse_names", "parts_of", "from_settings"]
