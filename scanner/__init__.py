"""SCALE-UP backdoor-input detection for any ONNX image classifier (black-box, labels only).

Public API: :class:`Scanner` (score arrays or scan paths), :class:`ScanResult`, :class:`Scores`,
:class:`Calibration` / :func:`fit_calibration` (the data-limited variant), :class:`Spec`
(preprocessing) and the :class:`ScannerError` family. Importing this package never imports torch.
"""

__version__ = "0.1.0"

from .calibration import Calibration, fit_calibration  # noqa: E402
from .core import Scanner, ScanResult, Scores  # noqa: E402
from .errors import CalibrationError, InputError, ModelLoadError, ScannerError, SpecError  # noqa: E402
from .scaleup import DEFAULT_SCALES, parse_scales, spc_score  # noqa: E402
from .spec import Spec  # noqa: E402

__all__ = [
    "Scanner", "ScanResult", "Scores", "Calibration", "fit_calibration", "Spec",
    "ScannerError", "ModelLoadError", "SpecError", "InputError", "CalibrationError",
    "DEFAULT_SCALES", "parse_scales", "spc_score",
]
