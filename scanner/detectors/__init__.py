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
from .transplant import Transplant

DETECTORS: dict[str, type[Detector]] = {ScaleUp.name: ScaleUp, Strip.name: Strip, TeCo.name: TeCo,
                                        Transplant.name: Transplant}


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
    calibration's order); STRIP and the transplant detector get the calibration's clean images
    back (each takes the same ones it took when the calibration was made, see :meth:`Strip.fit`)."""
    recorded = [d["name"] for d in settings]
    wanted = recorded if names is None else list(parse_names(names))
    missing = [n for n in wanted if n not in recorded]
    if missing:
        raise ScannerError(f"the calibration was made with {', '.join(recorded)}, not {', '.join(missing)}; "
                           f"scan with a subset of those (--detector) or recalibrate with --detector "
                           f"{','.join(dict.fromkeys(recorded + missing))}")
    # every recorded setting checked as a new detector's would be
    recorded_parts = [make_detector(e["name"], **{k: v for k, v in e.items() if k != "name"}) for e in settings]
    parts = [p for p, e in zip(recorded_parts, settings) if e["name"] in wanted]
    holders = [p for p in recorded_parts if p.clean_images_needed]
    if holders:
        # the calibration stores the images its detectors were fit on: as many as the neediest took
        if clean_images is None:
            raise ScannerError(f"the calibration records {holders[0].name} but holds no clean images")
        neediest = max(holders, key=lambda p: p.clean_images_needed)
        if neediest.clean_images_needed != len(clean_images):
            what = {"strip": "n_blends", "transplant": "n_backgrounds"}.get(neediest.name, "clean images needed")
            raise ScannerError(f"detector {neediest.name}: {what} is {neediest.clean_images_needed} but the calibration "
                               f"holds {len(clean_images)} clean images")
    for part in parts:
        if part.clean_images_needed:
            try:  # exactly as many as it needs: those, in order; more: the seeded choice it made then
                part.fit(clean_images)
            except (TypeError, ValueError) as exc:
                raise ScannerError(f"detector {part.name}: {exc}") from None
    return parts[0] if len(parts) == 1 else Combined(parts)


__all__ = ["Detector", "DetectorScores", "ScaleUp", "Strip", "TeCo", "Transplant", "Combined", "DETECTORS", "make_detector",
           "build_detector", "parse_names", "parts_of", "from_settings"]
