"""Which detector runs, which scores a scan offers, which one decides, and at what threshold.

Without a calibration: the named detectors (SCALE-UP by default) and their raw scores; the first
raw score decides (SCALE-UP: SPC >= 0.5). With a calibration: the detectors it recorded (or a
subset), their raw scores, NSPC, and the calibrated ``q_<score>`` and ``q_fisher`` of
:mod:`scanner.decide.reference`; its recorded decision decides, at ``p <= FPR``.
"""

from __future__ import annotations

from dataclasses import dataclass
from .calibration import Calibration
from ..detectors import Detector, ScaleUp, build_detector, from_settings, parts_of
from ..errors import ScannerError
from ..detectors.profile import FEATURES_PER_QUERY
from .profile import SCORE as PROFILE
from .reference import COMBINED, References, q_name

# With a calibration and no recorded decision, the first of these the scan offers flags.
DECISION_ORDER = (q_name(PROFILE), q_name(COMBINED), q_name("prob_consistency"), q_name("strip"), q_name("teco"), "nspc",
                  q_name("spc"))


def make_detector_for(detector: Detector | None, calibration: Calibration | None, detectors, detector_params,
                      scales) -> Detector:
    """The detector instance given, else what the calibration recorded (``detectors``: a subset of
    it), else the named detectors, else SCALE-UP with ``scales``."""
    if detector is not None:
        return detector
    if calibration is not None and calibration.labels is not None:
        return from_settings(calibration.detectors, calibration.clean_images, detectors)
    if detector_params is not None and (not isinstance(detector_params, dict)
                                        or not all(isinstance(v, dict) for v in detector_params.values())):
        raise ScannerError("detector_params: expected a dict of detector name -> dict of parameters, "
                           f"got {type(detector_params).__name__}")
    if detectors is not None:
        params = {k: dict(v) for k, v in (detector_params or {}).items()}
        params.setdefault("scaleup", {}).setdefault("scales", scales)
        return build_detector(detectors, params)
    return ScaleUp(scales)


def check_calibration(detector: Detector, cal: Calibration, *, model_sha256: str, scales) -> None:
    """Refuse a calibration made for another model, scale set (``scales``: the ones asked for,
    compared whenever SCALE-UP runs) or without these detectors."""
    names = [p.name for p in parts_of(detector)]
    missing = [n for n in names if n not in cal.detector_names]
    if missing:
        raise ScannerError(f"the calibration was made with {', '.join(cal.detector_names)}, not "
                           f"{', '.join(missing)}; recalibrate with --detector {','.join(names)}")
    cal.check_compatible(model_sha256=model_sha256, scales=scales if "scaleup" in names else cal.scales)


@dataclass(frozen=True)
class ScoreChoice:
    """The scores a scan reports (``names``), the one that flags (``score``, as reports spell it)
    and its ``threshold``; ``references`` gives the calibrated ones."""

    names: tuple[str, ...]
    score: str
    threshold: float
    references: References | None


def choose(detector: Detector, cal: Calibration | None, *, has_probabilities: bool, score: str | None,
           threshold: float | None, output_name: str = "") -> ScoreChoice:
    references = None
    if cal is not None and cal.labels is not None:
        raw = [n for n in detector.score_names if n in cal.values
               and (has_probabilities or n not in detector.probability_scores)]
        # SPC is a coarse copy of prob-consistency where both exist: combine the finer one
        combine = [n for n in raw if not (n == "spc" and "prob_consistency" in raw)]
        if has_probabilities and offers_profile(detector, cal):
            raw.append(PROFILE)  # a decision of its own, never a part of Fisher's combination
        references = cal.references(raw, combine)
    names = tuple(detector.score_names)  # NSPC stays, null without a calibration (report schema 1)
    if references is not None:
        names += tuple(references.names)
    choices = [n.replace("_", "-") for n in names if cal is not None or n not in detector.calibrated]
    score = (score or _default(detector, cal, references, names)).replace("_", "-")
    if score not in choices:
        raise ScannerError(f"score must be one of {', '.join(choices)}, got {score!r}")
    key = score.replace("-", "_")
    if key in detector.probability_scores and not has_probabilities:
        raise ScannerError(f"--score {score} needs class scores, but the model's output {output_name!r} holds "
                           "labels only")
    if threshold is None:
        threshold = default_threshold(detector, cal, key)
    return ScoreChoice(names, score, float(threshold), references)


def offers_profile(detector: Detector, cal: Calibration) -> bool:
    """The calibration's response-profile model applies to this scan: it has one, and the scan
    runs exactly the calibrated detectors (the profile has a feature for every query of each)."""
    return (cal.profile is not None and PROFILE in cal.values
            and [p.name for p in parts_of(detector)] == list(cal.detector_names)
            and FEATURES_PER_QUERY * detector.queries_per_input == cal.profile.n_features)


def _default(detector: Detector, cal: Calibration | None, references, names) -> str:
    if cal is None:
        return next(n for n in detector.score_names if n not in detector.calibrated)
    if references is None:
        return "nspc"  # a version 1 calibration: the paper's data-limited variant
    if cal.decision in names:
        return cal.decision
    # The recorded decision is not offered. A scan of a subset of the detectors (--detector)
    # falls back to the first score it offers; one that runs what the decision needs (every
    # calibrated detector, or the one giving its score) refuses rather than flag by another score.
    parts = parts_of(detector)
    raw = cal.decision[2:] if cal.decision and cal.decision.startswith("q_") else None
    if cal.decision is not None and ({p.name for p in parts} == set(cal.detector_names)
                                     or any(raw in p.score_names for p in parts)):
        values = cal.values.get(raw)
        why = (f"every calibration input's {raw} is null (the detector could not judge any), so it has no reference"
               if values is not None and not (values == values).any() else
               "fewer than two of the scores it combines have a reference" if raw == COMBINED else
               "this scan does not offer it")
        raise ScannerError(f"the calibration's decision {cal.decision.replace('_', '-')} cannot be computed by this "
                           f"scan: {why}; choose the deciding score with --score (one of "
                           f"{', '.join(n.replace('_', '-') for n in names)})")
    return next(n for n in DECISION_ORDER if n in names)


def default_threshold(detector: Detector, cal: Calibration | None, score: str) -> float:
    """Where ``score`` flags by default: ``p <= FPR`` for a calibrated ``q_`` score, the
    calibration's threshold for NSPC, else the owning detector's data-free threshold."""
    if score.startswith("q_"):
        # q = 1 - p flags p <= target FPR (the small margin keeps p == target on the flagged side)
        return 1.0 - cal.target_fpr - 1e-12
    if score == "nspc":
        return cal.threshold
    owner = next((p for p in parts_of(detector) if score in p.score_names), detector)
    return owner.default_threshold


__all__ = ["DECISION_ORDER", "ScoreChoice", "choose", "check_calibration", "default_threshold", "make_detector_for"]
