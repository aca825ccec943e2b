"""What a scan produces: per-input scores and flags, the settings that produced them, and the
books a scan fills batch by batch. Plain data, no model and no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from ._version import __version__
from .decide import text
from .decide.calibration import Calibration
from .inputs.find import InputSet
from .model.spec import Spec


@dataclass
class Scores:
    """A detector's outcome for a set of inputs, as arrays aligned on the input order.

    Attributes
    ----------
    labels : (n,) int64, the unscaled prediction.
    query_labels : (n, n_reported) int64, the prediction of each reported query (SCALE-UP: the
        label at each scale; also available as ``scaled_labels``).
    named : dict of str to (n,) float64 or None
        Every score the detector reports (SCALE-UP: ``spc``, ``nspc`` with a calibration,
        ``prob_consistency`` for models that output scores); readable as attributes.
    score_name : str, the one compared with the threshold.
    score : (n,) float64, that score.
    flagged : (n,) bool, ``score >= threshold`` and decidable.
    undecidable : (n,) bool, inputs the deciding score cannot judge (never flagged; their scores
        are kept but mean nothing); ``undecidable_reasons`` maps their row to why. A score of one
        detector cannot judge what that detector cannot; a combined one (``q_fisher``,
        ``q_profile``) only what none of its detectors can (the others decide without it).
    undecidable_by : dict of str to (n,) bool, for each detector that can say so, the inputs it
        cannot judge.
    """

    labels: np.ndarray
    query_labels: np.ndarray
    named: dict[str, np.ndarray | None]
    score_name: str
    score: np.ndarray
    flagged: np.ndarray
    query_labels_key: str = "query_labels"
    undecidable: np.ndarray | None = None
    undecidable_reasons: dict[int, str] = field(default_factory=dict)
    undecidable_by: dict[str, np.ndarray] = field(default_factory=dict)
    #: (n, F) response profiles, when the scan collected them (``scanner calibrate`` does)
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.undecidable is None:
            self.undecidable = np.zeros(len(self.labels), dtype=bool)

    def __repr__(self) -> str:
        names = ", ".join(k for k, v in self.named.items() if v is not None)
        return (f"<Scores of {len(self.labels)} inputs ({names}): {int(np.count_nonzero(self.flagged))} flagged by "
                f"{self.score_name}, {int(np.count_nonzero(self.undecidable))} undecidable>")

    def __getattr__(self, name: str):
        named = self.__dict__.get("named", {})
        if name in named:
            return named[name]
        if name == self.__dict__.get("query_labels_key"):
            return self.__dict__["query_labels"]
        raise AttributeError(f"{type(self).__name__} has no score {name!r}")


@dataclass(frozen=True)
class ScanSettings:
    """What produced the numbers: model, preprocessing, provider, detector, threshold, calibration."""

    model: str
    model_sha256: str
    spec: Spec
    spec_sources: dict[str, str]
    output: str
    batch_mode: str
    batch_note: str
    execution_provider: str
    detector: dict[str, Any]
    detector_text: str
    query_names: tuple[str, ...]
    threshold: float
    score: str
    calibration: Calibration | None = None
    scanner_version: str = __version__
    #: the decision's reference size per predicted class (-1: pooled) when it is a calibrated
    #: q_ score: the verdict's null distribution (not part of the JSON report)
    reference_sizes: dict[int, int] | None = None

    @property
    def class_names(self) -> tuple[str, ...] | None:
        return self.spec.class_names

    def class_name(self, label: int) -> str | None:
        names = self.spec.class_names
        return names[label] if names and 0 <= label < len(names) else None

    def lines(self) -> list[str]:
        """The summary's first lines: the model, the detectors and the flag, the batch plan if noted."""
        detectors = [f"{self.detector_text}; flagged when {self.score.upper()} >= {self.threshold:.4g}"]
        if len(detectors[0]) > text.WIDTH:  # one detector a line, the decision with the last
            parts = detectors[0].split(" + ")
            detectors = [parts[0]] + ["  + " + part for part in parts[1:]]
        return [f"model {self.model} (sha256 {self.model_sha256[:12]}) on {self.execution_provider}", *detectors,
                *([f"batch: {self.batch_note}"] if self.batch_note else [])]

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (report schema version 1; the key order is part of it)."""
        cal = self.calibration
        return {
            "scanner_version": self.scanner_version,
            "model": self.model,
            "model_sha256": self.model_sha256,
            "spec": self.spec.to_dict(),
            "spec_sources": dict(self.spec_sources),
            "output": self.output,
            "batch_mode": self.batch_mode,
            "batch_note": self.batch_note,
            "execution_provider": self.execution_provider,
            **self.detector,
            "threshold": self.threshold,
            "score": self.score,
            "calibration": None if cal is None else {
                "n_samples": cal.n_samples, "target_fpr": cal.target_fpr,
                "achieved_fpr": cal.achieved_fpr, "threshold": cal.threshold,
                "expected_fpr": cal.expected_fpr(),
                "expected_fpr_per_class": {str(k): v for k, v in cal.expected_fpr_per_class().items()},
                "detectors": list(cal.detector_names), "decision": cal.decision,
            },
            "class_names": list(self.spec.class_names) if self.spec.class_names else None,
        }


@dataclass
class ScanResult:
    """Every input of a scan: scored ones in ``scores`` (rows = ``indices``), the rest in ``failures``."""

    inputs: InputSet
    indices: np.ndarray
    scores: Scores
    failures: list[tuple[int, str]]
    settings: ScanSettings
    seconds: float
    score_names: tuple[str, ...] = field(default=())
    incomplete: str | None = None  # why the scan stopped before every input was reached

    def __str__(self) -> str:
        """What ``scanner scan`` prints under its table: settings, counts, verdict (no gate)."""
        return text.text([(line, None) for line in self.settings.lines()] + text.summary_lines(self.summary()))

    def __repr__(self) -> str:
        flagged = int(np.count_nonzero(self.scores.flagged))
        return (f"<ScanResult of {self.settings.model}: {self.n_found} inputs, {self.n_scored} scored, "
                f"{len(self.failures)} failed, {flagged} flagged by {self.settings.score}>")

    @property
    def n_found(self) -> int:
        return len(self.inputs)

    @property
    def n_scored(self) -> int:
        return len(self.indices)

    def records(self) -> Iterator[dict[str, Any]]:
        """One dict per scored input, in input order, with stable field names."""
        s, n = self.scores, len(self.indices)
        keys = list(self.settings.query_names)
        names = self.settings.class_names
        # plain Python values once, not a numpy scalar conversion per field per row
        score_columns = [_column(s.named.get(name), n) for name in self.score_names]
        columns = zip(self.inputs.names(self.indices), s.labels.tolist(), zip(*score_columns) if score_columns
                      else [()] * n, s.query_labels.tolist(), s.flagged.tolist())
        reasons = s.undecidable_reasons
        for row, (name, label, values, queries, flagged) in enumerate(columns):
            record = {
                "input": name,
                "predicted_label": label,
                "predicted_class": names[label] if names and 0 <= label < len(names) else None,
                **dict(zip(self.score_names, values)),
                s.query_labels_key: dict(zip(keys, queries)),
                "flagged": flagged,
                "undecidable": reasons.get(row) if reasons else None,
            }
            yield record

    def failure_records(self) -> list[dict[str, str]]:
        return [{"input": self.inputs.name(i), "reason": reason} for i, reason in self.failures]

    # -- for notebooks: the decisions and a data frame -------------------------------------------
    def summary(self, *, expected_fpr: float | None = None, alpha: float | None = None):
        """Counts, flagged rate per predicted class and the verdict: a typed
        :class:`~scanner.decide.verdict.Summary` (what :func:`scanner.summarize` returns)."""
        from .decide.verdict import DEFAULT_ALPHA, summarize

        return summarize(self, expected_fpr=expected_fpr, alpha=DEFAULT_ALPHA if alpha is None else alpha)

    @property
    def verdict(self):
        """The model-level :class:`~scanner.decide.verdict.Verdict` (default expected rate and alpha)."""
        return self.summary().verdict

    def gate(self, *, max_flagged: int | None = None, max_flagged_rate: float | None = None,
             expected_fpr: float | None = None, fail_on_suspect: bool = False, allow_undecidable: bool = False):
        """The CI gate as a :class:`~scanner.decide.verdict.Gate` (truthy when passed), or None without a limit
        (``fail_on_suspect`` needs a calibration, see :func:`~scanner.decide.verdict.check_gate`)."""
        from .decide.verdict import check_gate

        return check_gate(self.summary(expected_fpr=expected_fpr), max_flagged=max_flagged,
                          max_flagged_rate=max_flagged_rate, fail_on_suspect=fail_on_suspect,
                          allow_undecidable=allow_undecidable)

    def to_pandas(self):
        """One row per input, in input order, with the CSV report's columns (``input``, ``status``
        scored/undecidable/failed, ``predicted_label``, ``predicted_class``, every score, ``flagged``,
        ``label_x<n>`` per query, ``reason``), typed (nullable integers and booleans). Needs pandas."""
        try:
            import pandas as pd
        except ImportError:
            from .errors import ScannerError

            raise ScannerError('to_pandas() needs pandas: pip install pandas (in a checkout of the scanner: '
                               'pip install -e ".[pandas]")') from None
        columns = csv_columns(self.settings, self.score_names)
        queries = [f"label_x{n}" for n in self.settings.query_names]
        data: dict[str, list] = {c: [] for c in columns}
        for _, kind, r in rows(self):
            scored = kind == "result"
            undecidable = r.get("undecidable")
            values = {"input": r["input"],
                      "status": ("undecidable" if undecidable else "scored") if scored else "failed",
                      "predicted_label": r.get("predicted_label"), "predicted_class": r.get("predicted_class"),
                      "flagged": r.get("flagged"), "reason": undecidable if scored else r["reason"],
                      **{s: r.get(s) for s in self.score_names}}
            if scored:
                values.update(zip(queries, r[self.scores.query_labels_key].values()))
            for c in columns:
                data[c].append(values.get(c))
        frame = pd.DataFrame(data)
        for c in ["predicted_label", *queries]:
            frame[c] = frame[c].astype("Int64")
        frame["flagged"] = frame["flagged"].astype("boolean")
        for s in self.score_names:
            frame[s] = frame[s].astype("float64")
        return frame


def _column(values: np.ndarray | None, n: int) -> list:
    return [None] * n if values is None else values.tolist()


def rows(result: ScanResult) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """``(input index, "result" | "failure", record)`` in input order."""
    failures = iter(zip((i for i, _ in result.failures), result.failure_records()))
    pending = next(failures, None)
    for index, record in zip(result.indices.tolist(), result.records()):
        while pending is not None and pending[0] < index:
            yield pending[0], "failure", pending[1]
            pending = next(failures, None)
        yield index, "result", record
    while pending is not None:
        yield pending[0], "failure", pending[1]
        pending = next(failures, None)


def csv_columns(settings: ScanSettings, score_names) -> list[str]:
    return (["input", "status", "predicted_label", "predicted_class", *score_names, "flagged"]
            + [f"label_x{n}" for n in settings.query_names] + ["reason"])


NOT_FINITE = "the model's output is NaN or infinite for this input or one of its queries"


class Tally:
    """Per-input detector outcomes and failures of one scan, gathered in any order.

    The local loop fills it batch by batch; a distributed engine fills it from its shards. Both
    then call :meth:`Scanner.result`, so the flags, summary and verdict come from the same code.
    """

    def __init__(self, total: int, n_queries: int) -> None:
        self.labels = np.empty(total, dtype=np.int64)
        self.queries = np.empty((total, n_queries), dtype=np.int64)
        self.raw: dict[str, np.ndarray] = {}
        self.scored = np.zeros(total, dtype=bool)
        #: detector name -> (total,) bool: the inputs it cannot judge; and why (one line each)
        self.undecidable_by: dict[str, np.ndarray] = {}
        self.why: dict[str, str] = {}
        self.failures: list[tuple[int, str]] = []
        self.features: np.ndarray | None = None  # (total, F) response profiles, when collected

    def add(self, indices: np.ndarray, out) -> None:
        """Record a :class:`~scanner.detectors.DetectorScores` for the inputs ``indices``; inputs
        it marks invalid are recorded as failed."""
        if out.invalid is not None and np.any(out.invalid):
            bad = np.asarray(out.invalid, dtype=bool)
            self.fail([(int(i), NOT_FINITE) for i in np.asarray(indices)[bad]])
            indices, out = np.asarray(indices)[~bad], out.subset(~bad)
        self.labels[indices], self.queries[indices] = out.labels, out.query_labels
        for name, values in out.scores.items():
            if values is not None:
                self.raw.setdefault(name, np.full(len(self.labels), np.nan))[indices] = values
        self.scored[indices] = True
        if out.features is not None:
            if self.features is None:
                self.features = np.full((len(self.labels), out.features.shape[1]), np.nan)
            self.features[indices] = out.features
        for name, mask in out.undecidable_by.items():
            self.undecidable_by.setdefault(name, np.zeros(len(self.labels), dtype=bool))[indices] = mask
            if name in out.undecidable_why:
                self.why[name] = out.undecidable_why[name]

    def fail(self, failures) -> None:
        """Record ``(input index, reason)`` pairs."""
        self.failures.extend(failures)
