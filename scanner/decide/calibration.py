"""Calibrations: what trusted clean inputs look like to each detector.

The data-limited variant of SCALE-UP (paper Eq. 3-4): per-class benign SPC statistics.

From trusted benign inputs, for each predicted class k: the mean ``mu_k`` and standard deviation
``sigma_k`` of their SPC. An input predicted as y is scored ``NSPC = (SPC - mu_y) / sigma_y``
(higher is more suspicious). Classes with fewer than ``min_class_samples`` calibration inputs
use the pooled statistics, and sigma has a floor so a class whose benign SPC never varies does
not divide by zero. A threshold on NSPC is chosen to give a target false-positive rate on the
calibration set.

Format version 2 adds what every other score needs (:mod:`scanner.decide.reference`): the detectors
that ran, each calibration input's raw scores and predicted label (so a scan may use any
subset of the detectors and get the references of that subset), the clean images STRIP
blends with, and the decision (the calibrated score flags come from). Version 1 files (NSPC
only) still load.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .._validation import (MAX_LABEL, check_label_key, check_number, check_rate, check_scales, is_finite,
                           load_json)
from ..detectors import DETECTORS, from_settings
from ..errors import CalibrationError, ScannerError, SpecError
from ..model.spec import validate_spec_dict
from .metrics import threshold_at_fpr
from .profile import SCORE as PROFILE, ProfileModel
from .reference import COMBINED, References, q_name

FORMAT = "scanner-calibration"
FORMAT_VERSION = 2
SUPPORTED_VERSIONS = (1, 2)


@dataclass(frozen=True)
class ClassStats:
    n: int
    mean: float
    std: float
    flagged: int | None = None  # calibration inputs of this class at or above the threshold


@dataclass
class Calibration:
    """Benign SPC statistics and the NSPC threshold fitted on them."""

    scales: tuple[float, ...]
    per_class: dict[int, ClassStats]
    pooled: ClassStats
    threshold: float
    target_fpr: float
    achieved_fpr: float
    n_samples: int
    min_class_samples: int
    sigma_floor: float
    model_sha256: str | None = None
    spec: dict[str, Any] | None = None
    #: version 2: the detectors that ran ({"name": ..., settings}), in order
    detectors: tuple[dict[str, Any], ...] = ()
    #: version 2: raw score name -> (n_samples,) values of the calibration inputs; and their labels
    values: dict[str, np.ndarray] = field(default_factory=dict)
    labels: np.ndarray | None = None
    #: version 2: clean images (n, H, W, C) uint8 a detector holds (STRIP blends with them)
    clean_images: np.ndarray | None = None
    #: version 2: the calibrated score that flags by default (e.g. "q_fisher")
    decision: str | None = None
    #: version 2: the response-profile density model (:mod:`.profile`), fit on part of the
    #: calibration inputs; ``values["profile"]`` holds the others' distances (its reference)
    profile: ProfileModel | None = None

    @property
    def detector_names(self) -> tuple[str, ...]:
        return tuple(d["name"] for d in self.detectors) or ("scaleup",)

    def references(self, scores, combine=None) -> References:
        """Per-class references of the raw ``scores`` (those calibrated), Fisher-combined over
        ``combine`` (default: all of them)."""
        if self.labels is None:
            raise CalibrationError("this calibration (format version 1) holds SPC statistics only; "
                                   "recalibrate with this version of `scanner calibrate` for other scores")
        raw = {n: self.values[n] for n in scores if n in self.values}
        return References.fit(raw, self.labels, combine=raw if combine is None else combine,
                              min_class_samples=self.min_class_samples, target_fpr=self.target_fpr)

    def stats_for(self, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """mu and sigma (floored) for each predicted label, pooled where a class has too few samples."""
        mu = np.full(len(labels), self.pooled.mean, dtype=np.float64)
        sigma = np.full(len(labels), self.pooled.std, dtype=np.float64)
        for label, stats in self.per_class.items():
            if stats.n >= self.min_class_samples:
                rows = labels == label
                mu[rows] = stats.mean
                sigma[rows] = stats.std
        return mu, np.maximum(sigma, self.sigma_floor)

    def nspc(self, spc: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """NSPC of inputs with the given SPC and predicted labels (higher is more suspicious)."""
        mu, sigma = self.stats_for(np.asarray(labels))
        return (np.asarray(spc, dtype=np.float64) - mu) / sigma

    def expected_fpr(self) -> float:
        """Smoothed false-positive rate of the threshold on the calibration set (never 0)."""
        return (self.achieved_fpr * self.n_samples + 1) / (self.n_samples + 2)

    def expected_fpr_per_class(self) -> dict[int, float]:
        """Smoothed benign flag rate of each predicted class with enough calibration inputs.

        Benign flag rates differ by class, so the model-level verdict tests each class against
        its own rate; classes not listed use :meth:`expected_fpr`.
        """
        return {label: (s.flagged + 1) / (s.n + 2) for label, s in self.per_class.items()
                if s.flagged is not None and s.n >= self.min_class_samples}

    # -- file format ---------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        data = {k: getattr(self, k) for k in _V1_FIELDS}
        data["pooled"] = asdict(self.pooled)
        data["scales"] = list(self.scales)
        data["per_class"] = {str(k): asdict(v) for k, v in sorted(self.per_class.items())}
        if self.labels is None:  # an NSPC-only calibration keeps the first format
            return {"format": FORMAT, "format_version": 1, **data}
        images = None
        if self.clean_images is not None:
            images = {"shape": list(self.clean_images.shape), "dtype": "uint8",
                      "base64": base64.b64encode(np.ascontiguousarray(self.clean_images).tobytes()).decode("ascii")}
        return {"format": FORMAT, "format_version": 2, **data, "detectors": [dict(d) for d in self.detectors],
                "decision": self.decision, "labels": self.labels.tolist(),
                "values": {k: [None if math.isnan(x) else x for x in v.tolist()] for k, v in self.values.items()},
                "clean_images": images, "profile": None if self.profile is None else self.profile.to_dict()}

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "Calibration":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise CalibrationError(f"cannot read calibration file {path}: {exc.strerror or exc}") from None
        except UnicodeDecodeError:
            raise CalibrationError(f"calibration file {path} is not valid JSON: not UTF-8 text") from None
        data = load_json(text, f"calibration file {path}", error=CalibrationError)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise CalibrationError(f"{path} is not a scanner calibration file (made by `scanner calibrate`)")
        version = data.get("format_version")
        if isinstance(version, bool) or version not in SUPPORTED_VERSIONS:  # true == 1 in Python
            raise CalibrationError(f"{path}: calibration format_version {data.get('format_version')!r} is not supported")
        return _from_dict(data, f"calibration file {path}")

    def check_compatible(self, *, model_sha256: str, scales) -> None:
        """Refuse a calibration made for another model or another scale set."""
        if self.model_sha256 is not None and self.model_sha256 != model_sha256:
            raise CalibrationError(
                f"the calibration was made for another model (sha256 {self.model_sha256[:12]}..., "
                f"this model is {model_sha256[:12]}...); run `scanner calibrate` on this model"
            )
        if tuple(float(s) for s in self.scales) != tuple(float(s) for s in scales):
            raise CalibrationError(
                f"the calibration was made with scales {','.join(map(str, self.scales))}, not "
                f"{','.join(map(str, scales))}; scan with the same --scales or recalibrate"
            )


_V1_FIELDS = ("scales", "per_class", "pooled", "threshold", "target_fpr", "achieved_fpr", "n_samples",
              "min_class_samples", "sigma_floor", "model_sha256", "spec")


def fit_calibration(spc: np.ndarray, labels: np.ndarray, *, scales, target_fpr: float = 0.05,
                    min_class_samples: int = 10, sigma_floor: float = 0.05,
                    model_sha256: str | None = None, spec: dict | None = None) -> Calibration:
    """Per-class benign statistics and an NSPC threshold at ``target_fpr``.

    Parameters
    ----------
    spc : ndarray of shape (n_samples,)
        SPC of trusted benign inputs.
    labels : ndarray of shape (n_samples,)
        Their predicted labels (the unscaled prediction).
    """
    target_fpr = check_rate(target_fpr, "target false-positive rate (--fpr)", error=CalibrationError)
    sigma_floor = check_number(sigma_floor, "sigma floor", lo=0.0, lo_open=True, error=CalibrationError)
    min_class_samples = check_number(min_class_samples, "min class samples", lo=1, integer=True, error=CalibrationError)
    spc = np.asarray(spc, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    if spc.shape != labels.shape or spc.ndim != 1:
        raise ValueError(f"spc and labels must be 1-D of equal length, got {spc.shape} and {labels.shape}")
    if spc.size < 2:
        raise CalibrationError(f"calibration needs at least 2 benign inputs, got {spc.size}")
    pooled = ClassStats(int(spc.size), float(spc.mean()), float(spc.std()))
    per_class = {}
    for label in np.unique(labels):
        rows = spc[labels == label]
        per_class[int(label)] = ClassStats(int(rows.size), float(rows.mean()), float(rows.std()))
    cal = Calibration(
        scales=tuple(scales), per_class=per_class, pooled=pooled, threshold=0.0,
        target_fpr=float(target_fpr), achieved_fpr=0.0, n_samples=int(spc.size),
        min_class_samples=int(min_class_samples), sigma_floor=float(sigma_floor),
        model_sha256=model_sha256, spec=spec,
    )
    nspc = cal.nspc(spc, labels)
    cal.threshold, cal.achieved_fpr = threshold_at_fpr(nspc, target_fpr)
    cal.per_class = {k: ClassStats(s.n, s.mean, s.std, int((nspc[labels == k] >= cal.threshold).sum()))
                     for k, s in per_class.items()}
    return cal


def _from_dict(data: dict, source: str) -> Calibration:
    """Every field checked for type, finiteness and range: a hand-edited file cannot blind the gate."""
    def number(key, **bounds):
        if key not in data:
            raise CalibrationError(f"{source}: field {key!r} is missing")
        return check_number(data[key], f"{source}: field {key!r}", error=CalibrationError, **bounds)

    def stats(value, where) -> ClassStats:
        if not isinstance(value, dict) or not {"n", "mean", "std"} <= set(value) or set(value) - {"n", "mean", "std", "flagged"}:
            raise CalibrationError(f"{source}: {where} must be an object with n, mean, std (and flagged)")
        n = check_number(value["n"], f"{source}: {where}.n", lo=1, integer=True, error=CalibrationError)
        flagged = value.get("flagged")
        if flagged is not None:
            flagged = check_number(flagged, f"{source}: {where}.flagged", lo=0, hi=n, integer=True, error=CalibrationError)
        return ClassStats(n, check_number(value["mean"], f"{source}: {where}.mean", error=CalibrationError),
                          check_number(value["std"], f"{source}: {where}.std", lo=0, error=CalibrationError), flagged)

    per_class_raw = data.get("per_class")
    if not isinstance(per_class_raw, dict):
        raise CalibrationError(f"{source}: field 'per_class' must be an object keyed by class label")
    per_class = {}
    for key, value in per_class_raw.items():
        per_class[check_label_key(key, f"{source}: field 'per_class'", error=CalibrationError)] = \
            stats(value, f"per_class[{key}]")
    sha = data.get("model_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)):
        raise CalibrationError(f"{source}: field 'model_sha256' must be 64 hex digits, got {sha!r}")
    spec = data.get("spec")
    if spec is not None and not isinstance(spec, dict):
        raise CalibrationError(f"{source}: field 'spec' must be an object")
    if spec is not None:  # checked like a spec file (kept as written: it is the record of the calibration)
        try:
            validate_spec_dict(spec, origin=f"{source}: field 'spec'")
        except SpecError as exc:
            raise CalibrationError(str(exc)) from None
    cal = Calibration(
        scales=check_scales(data.get("scales", ()), f"{source}: field 'scales'", error=CalibrationError),
        per_class=per_class,
        pooled=stats(data.get("pooled"), "pooled"),
        threshold=number("threshold"),
        target_fpr=check_rate(data.get("target_fpr"), f"{source}: field 'target_fpr'", error=CalibrationError),
        achieved_fpr=check_rate(data.get("achieved_fpr"), f"{source}: field 'achieved_fpr'", error=CalibrationError),
        n_samples=number("n_samples", lo=2, integer=True),
        min_class_samples=number("min_class_samples", lo=1, integer=True),
        sigma_floor=number("sigma_floor", lo=0.0, lo_open=True),
        model_sha256=sha,
        spec=spec,
    )
    if data.get("format_version") == 2:
        _read_v2(cal, data, source)
    return cal


def _read_v2(cal: Calibration, data: dict, source: str) -> None:
    """The version 2 fields, each checked (a hand-edited file cannot blind the gate)."""
    detectors = data.get("detectors")
    if not isinstance(detectors, list) or not detectors or not all(isinstance(d, dict) and isinstance(d.get("name"), str)
                                                                  for d in detectors):
        raise CalibrationError(f"{source}: field 'detectors' must be a non-empty list of objects with a name")
    names = [d["name"] for d in detectors]
    if any(n not in DETECTORS for n in names) or len(set(names)) != len(names):
        raise CalibrationError(f"{source}: field 'detectors' must name each of {', '.join(DETECTORS)} at most once, "
                               f"got {', '.join(map(repr, names))}")
    scaleup = next((d for d in detectors if d["name"] == "scaleup"), None)
    if scaleup is not None and "scales" in scaleup and scaleup["scales"] != list(cal.scales):
        raise CalibrationError(f"{source}: field 'detectors': scaleup's scales {scaleup['scales']!r} are not the "
                               f"calibration's scales {list(cal.scales)}")
    labels = data.get("labels")
    if not isinstance(labels, list) or len(labels) != cal.n_samples or not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_LABEL for v in labels):
        raise CalibrationError(f"{source}: field 'labels' must list {cal.n_samples} class labels "
                               f"(integers from 0 to {MAX_LABEL})")
    values = data.get("values")
    if not isinstance(values, dict) or not values:
        raise CalibrationError(f"{source}: field 'values' must be an object of score name -> list of numbers")
    out = {}
    for name, raw in values.items():
        if (not isinstance(raw, list) or len(raw) != cal.n_samples
                or not all(v is None or isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)):
            raise CalibrationError(f"{source}: values[{name!r}] must list {cal.n_samples} numbers (null: undecidable)")
        bad = next((i for i, v in enumerate(raw) if v is not None and not is_finite(v)), None)
        if bad is not None:  # NaN too: only null marks an input the detector could not judge
            v = raw[bad]
            what = "NaN" if v != v else "infinite" if isinstance(v, float) else "an integer too large for a float"
            raise CalibrationError(f"{source}: values[{name!r}][{bad}] is {what}, not a finite number "
                                   "(null, not NaN, marks an input the detector could not judge)")
        out[str(name)] = np.asarray([np.nan if v is None else v for v in raw], dtype=np.float64)
    images = data.get("clean_images")
    if images is not None:
        try:
            shape = tuple(images["shape"])
            buf = base64.b64decode(images["base64"], validate=True)
            if (images.get("dtype") != "uint8" or len(shape) != 4 or not all(type(v) is int and v >= 1 for v in shape)
                    or len(buf) != math.prod(shape)):
                raise ValueError
        except (KeyError, TypeError, ValueError):
            raise CalibrationError(f"{source}: field 'clean_images' must hold a uint8 (n, H, W, C) array") from None
        images = np.frombuffer(buf, dtype=np.uint8).reshape(shape).copy()
    try:  # every detector's settings checked as the scan will rebuild it (STRIP: with these images)
        from_settings(detectors, images)
    except ScannerError as exc:
        raise CalibrationError(f"{source}: field 'detectors': {exc}") from None
    decision = data.get("decision")
    if decision is not None and not isinstance(decision, str):
        raise CalibrationError(f"{source}: field 'decision' must be a score name")
    profile = data.get("profile")
    if profile is not None:
        profile = ProfileModel.from_dict(profile, f"{source}: field 'profile'")
        if PROFILE not in out:
            raise CalibrationError(f"{source}: a 'profile' model needs values['profile'] (its reference)")
    elif PROFILE in out:
        raise CalibrationError(f"{source}: values['profile'] needs the 'profile' model")
    offered = ["nspc", *(q_name(n) for n in out), q_name(COMBINED)]
    if decision is not None and decision not in offered:
        raise CalibrationError(f"{source}: field 'decision' must be one of the scores it calibrates "
                               f"({', '.join(offered)}), got {decision!r}")
    cal.detectors = tuple(dict(d) for d in detectors)
    cal.labels, cal.values, cal.clean_images, cal.decision = np.asarray(labels, np.int64), out, images, decision
    cal.profile = profile


def unflaggable(cal: Calibration, score: str) -> dict[int, str]:
    """Predicted classes the calibrated ``score`` can never flag, each with why.

    ``q_<s>``: more than the target rate of the class's calibration inputs tie at its top value
    (a class with zero spread is the extreme), so no input reaches ``p <= FPR``. ``nspc``: even
    SPC = 1 stays below the threshold after the class's mean and (floored) spread.
    """
    out: dict[int, str] = {}
    if score == "nspc":
        for label, s in cal.per_class.items():
            if s.n < cal.min_class_samples:
                continue
            best = (1.0 - s.mean) / max(s.std, cal.sigma_floor)
            if best < cal.threshold:
                spread = "zero spread, sigma floored to " + f"{cal.sigma_floor:g}" if s.std < cal.sigma_floor else \
                    f"std {s.std:.3g}"
                out[label] = (f"benign SPC mean {s.mean:.3g} ({spread}): even SPC 1 gives NSPC {best:.3g} "
                              f"< threshold {cal.threshold:.3g}")
        return out
    if not score.startswith("q_") or cal.labels is None:
        return out
    raw = score[2:]
    if raw not in cal.values:
        return out
    refs = cal.references([raw]).scores
    if raw not in refs:
        return {label: f"{raw}: none of the calibration inputs could be judged (all undecidable)"
                for label in cal.per_class}
    ref = refs[raw]
    for label, top in ref.unflaggable(cal.target_fpr).items():
        n = len(ref.per_class[label])
        out[label] = (f"{raw}: only {n} calibration inputs (p cannot go below 1/{n + 1})" if 1 / (n + 1) > cal.target_fpr
                      else f"{raw}: more than {cal.target_fpr:.0%} of its {n} calibration inputs share the top value "
                           f"{top:.4g}, so no input of it reaches p <= {cal.target_fpr:g}")
    return out
