"""PyTorch -> ONNX export for the scanner: dynamic batch, spec in metadata, parity-checked.

``export(model, "model.onnx", input_shape=(3, 32, 32), mean=..., std=...)`` writes one
self-contained ONNX file whose ``metadata_props`` carry the scanner's preprocessing spec
(``scanner.spec``), so ``scanner scan model.onnx images/`` needs no flags. After writing, ONNX
Runtime is compared with PyTorch on random and SCALE-UP-amplified inputs.

Importing this package does not import torch; the functions import it when called.
"""

from .errors import ExportError, ExportWarning, ParityError
from .export import EXPORT_KEY, PRODUCER_KEY, ExportReport, export
from .loaders import load_factory, load_pickle, load_torchscript, load_weights
from .parity import ParityResult

__all__ = [
    "export",
    "ExportReport",
    "ParityResult",
    "ExportError",
    "ParityError",
    "ExportWarning",
    "load_torchscript",
    "load_factory",
    "load_weights",
    "load_pickle",
    "EXPORT_KEY",
    "PRODUCER_KEY",
]
