"""The detector interface: what a black-box detector tells the scanner and nothing more.

A detector says how many model queries one input costs, builds those queries for a batch of
unit-range images into the scanner's reused buffer, and turns the model's outputs back into
named per-input scores (higher is more suspicious). The scanner core runs the model and keeps
the books; it knows nothing else about any detector.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import numpy as np

from ..model.preprocess import Preprocessor
from ..model.spec import Spec

#: queries a detector previews for one input, at most (the HTML report's gallery draws them)
MAX_PREVIEWS = 12


class Preview(NamedTuple):
    """One query of a detector for one input, as the model saw it before normalization.

    ``image`` is (H, W, C) float32 in [0, 1]; ``query`` names the column of
    :meth:`Detector.query_names` whose reported label belongs to it (None: not reported)."""

    caption: str
    image: np.ndarray
    query: str | None = None


def unit_queries(detector: "Detector", image: np.ndarray) -> np.ndarray:
    """Every query of ``detector`` for one image (H, W, C), uint8 or unit-range, as its
    :meth:`~Detector.build_queries` writes them before normalization: (queries, H, W, C) float32
    (the preprocessor that leaves unit-range RGB images as they are: NHWC, no mean/std)."""
    image = np.asarray(image)
    h, w, c = image.shape
    out = np.empty((detector.queries_per_input, h, w, c), np.float32)
    detector.build_queries(image[None], out, Preprocessor(Spec(layout="nhwc", height=h, width=w, channels=c)))
    return out


@dataclass
class DetectorScores:
    """A detector's outcome for one batch of ``b`` inputs.

    Attributes
    ----------
    labels : (b,) int64, the prediction of the input itself.
    query_labels : (b, n_reported) int64, the prediction of each reported query (for SCALE-UP
        the label at each scale), in the order of :meth:`Detector.query_names`.
    scores : dict of str to (b,) float64 or None
        Every raw score the detector computes (None where the model cannot give it, for
        example probabilities of a label-only model).
    invalid : (b,) bool or None
        Inputs the scanner found the model's outputs NaN or infinite for (any of their queries);
        they are listed as failed, not scored.
    """

    labels: np.ndarray
    query_labels: np.ndarray
    scores: dict[str, np.ndarray | None]
    #: (b,) bool: inputs whose model outputs were not finite (set by the scanner, not the detector)
    invalid: np.ndarray | None = None
    #: detector name -> (b,) bool: the inputs that detector cannot judge (its queries barely
    #: differ from the input), for each detector that can say so; set by the scanner from
    #: :meth:`Detector.undecidable` of each detector that ran (a combination's parts one by one)
    undecidable_by: dict[str, np.ndarray] = field(default_factory=dict)
    #: detector name -> why, one line (the same for every input that detector cannot judge)
    undecidable_why: dict[str, str] = field(default_factory=dict)
    #: (b, F) float64: each input's response profile (:mod:`scanner.detectors.profile`), set by
    #: the scanner when a calibration is being made
    features: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> "DetectorScores":
        """The rows ``keep`` (a boolean mask or indices) of every array."""
        return DetectorScores(self.labels[keep], self.query_labels[keep],
                              {k: None if v is None else v[keep] for k, v in self.scores.items()},
                              undecidable_by={k: v[keep] for k, v in self.undecidable_by.items()},
                              undecidable_why=dict(self.undecidable_why),
                              features=None if self.features is None else self.features[keep])


class Detector(ABC):
    """Base class of the detectors behind ``Scanner(detector=...)``.

    Subclasses set the class attributes and write the three abstract members. Rows of the
    query buffer are query-major: query ``i`` of input ``k`` is row ``i * b + k``, and query 0
    is the input itself (every detector needs the unscaled prediction).
    """

    #: registry name
    name: ClassVar[str]
    #: every per-input score reported, in report order (calibrated ones included)
    score_names: ClassVar[tuple[str, ...]]
    #: calibrated score -> the raw score a calibration normalizes into it
    calibrated: ClassVar[dict[str, str]] = {}
    #: scores that need class probabilities (None for a label-only model)
    probability_scores: ClassVar[frozenset[str]] = frozenset()
    #: the report's key for :attr:`DetectorScores.query_labels`
    query_labels_key: ClassVar[str] = "query_labels"
    #: flag threshold on the first raw score when nothing else is given
    default_threshold: ClassVar[float] = 0.5
    #: clean images the detector holds (from :meth:`fit`), for detectors that need extra inputs
    clean_images_needed: ClassVar[int] = 0

    @property
    @abstractmethod
    def queries_per_input(self) -> int:
        """Model queries one input costs, the input itself included."""

    @abstractmethod
    def build_queries(self, images: np.ndarray, out: np.ndarray, pre: Preprocessor) -> None:
        """Write the queries of ``images`` (b, H, W, C), unit-range float32 or uint8 pixels, into
        ``out`` (``queries_per_input * b`` rows in the model's layout), preprocessed by ``pre``."""

    @abstractmethod
    def score(self, labels: np.ndarray, probs: np.ndarray | None, b: int) -> DetectorScores:
        """Per-input scores from the labels (and probabilities, if the model gives scores) of
        every query row, in buffer order."""

    def query_names(self) -> list[str]:
        """Column names of :attr:`DetectorScores.query_labels`."""
        return []

    def settings(self) -> dict[str, Any]:
        """What reports record about this detector's parameters."""
        return {}

    def describe(self) -> str:
        """One line for the report's summary."""
        return self.name

    def fit(self, clean_images: np.ndarray) -> None:
        """Keep clean images the queries need (STRIP blends with them); default: nothing."""

    def undecidable(self, images: np.ndarray) -> tuple[np.ndarray, str] | None:
        """Inputs of the batch (b, H, W, C) this detector cannot judge, and why (one line).

        A detector whose queries are (nearly) the input itself learns nothing from them: it
        would call such an input consistent, not suspicious. Default: every input is decidable.
        """
        return None

    def preview(self, image: np.ndarray) -> list[Preview]:
        """A few of this detector's queries of one input ``image`` (H, W, C), uint8 or unit-range,
        as the model saw them before normalization, built by the code that builds the queries
        (at most :data:`MAX_PREVIEWS`; the input itself, query 0, left out). Default: none."""
        return []
