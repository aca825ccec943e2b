"""What a calibration can and cannot do, in words: what ``scanner calibrate`` prints and what a
scan's summary warns about (classes a score can never flag). The wording lives with the
calibration run (:meth:`scanner.calibrating.CalibrationRun.lines`, also its ``str()``)."""

from __future__ import annotations

from ..calibrating import calibration_lines

__all__ = ["calibration_lines"]
