"""Black-box detectors behind one interface (:class:`~scanner.detectors.base.Detector`).

A second detector is one new module here and one entry in :data:`DETECTORS`.
"""

from __future__ import annotations

from typing import Any

from ..errors import ScannerError
from .base import Detector, DetectorScores
from .scaleup import ScaleUp

DETECTORS: dict[str, type[Detector]] = {ScaleUp.name: ScaleUp}


def make_detector(name: str, **params: Any) -> Detector:
    """A detector by registry name, with its parameters."""
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise ScannerError(f"unknown detector {name!r}; available: {', '.join(DETECTORS)}") from None
    return cls(**params)


__all__ = ["Detector", "DetectorScores", "ScaleUp", "DETECTORS", "make_detector"]
