"""Exceptions the library raises on bad models, specs, inputs and calibrations.

The CLI catches only :class:`ScannerError` and prints its message as one line; anything else
is a bug in the scanner and keeps its traceback.
"""


class ScannerError(Exception):
    """Base class of every error the scanner reports to a user."""


class ModelLoadError(ScannerError):
    """The ONNX file cannot be read, run, or fed as an image classifier."""


class SpecError(ScannerError):
    """The preprocessing spec (flags, spec file or model metadata) is invalid or ambiguous."""


class InputError(ScannerError):
    """The paths given to scan do not name any usable input."""


class CalibrationError(ScannerError):
    """A calibration file is malformed or was made for another model or scale set."""
