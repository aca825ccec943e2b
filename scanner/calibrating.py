"""``scanner calibrate`` as a library call: score trusted clean inputs with every detector and
keep what a later scan compares against (:class:`~scanner.decide.calibration.Calibration`).

Detectors that need clean images of their own (STRIP blends with them) get a seeded choice of
the calibration inputs first; those inputs are then left out of the references, so no input is
compared with a blend of itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .inputs.stream import BatchLoader
from .decide.calibration import Calibration, fit_calibration, unflaggable
from .decide.profile import SCORE as PROFILE, ProfileModel, split
from .decide.reference import COMBINED, q_name
from .core import Scanner
from .decide.scoring import choose
from .decide.verdict import CANNOT_JUDGE_SHARE
from .inputs.decode import BYTE_MAX
from .detectors import Detector, parse_names, parts_of
from .errors import CalibrationError, ModelLoadError
from .inputs.find import InputSet, as_inputs
from .results import ScanResult
from ._validation import check_callable

#: what `scanner calibrate` runs by default, and each detector's parameters there: 1 + 5 (SCALE-UP)
#: + 16 (STRIP) + 12 x 2 (TeCo) + 3 x 3 x 2 (transplant) = 64 model queries per input, the budget the
#: detection issue set. TeCo runs at 2 severities, not 3, to make room for the transplant regions,
#: which catch the white square the 58 queries before missed; PhysicalBA paid for it
#: (docs/results/detection.md, bench/results/profile_queries.md).
DEFAULT_DETECTORS = ("scaleup", "strip", "teco", "transplant")
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"strip": {"n_blends": 16}, "teco": {"severities": 2},
                                             "transplant": {"grid": 3, "n_backgrounds": 2}}
SEED = 0


@dataclass(frozen=True)
class CalibrationRun:
    """What :func:`calibrate` returns: the ``calibration`` to save and pass to a scan, and the
    ``scan`` of the clean inputs it was fitted on (a :class:`~scanner.results.ScanResult`: their
    scores, failures and settings).

    ``str()`` is what ``scanner calibrate`` prints (warnings about classes a score can never flag
    first, then the summary line). Code written for the earlier 2-tuple keeps working:
    ``cal, result = calibrate(...)`` unpacks as ``(calibration, scan)``.
    """

    calibration: Calibration
    scan: ScanResult

    def save(self, path: str | Path) -> None:
        """Write the calibration file (what ``scanner calibrate -o`` writes)."""
        self.calibration.save(path)

    def lines(self) -> list[str]:
        """``scanner calibrate``'s lines: warnings first, the summary line last."""
        return calibration_lines(self.calibration, self.scan)

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        cal = self.calibration
        return (f"<CalibrationRun of {self.scan.settings.model}: {cal.n_samples} clean inputs, "
                f"decision {cal.decision or 'nspc'} at FPR {cal.target_fpr:g} per class>")

    def __iter__(self) -> Iterator[Any]:  # cal, result = calibrate(...), as before
        return iter((self.calibration, self.scan))


def calibrate(model: str | Path, paths: Sequence[str | Path] | InputSet, *,
              detectors: str | Sequence[str] = DEFAULT_DETECTORS, detector_params: dict | None = None,
              target_fpr: float = 0.05, min_class_samples: int = 10, sigma_floor: float = 0.05,
              progress: Callable[[int, int], None] | None = None, **scanner_args) -> CalibrationRun:
    """Calibrate ``model`` on the clean inputs ``paths``: a :class:`CalibrationRun` (the
    calibration, and the scan of the clean inputs; unpacks as that pair)."""
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
    held, held_images = _hold_out(scanner, inputs)
    scanner.collect_features = scanner.model.output_kind == "scores"  # label-only models give no profile
    result = scanner.scan(inputs, progress=progress)
    if result.incomplete:  # a model call stopped by the per-call watchdog: no calibration from a part
        raise ModelLoadError(result.incomplete)
    keep = ~np.isin(result.indices, held)
    s = result.scores
    if keep.sum() < 2:
        raise CalibrationError(f"calibration needs at least 2 clean inputs besides the {len(held)} held by the detectors; "
                               f"{int(keep.sum())} remain of {result.n_found}")
    # NSPC as the paper defines it: every calibration input's SPC, undecidable ones included
    cal = fit_calibration(s.spc[keep], s.labels[keep], scales=scanner.scales, target_fpr=target_fpr,
                          min_class_samples=min_class_samples, sigma_floor=sigma_floor,
                          model_sha256=scanner.info.sha256, spec=scanner.spec.to_dict())
    cal.detectors = tuple({"name": p.name, **p.settings()} for p in parts_of(scanner.detector))
    cal.values = {}
    for part in parts_of(scanner.detector):
        # a part's scores of inputs it cannot judge stay out of its references (NaN in the file)
        cannot = s.undecidable_by.get(part.name)
        for name in part.score_names:
            v = s.named.get(name)
            if v is None or name in part.calibrated:
                continue
            v = np.asarray(v, dtype=np.float64).copy()
            if cannot is not None:
                v[cannot] = np.nan
            cal.values[name] = v[keep]
    cal.labels = s.labels[keep]
    if s.features is not None:
        _fit_profile(cal, s.features[keep], min_class_samples)
    if held_images is not None:  # every detector that holds clean images takes its own from these again
        cal.clean_images = held_images
    # what a scan with this calibration offers by default (no second model load)
    choice = choose(scanner.detector, cal, has_probabilities=scanner.model.output_kind == "scores",
                    score=None, threshold=None)
    cal.decision = choice.score.replace("-", "_")
    blind = any(mask[keep].mean() > CANNOT_JUDGE_SHARE for mask in s.undecidable_by.values()) if keep.any() else False
    if cal.decision == q_name(PROFILE) and (unflaggable(cal, cal.decision) or blind) and q_name(COMBINED) in choice.names:
        # the profile's reference is half of each class: a class too small for it to reach the
        # target FPR would be blind to the default; Fisher's references use every image. And the
        # profile models every query's answer, a detector's that cannot judge the images too
        # (near-binary digits: SCALE-UP's copies are the input again), where it was measured
        # blind (MNIST white square, bench.reproduce: TPR 0.00), while Fisher leaves such a
        # detector out of each input's decision (TPR 1.00): on data most of whose calibration
        # inputs a detector cannot judge, Fisher decides
        cal.decision = q_name(COMBINED)
    return CalibrationRun(cal, result)


def calibration_lines(cal: Calibration, result: ScanResult) -> list[str]:
    """Lines for ``scanner calibrate``: warnings first, the summary line last."""
    lines = []
    for score in ["nspc", *(q_name(n) for n in cal.values)]:
        classes = unflaggable(cal, score)
        if classes:
            shown = ", ".join(str(k) for k in sorted(classes)[:12]) + (" ..." if len(classes) > 12 else "")
            first = classes[min(classes)]
            lines.append(f"Warning: {score.replace('_', '-')} can never flag predicted class(es) {shown} "
                         f"(class {min(classes)}: {first})")
    for name, mask in result.scores.undecidable_by.items():
        undecidable = int(mask.sum())
        if undecidable:
            lines.append(f"Warning: {undecidable} calibration input(s) are undecidable for {name}: left out of its "
                         "references (the paper's NSPC statistics keep them; a combined decision judges them "
                         "with the other detectors)")
    small = sum(1 for s in cal.per_class.values() if s.n < cal.min_class_samples)
    parts = ", ".join(d["name"] for d in cal.detectors) if cal.detectors else "scaleup"
    refs = cal.references(list(cal.values)) if cal.labels is not None else None
    achieved = "" if refs is None else "; FPR on this set (leave-one-out): " + ", ".join(
        f"{k.replace('_', '-')} {v:.4f}" for k, v in refs.achieved_fpr.items())
    lines.append(
        f"calibrated {parts} on {cal.n_samples} benign inputs ({len(cal.per_class)} predicted classes, {small} using "
        f"pooled references); decision {str(cal.decision or 'nspc').replace('_', '-')} at FPR {cal.target_fpr:g} per "
        f"class{achieved}; NSPC threshold {cal.threshold:.4g} (FPR {cal.achieved_fpr:.4f}); "
        f"scales {','.join(map(str, cal.scales))}")
    return lines


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


def _hold_out(scanner: Scanner, inputs: InputSet) -> tuple[np.ndarray, np.ndarray | None]:
    """Give the detectors that need clean images a seeded choice of the inputs: their indices, and
    the images as uint8 (what the calibration stores: the detectors were fit on exactly these)."""
    need = scanner.detector.clean_images_needed
    if not need:
        return np.empty(0, dtype=np.int64), None
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
                chosen[index] = image / BYTE_MAX if image.dtype == np.uint8 else np.array(image, dtype=np.float32)
    picked = [i for i in order.tolist() if i in chosen][:need]
    if len(picked) < need:
        raise CalibrationError(f"the detectors need {need} readable clean images; only {len(picked)} were found")
    images = np.rint(np.stack([chosen[i] for i in picked]) * BYTE_MAX).astype(np.uint8)
    scanner.detector.fit(images)
    return np.asarray(picked, dtype=np.int64), images
