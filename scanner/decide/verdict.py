"""Decisions from a scan's scores: per-class counts, the model-level verdict and the CI gate.

Typed and pure: each function takes scores or a :class:`~scanner.core.ScanResult` and returns
a dataclass with integer class keys; :mod:`scanner.report` turns them into text and JSON
(``to_dict`` gives the report schema's form).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .._validation import check_number, check_rate
from ..errors import ScannerError
from .counts import COLLAPSE_MIN_INPUTS, COLLAPSE_SHARE, ClassCount, _class_name, collapsed, per_class_counts  # noqa: F401
from .metrics import betabinomial_sf, binomial_sf  # noqa: F401  (binomial_sf: part of this module's API)

if TYPE_CHECKING:  # types only: decisions read a ScanResult, they do not import the results module
    from ..results import ScanResult

DEFAULT_ASSUMED_FPR = 0.10  # the rate shown without a calibration (no class is named without one)
DEFAULT_ALPHA = 0.01
# A suspected target must also be flagged far above its benign rate, not just significantly:
# on thousands of inputs a class at 7% against an expected 4% is "significant" yet no backdoor.
MIN_RATE_RATIO = 2.0
MIN_RATE_EXCESS = 0.05
# Above this share of undecidable inputs the verdict is "cannot judge".
CANNOT_JUDGE_SHARE = 0.5
NO_REFERENCE = ("no benign reference: without a calibration the scanner cannot tell a backdoor's target from "
                "the class amplified or corrupted inputs drift to on any model, so it names none (an assumed "
                "--expected-fpr is no measured reference); run `scanner calibrate` on trusted clean inputs and "
                "scan with --calibration")
NEEDS_CALIBRATION = ("--fail-on-suspect needs a measured benign reference to name a suspect: add --calibration FILE "
                     "(made by `scanner calibrate` on trusted clean inputs)")
ALLOW_UNDECIDABLE = "--allow-undecidable"
# where a stated preprocessing comes from (a uint8 input implies [0, 255]: "inferred from graph")
STATED_SOURCES = ("option", "spec file", "model metadata")
PROBE_HINT = "run `scanner probe MODEL IMAGES` to find the preprocessing and pass the flags it prints"


@dataclass(frozen=True)
class Suspect:
    """A predicted class flagged significantly and substantially above its expected rate."""

    label: int
    inputs: int
    flagged: int
    expected_rate: float
    p_value: float
    p_adjusted: float
    text: str

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "inputs": self.inputs, "flagged": self.flagged,
                "expected_rate": self.expected_rate, "p_value": self.p_value,
                "p_adjusted": self.p_adjusted, "text": self.text}


@dataclass(frozen=True)
class Verdict:
    """The model-level verdict: which predicted classes look like a backdoor's target."""

    expected_fpr: float
    expected_fpr_source: str
    alpha: float
    expected_fpr_per_class: dict[int, float]
    test: str
    suspects: tuple[Suspect, ...]
    withheld: str | None = None  # why no suspect is named although the test found some
    withheld_suspects: tuple[Suspect, ...] = ()
    #: "suspect" (a class named), "no suspect" (tested against a benign reference, none named),
    #: "no reference" (nothing to test against: no class is named), "cannot judge" (most
    #: inputs undecidable), "withheld" (suspects found but not named, see ``withheld``)
    status: str = "no suspect"
    note: str | None = None  # one line saying why for the statuses other than suspect / no suspect
    #: tested against a measured benign reference (a calibration); not in the report's JSON
    has_reference: bool = True

    @property
    def model_suspicious(self) -> bool:
        return bool(self.suspects)

    def __str__(self) -> str:  # the CLI's verdict line(s)
        from .text import text, verdict_lines

        return text(verdict_lines(self))

    def __repr__(self) -> str:
        named = ", ".join(str(s.label) for s in self.suspects)
        return f"<Verdict {self.status}{': class ' + named if named else ''}>"

    def withhold(self, reason: str) -> "Verdict":
        """The same verdict naming no suspect, recording which ones were withheld and why."""
        return replace(self, suspects=(), withheld=reason, withheld_suspects=self.suspects, status="withheld",
                       note=reason)

    def to_dict(self) -> dict[str, Any]:
        return {
            "expected_fpr": self.expected_fpr,
            "expected_fpr_source": self.expected_fpr_source,
            "alpha": self.alpha,
            "expected_fpr_per_class": {str(k): v for k, v in self.expected_fpr_per_class.items()},
            "test": self.test,
            "suspected_targets": [s.to_dict() for s in self.suspects],
            "model_suspicious": self.model_suspicious,
            "suspects_withheld": self.withheld,
            "withheld_targets": [s.to_dict() for s in self.withheld_suspects],
            "status": self.status,
            "note": self.note,
        }


@dataclass(frozen=True)
class Summary:
    """Counts, the flagged count per predicted class and the verdict of one scan."""

    inputs_found: int
    scored: int
    failed: int
    flagged: int
    per_class: tuple[ClassCount, ...]
    verdict: Verdict
    seconds: float
    warnings: tuple[str, ...] = ()
    incomplete: str | None = None  # why the scan stopped before every input was reached
    undecidable: int = 0  # scored inputs the detector cannot judge (never flagged, not in the verdict)

    @property
    def flagged_rate(self) -> float:
        return self.flagged / self.scored if self.scored else 0.0

    def __str__(self) -> str:  # the CLI's summary lines, from the counts on
        from .text import summary_lines, text

        return text(summary_lines(self))

    def __repr__(self) -> str:
        return (f"<Summary {self.flagged} of {self.scored} scored inputs flagged, {self.failed} failed; "
                f"verdict {self.verdict.status}>")

    def to_dict(self) -> dict[str, Any]:
        return {
            "inputs_found": self.inputs_found,
            "scored": self.scored,
            "failed": self.failed,
            "flagged": self.flagged,
            "flagged_rate": self.flagged_rate,
            "flagged_per_class": {str(c.label): {"class": c.class_name, "inputs": c.inputs, "flagged": c.flagged}
                                  for c in self.per_class},
            "verdict": self.verdict.to_dict(),
            "seconds": round(self.seconds, 3),
            "incomplete": self.incomplete,
            "undecidable": self.undecidable,
        }


@dataclass(frozen=True)
class Gate:
    """The CI gate: passes when the flagged count and rate are within the limits."""

    max_flagged: int | None
    max_flagged_rate: float | None
    reasons: tuple[str, ...] = field(default=())
    fail_on_suspect: bool = False
    allow_undecidable: bool = False  # --fail-on-suspect passes a verdict that cannot judge

    @property
    def passed(self) -> bool:
        return not self.reasons

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:  # the CLI's gate line
        from .text import gate_line

        return gate_line(self)[0]

    def __repr__(self) -> str:
        return f"<Gate {'passed' if self.passed else 'FAILED: ' + '; '.join(self.reasons)}>"

    def to_dict(self) -> dict[str, Any]:
        return {"max_flagged": self.max_flagged, "max_flagged_rate": self.max_flagged_rate,
                "fail_on_suspect": self.fail_on_suspect, "allow_undecidable": self.allow_undecidable,
                "passed": self.passed, "reasons": list(self.reasons)}


def format_p(p: float) -> str:
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.3g}"


def model_verdict(labels: np.ndarray, flagged: np.ndarray, *, expected_fpr: float, source: str,
                  per_class: dict[int, float] | None = None, alpha: float = DEFAULT_ALPHA,
                  class_names=None, reference_sizes: dict[int, int] | None = None) -> Verdict:
    """Predicted classes whose flagged rate is significantly and substantially above the expected
    benign rate (``per_class[label]`` where given, else ``expected_fpr``).

    One-sided test per predicted class, Holm-corrected over the classes present; a suspect must
    also be flagged at least ``MIN_RATE_RATIO`` times, and ``MIN_RATE_EXCESS`` above, its
    expected rate. The test is binomial at the expected rate, or, with ``reference_sizes`` (a
    conformal flag: each class's reference size, -1 for the pooled one), beta-binomial: the
    realized false-positive rate of a threshold set from n references is itself random
    (Beta(a, n + 1 - a)), and a class whose threshold came out low is no backdoor.
    """
    per_class = per_class or {}
    rows = []
    for c in per_class_counts(labels, flagged):
        if reference_sizes:
            n = reference_sizes.get(c.label, reference_sizes.get(-1, 0))
            a = math.floor(expected_fpr * (n + 1) + 1e-9)
            expected = a / (n + 1)
            rows.append([c, expected, betabinomial_sf(c.flagged, c.inputs, a, n + 1 - a), 0.0])
            continue
        expected = per_class.get(c.label, expected_fpr)
        rows.append([c, expected, binomial_sf(c.flagged, c.inputs, expected), 0.0])
    running = 0.0
    for rank, row in enumerate(sorted(rows, key=lambda r: r[2])):  # Holm step-down adjustment
        running = max(running, min(1.0, (len(rows) - rank) * row[2]))
        row[3] = running
    suspects = []
    for c, expected, p_value, p_adjusted in sorted(rows, key=lambda r: r[3]):
        rate = c.flagged / c.inputs
        substantial = rate >= MIN_RATE_RATIO * expected and rate - expected >= MIN_RATE_EXCESS
        if p_adjusted < alpha and substantial:
            name = _class_name(class_names, c.label)
            label = f"{c.label} ({name})" if name else str(c.label)
            text = (f"suspected target class {label}: {c.flagged} of {c.inputs} flagged "
                    f"(expected {expected:.3g}), {format_p(p_adjusted)}")
            suspects.append(Suspect(c.label, c.inputs, c.flagged, expected, p_value, p_adjusted, text))
    return Verdict(
        expected_fpr=expected_fpr, expected_fpr_source=source, alpha=alpha, expected_fpr_per_class=dict(per_class),
        test=(f"one-sided {'beta-binomial (conformal flag from each class reference)' if reference_sizes else 'binomial'}"
              f" per predicted class, Holm-corrected; a suspect is also flagged at least "
              f"{MIN_RATE_RATIO:g}x and {MIN_RATE_EXCESS:g} above its expected rate"),
        suspects=tuple(suspects), status="suspect" if suspects else "no suspect",
    )


def summarize(result: ScanResult, *, expected_fpr: float | None = None, alpha: float = DEFAULT_ALPHA) -> Summary:
    """Counts, flagged rate per predicted class, and the verdict."""
    s, names = result.scores, result.settings.class_names
    cal = result.settings.calibration
    expected_per_class = None
    check_rate(alpha, "alpha")
    reference, reference_sizes = True, None
    if expected_fpr is not None:
        expected_fpr = check_rate(expected_fpr, "expected benign flag rate (--expected-fpr)")
        source = "given (--expected-fpr)" + ("" if cal is not None else ": no calibration, so no class is named")
        reference = cal is not None  # an assumed rate alone is no benign reference
    elif cal is not None and result.settings.score.startswith("q"):
        # conformal p-values per predicted class: each class's benign flag rate is at most the target
        expected_fpr, source = cal.target_fpr, "calibration: per-class conformal p-values, rate at most the target"
        reference_sizes = result.settings.reference_sizes
    elif cal is not None:
        expected_fpr, source = cal.expected_fpr(), "calibration, per predicted class"
        expected_per_class = cal.expected_fpr_per_class()
    else:
        expected_fpr, source = DEFAULT_ASSUMED_FPR, "assumed: no calibration; pass --calibration"
        reference = False
    verdict, warnings = decide(s.labels, s.flagged, s.undecidable, expected_fpr=expected_fpr, source=source,
                               reference=reference, per_class=expected_per_class, alpha=alpha, class_names=names,
                               undecidable_reason=next(iter(s.undecidable_reasons.values()), ""),
                               reference_sizes=reference_sizes)
    undecidable = int(s.undecidable.sum())
    if cal is not None:
        from .calibration import unflaggable

        score = result.settings.score.replace("-", "_")
        blind = {k: v for k, v in unflaggable(cal, score).items() if np.any(s.labels == k)}
        if blind:
            first = min(blind)
            warnings.append(f"{score.replace('_', '-')} cannot flag predicted class(es) "
                            f"{', '.join(map(str, sorted(blind)))} of this scan (class {first}: {blind[first]})")
    guessed = guessed_preprocessing(result.settings.spec_sources)
    if guessed:
        warnings.append(f"preprocessing guessed: {' and '.join(guessed)} not given by a flag, spec file or the "
                        f"model's metadata (using pixel range {_range(result.settings.spec.pixel_range)}"
                        f"{'' if result.settings.spec.mean is not None else ', no normalization'}); {PROBE_HINT}")
        collapse = collapsed(s.labels)
        if collapse is not None:
            label, share = collapse
            name = _class_name(names, label)
            reason = (f"{share:.0%} of the {len(s.labels)} scored inputs are predicted as class {label}"
                      f"{f' ({name})' if name else ''} under guessed preprocessing, the sign of feeding the "
                      f"model wrong; {PROBE_HINT}")
            warnings.append(f"no suspect named: {reason}")
            verdict = verdict.withhold(reason)
    return Summary(
        inputs_found=result.n_found, scored=result.n_scored, failed=len(result.failures),
        flagged=int(s.flagged.sum()), per_class=per_class_counts(s.labels, s.flagged, names),
        verdict=verdict, seconds=result.seconds, warnings=tuple(warnings), incomplete=result.incomplete,
        undecidable=undecidable,
    )


def decide(labels: np.ndarray, flagged: np.ndarray, undecidable: np.ndarray, *, expected_fpr: float, source: str,
           reference: bool, per_class: dict[int, float] | None = None, alpha: float = DEFAULT_ALPHA,
           class_names=None, undecidable_reason: str = "",
           reference_sizes: dict[int, int] | None = None) -> tuple[Verdict, list[str]]:
    """The verdict from per-input labels, flags and undecidable marks, and its warnings.

    Undecidable inputs are left out. Most of them undecidable: "cannot judge". Without a benign
    reference (``reference=False``: no calibration, no stated rate): no class is named, since the
    class inputs drift to under the detector's queries looks like a target on any model; the
    most flagged class is mentioned as such.
    """
    labels, flagged, undecidable = np.asarray(labels), np.asarray(flagged, bool), np.asarray(undecidable, bool)
    decidable = ~undecidable
    verdict = model_verdict(labels[decidable], flagged[decidable], expected_fpr=expected_fpr, source=source,
                            per_class=per_class, alpha=alpha, class_names=class_names,
                            reference_sizes=reference_sizes)
    warnings = []
    n_undecidable = int(undecidable.sum())
    if labels.size and n_undecidable / labels.size > CANNOT_JUDGE_SHARE:
        note = (f"cannot judge: {n_undecidable} of {labels.size} scored inputs are undecidable for the detector"
                + (f" ({undecidable_reason})" if undecidable_reason else ""))
        verdict = replace(verdict.withhold(note) if verdict.suspects else verdict, status="cannot judge", note=note)
        warnings.append(note)
    elif not reference:
        most = max(per_class_counts(labels[decidable], flagged[decidable]),
                   key=lambda c: (c.flagged / c.inputs, c.inputs), default=None)
        note = NO_REFERENCE
        if most is not None and most.flagged:
            name = _class_name(class_names, most.label)
            note += (f"; most flagged: class {most.label}{f' ({name})' if name else ''}, {most.flagged} of "
                     f"{most.inputs}, which may be a target or only where inputs drift to")
        verdict = replace(verdict.withhold(note) if verdict.suspects else verdict, status="no reference", note=note)
    return replace(verdict, has_reference=reference), warnings


def _range(pixel_range: str) -> str:
    return "[0, 255]" if pixel_range == "byte" else "[0, 1]"


def guessed_preprocessing(sources: dict[str, str]) -> tuple[str, ...]:
    """The parts of the preprocessing nobody stated: ``("pixel range", "normalization")``, one
    of them, or none. Stating the pixel range (flag, spec file, metadata, or a uint8 input)
    states the whole preprocessing: a range given without mean/std means no normalization."""
    if sources.get("pixel_range", "default") != "default":
        return ()
    stated_stats = any(sources.get(k, "default") in STATED_SOURCES for k in ("mean", "std"))
    return ("pixel range",) if stated_stats else ("pixel range", "normalization")


def check_gate(summary: Summary, *, max_flagged: int | None, max_flagged_rate: float | None,
               fail_on_suspect: bool = False, allow_undecidable: bool = False) -> Gate | None:
    """The CI gate, or None when no limit is set.

    ``fail_on_suspect``: a named class fails it, and so does a verdict that cannot judge (most
    inputs undecidable: a gate that cannot see must not pass silently) unless ``allow_undecidable``.
    It needs a measured benign reference: without a calibration it is refused (ScannerError)."""
    if max_flagged is None and max_flagged_rate is None and not fail_on_suspect:
        return None
    if fail_on_suspect and not summary.verdict.has_reference:
        raise ScannerError(NEEDS_CALIBRATION)
    if max_flagged is not None:
        max_flagged = check_number(max_flagged, "--max-flagged", lo=0, integer=True)
    if max_flagged_rate is not None:
        max_flagged_rate = check_rate(max_flagged_rate, "--max-flagged-rate")
    reasons = []
    if max_flagged is not None and summary.flagged > max_flagged:
        reasons.append(f"{summary.flagged} flagged > --max-flagged {max_flagged}")
    if max_flagged_rate is not None and summary.flagged_rate > max_flagged_rate:
        reasons.append(f"flagged rate {summary.flagged_rate:.4f} > --max-flagged-rate {max_flagged_rate}")
    if fail_on_suspect and summary.verdict.suspects:
        reasons.append("--fail-on-suspect: " + "; ".join(s.text for s in summary.verdict.suspects))
    if fail_on_suspect and summary.verdict.status == "cannot judge" and not allow_undecidable:
        reasons.append(f"--fail-on-suspect: the verdict cannot judge this scan ({summary.undecidable} of "
                       f"{summary.scored} inputs undecidable for the deciding score); choose detectors that can "
                       f"judge them (--detector, --score), or pass {ALLOW_UNDECIDABLE} to let such a scan pass")
    return Gate(max_flagged, max_flagged_rate, tuple(reasons), fail_on_suspect, allow_undecidable)
