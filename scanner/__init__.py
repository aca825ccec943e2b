"""SCALE-UP backdoor-input detection for any ONNX image classifier (black-box, labels only).

Public API: :class:`Scanner` (score arrays or scan paths), :class:`ScanResult`, :class:`Scores`,
:func:`summarize` / :func:`check_gate` (typed decisions), :func:`calibrate` (a
:class:`CalibrationRun`: the :class:`Calibration` and the clean scan), :func:`fit_calibration` (the
paper's data-limited variant), :func:`load_model` (the model boundary),
:class:`Spec` and :class:`Preprocessor` (preprocessing), the detectors (:class:`ScaleUp`) and the
:class:`ScannerError` family; :func:`audit` / :class:`AuditResult` (is the model backdoored,
from clean images alone). Importing this package never imports torch.
"""

from ._version import __version__
from .audit import AuditResult, audit
from .decide.calibration import Calibration, fit_calibration
from .core import Scanner
from .calibrating import CalibrationRun, calibrate
from .results import ScanResult, ScanSettings, Scores, Tally
from .decide.verdict import Gate, Summary, Verdict, check_gate, summarize
from .detectors import DETECTORS, Detector, ScaleUp, make_detector
from .detectors.scaleup import DEFAULT_SCALES, parse_scales, spc_score
from .errors import CalibrationError, InputError, ModelLoadError, ScannerError, SpecError
from .model.loader import Model, load_model
from .model.preprocess import Preprocessor
from .model.runtime import create_session
from .model.spec import Spec

__all__ = [
    "__version__",
    "Scanner", "ScanResult", "ScanSettings", "Scores", "Tally",
    "audit", "AuditResult",
    "summarize", "check_gate", "Summary", "Verdict", "Gate",
    "Calibration", "fit_calibration", "calibrate", "CalibrationRun",
    "load_model", "Model", "create_session",
    "Spec", "Preprocessor",
    "Detector", "ScaleUp", "DETECTORS", "make_detector",
    "ScannerError", "ModelLoadError", "SpecError", "InputError", "CalibrationError",
    "DEFAULT_SCALES", "parse_scales", "spc_score",
]
