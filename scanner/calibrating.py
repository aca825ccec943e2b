"""``scanner calibrate`` as a library call: score trusted clean inputs with every detector and
keep what a later scan compares against (:class:`~scanner.decide.calibration.Calibration`).

Detectors that need clean images of their own (STRIP blends with them) get a seeded choice of
the calibration inputs first; those inputs are then left out of the references, so no input is
compared with a blend of itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .inputs.stream import BatchLoader
from .decide.calibration import Calibration, fit_calibration, unflaggable
from .decide.profile import SCORE as PROFILE, ProfileModel, split
from .decide.reference import COMBINED, q_name
from .core import Scanner
from .decide.scoring import choose
from .inputs.decode import UNIT
from .detectors import Detector, parse_names, parts_of
from .errors import CalibrationError, ModelLoadError
from .inputs.find import InputSet, as_inputs
from ._validation import check_callable

#: what `scanner calibrate` runs by default, and each detector's parameters there (at most
#: 64 model queries per input together: see the README's detection section)
DEFAULT_DETECTORS = ("scaleup", "strip", "teco")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"strip": {"n_blends": 16}, "teco": {"severities": 3}}
SEED = 0


def calibrate(model: str | Path, paths: Sequence[str | Path] | InputSet, *,
              detectors: str | Sequence[str] = DEFAULT_DETECTORS, detector_params: dict | None = None,
              target_fpr: float = 0.05, min_class_samples: int = 10, sigma_floor: float = 0.05,
              progress: Callable[[int, int], None] | None = None, **scanner_args) -> tuple[Calibration, Any]:
    """Calibrate ``model`` on the clean inputs ``paths``; returns the calibration and the scan."""
    names = list(parse_names(detectors))
    if "scaleup" not in names:
        raise CalibrationError("a calibration always includes scaleup (the paper's NSPC comes from it); "
                               "add it to --detector (a scan can still use a subset)")
    if detector_params is not None and (not isinstance(detector_params, dict)
                                        or not all(isinstance(v, dict) for v in detector_params.values())):
        raise CalibrationError("detector_params: expected a dict of detector name -> dict of parameters, "
                               f"got {type(detector_params).__name__}")
    params = {k: dict(v) for k, v in DEFAULT_PARAMS.items()}
    for name, values in (detector_params or {}).items():
        params.setdefault(name, {}).update(values)
    scanner = Scanner(model, detectors=names, detector_params=params, **scanner_args)
    check_callable(progress, "progress")
    inputs = as_inputs(paths)  # one path is that path, not a sequence of characters (as Scanner.scan)
    held = _hold_out(scanner, inputs)
    scanner.collect_features = scanner.model.output_kind == "scores"  # label-only models give no profile
    result = scanner.scan(inputs, progress=progress)
    if result.incomplete:  # a model call stopped by the per-call watchdog: no calibration from a part
        raise ModelLoadError(result.incomplete)
    keep = ~np.isin(result.indices, held)
    s = result.scores
    if keep.sum() < 2:
        raise CalibrationError(f"calibration needs at least 2 clean inputs besides the {len(held)} held for STRIP; "
                               f"{int(keep.sum())} remain of {result.n_found}")
    # NSPC as the paper defines it: every calibration input's SPC, undecidable ones included
    cal = fit_calibration(s.spc[keep], s.labels[keep], scales=scanner.scales, target_fpr=target_fpr,
                          min_class_samples=min_class_samples, sigma_floor=sigma_floor,
                          model_sha256=scanner.info.sha256, spec=scanner.spec.to_dict())
    cal.detectors = tuple({"name": p.name, **p.settings()} for p in parts_of(scanner.detector))
    cal.values = {}
    for part in parts_of(scanner.detector):
        # a part's scores of inputs it cannot judge stay out of its references (NaN in the file)
        judges_all = type(part).undecidable is Detector.undecidable
        for name in part.score_names:
            v = s.named.get(name)
            if v is None or name in part.calibrated:
                continue
            v = np.asarray(v, dtype=np.float64).copy()
            if not judges_all:
                v[s.undecidable] = np.nan
            cal.values[name] = v[keep]
    cal.labels = s.labels[keep]
    if s.features is not None:
        _fit_profile(cal, s.features[keep], min_class_samples)
    strip = next((p for p in parts_of(scanner.detector) if p.clean_images_needed), None)
    if strip is not None:
        cal.clean_images = np.rint(strip.held_images * 255).astype(np.uint8)
    # what a scan with this calibration offers by default (no second model load)
    choice = choose(scanner.detector, cal, has_probabilities=scanner.model.output_kind == "scores",
                    score=None, threshold=None)
    cal.decision = choice.score.replace("-", "_")
    if cal.decision == q_name(PROFILE) and unflaggable(cal, cal.decision) and q_name(COMBINED) in choice.names:
        # the profile's reference is half of each class: a class too small for it to reach the
        # target FPR would be blind to the default; Fisher's references use every image
        cal.decision = q_name(COMBINED)
    return cal, result


def _fit_profile(cal: Calibration, features: np.ndarray, min_class_samples: int) -> None:
    """The response-profile model on half the inputs of each class (:func:`~scanner.decide.profile.split`);
    the other half's distances are its reference (NaN: the fit inputs, which are left out)."""
    fit = split(cal.labels)
    if fit.all():  # every class has a single input: nothing left to be the reference
        return
    cal.profile = ProfileModel(features[fit], cal.labels[fit], min_class_samples)
    values = np.full(len(cal.labels), np.nan)
    values[~fit] = cal.profile.distance(features[~fit], cal.labels[~fit])
    cal.values[PROFILE] = values


def _hold_out(scanner: Scanner, inputs: InputSet) -> np.ndarray:
    """Give the detectors that need clean images a seeded choice of the inputs; their indices."""
    need = scanner.detector.clean_images_needed
    if not need:
        return np.empty(0, dtype=np.int64)
    if len(inputs) < need + 2:
        raise CalibrationError(f"the detectors need {need} clean images of their own and at least 2 more to "
                               f"calibrate on; {len(inputs)} inputs were given")
    order = np.random.default_rng(SEED).permutation(len(inputs))
    spec = scanner.spec
    chosen: dict[int, np.ndarray] = {}
    wanted = set(order[:need + 64].tolist())  # spares for unreadable ones
    loader = BatchLoader(inputs, height=spec.height, width=spec.width, channels=spec.channels,
                         batch_size=scanner.batch_size, workers=scanner.workers)
    for batch in loader:
        for row, index in enumerate(np.asarray(batch.indices).tolist()):
            if index in wanted:
                image = batch.images[row]
                chosen[index] = image * UNIT if image.dtype == np.uint8 else np.array(image, dtype=np.float32)
    picked = [i for i in order.tolist() if i in chosen][:need]
    if len(picked) < need:
        raise CalibrationError(f"the detectors need {need} readable clean images; only {len(picked)} were found")
    scanner.detector.fit(np.stack([chosen[i] for i in picked]))
    return np.asarray(picked, dtype=np.int64)
