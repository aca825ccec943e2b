"""The response-profile decision: how far an input's whole response profile
(:mod:`scanner.detectors.profile`) lies from the clean inputs of its predicted class.

Fit on trusted clean inputs: the features are standardized (mean and standard deviation over
all fit inputs), each predicted class gets its mean ``m_y``, and all classes share one shrinkage
covariance (Ledoit-Wolf) of the inputs' deviations from their class means. An input predicted
as ``y`` scores the squared Mahalanobis distance of its standardized profile from class ``y``:

    profile = (z - m_y)^T P (z - m_y)

One shared covariance rather than one per class: with 100 calibration images per class, a class
fits its model on about 50, fewer than the 116 features, and on clean calibration images held
out of the fit the shared covariance describes the data far better (mean held-out Gaussian
log-likelihood -62 against -118 per image on the clean zoo model; ``python -m bench.profile_model``).
Classes with fewer than ``min_class_samples`` fit inputs are scored against the mean and
covariance of all fit inputs (the pooled fallback). The score is calibrated like every raw score (:mod:`.reference`): a per-class
conformal p-value against clean inputs that the density model never saw. ``scanner calibrate``
therefore splits its clean inputs: within each predicted class, alternate inputs fit the model
(:func:`split`) and the others are its reference (a split-conformal guarantee: flagging
``p <= a`` has a false-positive rate of at most ``a`` per class).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .._validation import MAX_LABEL
from ..errors import CalibrationError

SCORE = "profile"
_SD_FLOOR = 1e-6  # a feature constant over the fit inputs is left unscaled, not divided by 0


def split(labels: np.ndarray) -> np.ndarray:
    """Which calibration inputs fit the density model (True) and which are its reference (False):
    within each predicted class, the 1st, 3rd, 5th... input in calibration order fits."""
    labels = np.asarray(labels, dtype=np.int64)
    fit = np.zeros(len(labels), dtype=bool)
    for k in np.unique(labels):
        rows = np.flatnonzero(labels == k)
        fit[rows[::2]] = True
    return fit


@dataclass
class _Gaussian:
    mean: np.ndarray
    precision: np.ndarray


@dataclass
class ProfileModel:
    """Per-class means and one shared shrinkage covariance over standardized response profiles
    (see the module doc).

    ``features`` and ``labels`` are the fit inputs (kept so that a calibration file stores data,
    not a fitted model, and every load fits the same model)."""

    features: np.ndarray
    labels: np.ndarray
    min_class_samples: int = 10
    _center: np.ndarray = field(init=False, repr=False)
    _scale: np.ndarray = field(init=False, repr=False)
    _per_class: dict[int, _Gaussian] = field(init=False, repr=False)
    _pooled: _Gaussian = field(init=False, repr=False)

    def __post_init__(self) -> None:
        from sklearn.covariance import LedoitWolf

        x = np.asarray(self.features, dtype=np.float64)
        labels = np.asarray(self.labels, dtype=np.int64)
        if x.ndim != 2 or len(x) != len(labels) or len(x) < 2 or x.shape[1] < 1:
            raise CalibrationError(f"a response-profile model needs (n >= 2, F >= 1) features and n labels, "
                                   f"got {x.shape} and {labels.shape}")
        if not np.isfinite(x).all():
            raise CalibrationError("response-profile features must be finite")
        self.features, self.labels = x, labels
        self._center = x.mean(axis=0)
        self._scale = np.maximum(x.std(axis=0), _SD_FLOOR)
        z = (x - self._center) / self._scale

        def gaussian(rows: np.ndarray) -> _Gaussian:
            lw = LedoitWolf().fit(rows)
            return _Gaussian(lw.location_, lw.precision_)

        self._pooled = gaussian(z)
        own = [int(k) for k in np.unique(labels) if (labels == k).sum() >= max(self.min_class_samples, 2)]
        means = {k: z[labels == k].mean(axis=0) for k in own}
        self._per_class = {}
        if own:
            deviations = np.concatenate([z[labels == k] - means[k] for k in own])
            shared = LedoitWolf(assume_centered=True).fit(deviations).precision_
            self._per_class = {k: _Gaussian(means[k], shared) for k in own}

    @property
    def n_features(self) -> int:
        return self.features.shape[1]

    def pooled_classes(self, labels) -> list[int]:
        """The classes among ``labels`` scored against the pooled model (too few fit inputs)."""
        return sorted({int(k) for k in np.unique(labels)} - set(self._per_class))

    def distance(self, features: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distance of each input's standardized profile from its predicted
        class (higher is more suspicious)."""
        x = np.asarray(features, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != self.n_features or len(x) != len(labels):
            raise ValueError(f"expected ({len(labels)}, {self.n_features}) features, got {x.shape}")
        z = (x - self._center) / self._scale
        out = np.empty(len(x), dtype=np.float64)
        for k in np.unique(labels):
            rows = labels == k
            g = self._per_class.get(int(k), self._pooled)
            d = z[rows] - g.mean
            out[rows] = np.einsum("ij,jk,ik->i", d, g.precision, d)
        return out

    # -- file format ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        x = np.ascontiguousarray(self.features, dtype="<f8")
        return {"score": SCORE, "min_class_samples": int(self.min_class_samples),
                "labels": self.labels.tolist(), "shape": list(x.shape), "dtype": "float64",
                "base64": base64.b64encode(x.tobytes()).decode("ascii")}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> "ProfileModel":
        """Every field checked: a hand-edited calibration cannot blind the gate."""
        try:
            if not isinstance(data, dict) or data.get("score") != SCORE or data.get("dtype") != "float64":
                raise ValueError
            shape = tuple(data["shape"])
            m = data["min_class_samples"]
            labels = data["labels"]
            if (len(shape) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in shape)
                    or not isinstance(m, int) or isinstance(m, bool) or m < 1
                    or not isinstance(labels, list) or len(labels) != shape[0]
                    or not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_LABEL for v in labels)):
                raise ValueError
            buf = base64.b64decode(data["base64"], validate=True)
            if len(buf) != 8 * shape[0] * shape[1]:
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(f"{where} must be a response-profile model (score, min_class_samples, "
                                   "labels, shape, dtype float64, base64)") from None
        x = np.frombuffer(buf, dtype="<f8").reshape(shape).astype(np.float64)
        if not np.isfinite(x).all():
            raise CalibrationError(f"{where}: the features hold a value that is not finite")
        return cls(x, np.asarray(labels, dtype=np.int64), m)
