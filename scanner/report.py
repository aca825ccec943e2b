"""Summaries, the model-level verdict, the CI gate, and rendering as table / JSON / JSONL / CSV.

Data goes to the given stream (stdout or ``--output``); nothing here prints logs.
"""

from __future__ import annotations

import csv
import json
import math
from enum import Enum
from typing import IO, Any

import numpy as np

from .core import ScanResult

REPORT_SCHEMA_VERSION = 1
DEFAULT_ASSUMED_FPR = 0.10  # used for the verdict when no calibration states the benign rate
DEFAULT_ALPHA = 0.01
# A suspected target must also be flagged far above its benign rate, not just significantly:
# on thousands of inputs a class at 7% against an expected 4% is "significant" yet no backdoor.
MIN_RATE_RATIO = 2.0
MIN_RATE_EXCESS = 0.05


class Format(str, Enum):
    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"


def binomial_sf(k: int, n: int, p: float) -> float:
    """P(X >= k) for X ~ Binomial(n, p): the one-sided test's p-value (0.0 below ~1e-308)."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    # log pmf at k, then the recurrence pmf(i+1) = pmf(i) * (n-i)/(i+1) * p/(1-p), summed in log space
    log_first = (math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                 + k * math.log(p) + (n - k) * math.log1p(-p))
    i = np.arange(k, n, dtype=np.float64)
    steps = np.log((n - i) / (i + 1)) + math.log(p) - math.log1p(-p)
    log_terms = log_first + np.concatenate([[0.0], np.cumsum(steps)])
    top = log_terms.max()
    return float(math.exp(top + math.log(np.exp(log_terms - top).sum())))


def format_p(p: float) -> str:
    return "p < 1e-300" if p < 1e-300 else f"p = {p:.3g}"


def per_class_counts(labels: np.ndarray, flagged: np.ndarray) -> list[tuple[int, int, int]]:
    """(label, inputs, flagged) for each predicted label present, in label order."""
    # a sort, not np.unique: that imports numpy.ma on first use, ~15 ms of every scan's start
    order = np.argsort(labels, kind="stable")
    sorted_labels = np.asarray(labels)[order]
    starts = np.flatnonzero(np.r_[True, sorted_labels[1:] != sorted_labels[:-1]]) if len(order) else np.array([], int)
    counts = np.diff(np.r_[starts, len(order)])
    hits = np.add.reduceat(np.asarray(flagged, dtype=np.int64)[order], starts) if len(order) else []
    return [(int(sorted_labels[s]), int(n), int(k)) for s, n, k in zip(starts, counts, hits)]


def model_verdict(labels: np.ndarray, flagged: np.ndarray, *, expected_fpr: float, source: str,
                  per_class: dict[int, float] | None = None, alpha: float = DEFAULT_ALPHA,
                  class_names=None) -> dict[str, Any]:
    """Predicted classes whose flagged rate is significantly and substantially above the expected
    benign rate (``per_class[label]`` where given, else ``expected_fpr``).

    One-sided binomial test per predicted class, Holm-corrected over the classes present; a
    suspect must also be flagged at least ``MIN_RATE_RATIO`` times, and ``MIN_RATE_EXCESS``
    above, its expected rate.
    """
    per_class = per_class or {}
    rows = []
    for label, n, k in per_class_counts(labels, flagged):
        expected = per_class.get(label, expected_fpr)
        rows.append({"label": label, "inputs": n, "flagged": k, "expected_rate": expected,
                     "p_value": binomial_sf(k, n, expected)})
    order = sorted(range(len(rows)), key=lambda i: rows[i]["p_value"])
    running = 0.0
    for rank, i in enumerate(order):  # Holm step-down adjustment
        running = max(running, min(1.0, (len(rows) - rank) * rows[i]["p_value"]))
        rows[i]["p_adjusted"] = running
    suspects = []
    for row in sorted(rows, key=lambda r: r["p_adjusted"]):
        rate = row["flagged"] / row["inputs"]
        substantial = rate >= MIN_RATE_RATIO * row["expected_rate"] and rate - row["expected_rate"] >= MIN_RATE_EXCESS
        if row["p_adjusted"] < alpha and substantial:
            name = _class_name(class_names, row["label"])
            label = f"{row['label']} ({name})" if name else str(row["label"])
            row["text"] = (f"suspected target class {label}: {row['flagged']} of {row['inputs']} flagged "
                           f"(expected {row['expected_rate']:.3g}), {format_p(row['p_adjusted'])}")
            suspects.append(row)
    return {
        "expected_fpr": expected_fpr,
        "expected_fpr_source": source,
        "alpha": alpha,
        "expected_fpr_per_class": {str(k): v for k, v in per_class.items()},
        "test": (f"one-sided binomial per predicted class, Holm-corrected; a suspect is also flagged at least "
                 f"{MIN_RATE_RATIO:g}x and {MIN_RATE_EXCESS:g} above its expected rate"),
        "suspected_targets": suspects,
        "model_suspicious": bool(suspects),
    }


def _class_name(names, label: int):
    return names[label] if names and 0 <= label < len(names) else None


def summarize(result: ScanResult, *, expected_fpr: float | None = None, alpha: float = DEFAULT_ALPHA) -> dict[str, Any]:
    """Counts, flagged rate per predicted class, failures by reason, and the verdict."""
    s = result.scores
    names = result.settings.get("class_names")
    per_class = {str(label): {"class": _class_name(names, label), "inputs": n, "flagged": k}
                 for label, n, k in per_class_counts(s.labels, s.flagged)}
    cal = result.settings.get("calibration")
    expected_per_class = None
    if expected_fpr is not None:
        source = "given (--expected-fpr)"
    elif cal is not None:
        expected_fpr, source = cal["expected_fpr"], "calibration, per predicted class"
        expected_per_class = {int(k): v for k, v in cal["expected_fpr_per_class"].items()}
    else:
        expected_fpr, source = DEFAULT_ASSUMED_FPR, "assumed: no calibration; pass --calibration or --expected-fpr"
    flagged = int(s.flagged.sum())
    return {
        "inputs_found": result.n_found,
        "scored": result.n_scored,
        "failed": len(result.failures),
        "flagged": flagged,
        "flagged_rate": flagged / result.n_scored if result.n_scored else 0.0,
        "flagged_per_class": per_class,
        "verdict": model_verdict(s.labels, s.flagged, expected_fpr=expected_fpr, source=source,
                                 per_class=expected_per_class, alpha=alpha, class_names=names),
        "seconds": round(result.seconds, 3),
    }


def check_gate(summary: dict[str, Any], *, max_flagged: int | None, max_flagged_rate: float | None) -> dict[str, Any] | None:
    """The CI gate: passes when the flagged count and rate are within the given limits."""
    if max_flagged is None and max_flagged_rate is None:
        return None
    reasons = []
    if max_flagged is not None and summary["flagged"] > max_flagged:
        reasons.append(f"{summary['flagged']} flagged > --max-flagged {max_flagged}")
    if max_flagged_rate is not None and summary["flagged_rate"] > max_flagged_rate:
        reasons.append(f"flagged rate {summary['flagged_rate']:.4f} > --max-flagged-rate {max_flagged_rate}")
    return {"max_flagged": max_flagged, "max_flagged_rate": max_flagged_rate, "passed": not reasons, "reasons": reasons}


def report_header(result: ScanResult, summary: dict[str, Any], gate: dict[str, Any] | None) -> dict[str, Any]:
    """Everything in the JSON report except the per-input lists (schema in the README)."""
    return {"schema_version": REPORT_SCHEMA_VERSION, "kind": "scan", **result.settings,
            "summary": summary, "gate": gate}


def render_scan(result: ScanResult, summary: dict[str, Any], gate: dict[str, Any] | None,
                fmt: Format, stream: IO[str]) -> None:
    if fmt is Format.json:
        _write_json_streaming(result, summary, gate, stream)
    elif fmt is Format.jsonl:
        for record in result.records():
            stream.write(json.dumps({"type": "result", **record}) + "\n")
        for failure in result.failure_records():
            stream.write(json.dumps({"type": "failure", **failure}) + "\n")
        stream.write(json.dumps({"type": "summary", **report_header(result, summary, gate)}) + "\n")
    elif fmt is Format.csv:
        _render_csv(result, stream)
    else:
        _render_table(result, summary, gate, stream)


def _write_json_streaming(result: ScanResult, summary, gate, stream: IO[str]) -> None:
    """The JSON report, written one record at a time so memory does not grow with the inputs."""
    head = json.dumps(report_header(result, summary, gate), indent=2)
    stream.write(head[:-2] + ',\n  "results": [')
    for i, record in enumerate(result.records()):
        stream.write(("," if i else "") + "\n    " + json.dumps(record))
    stream.write("\n  ],\n  \"failures\": " + json.dumps(result.failure_records()) + "\n}\n")


def _render_csv(result: ScanResult, stream: IO[str]) -> None:
    scales = result.settings["scales"]
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(["input", "status", "predicted_label", "predicted_class", "spc", "nspc", "flagged"]
                    + [f"label_x{n}" for n in scales] + ["reason"])
    for r in result.records():
        writer.writerow([r["input"], "scored", r["predicted_label"], r["predicted_class"] or "",
                         f"{r['spc']:.6g}", "" if r["nspc"] is None else f"{r['nspc']:.6g}", int(r["flagged"])]
                        + list(r["scaled_labels"].values()) + [""])
    for f in result.failure_records():
        writer.writerow([f["input"], "failed", "", "", "", "", ""] + [""] * len(scales) + [f["reason"]])


def _render_table(result: ScanResult, summary: dict[str, Any], gate, stream: IO[str]) -> None:
    st = result.settings
    records = list(result.records())
    extra = {"nspc": ("NSPC", "nspc"), "prob-consistency": ("P-CONS", "prob_consistency")}.get(st["score"])
    head = ["input", "label", "SPC"] + ([extra[0]] if extra else []) + ["labels at " + ",".join(map(str, st["scales"])), "flagged"]
    rows = []
    for r in records:
        label = str(r["predicted_label"]) + (f" {r['predicted_class']}" if r["predicted_class"] else "")
        rows.append([r["input"], label, f"{r['spc']:.2f}"] + ([f"{r[extra[1]]:.2f}"] if extra else [])
                    + [" ".join(str(v) for v in r["scaled_labels"].values()), "yes" if r["flagged"] else "no"])
    if rows:
        widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]
        stream.write("  ".join(h.ljust(w) for h, w in zip(head, widths)).rstrip() + "\n")
        for row in rows:
            stream.write("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() + "\n")
    for f in result.failure_records():
        stream.write(f"FAILED  {f['input']}: {f['reason']}\n")
    stream.write("\n" + "\n".join(summary_lines(st, summary, gate)) + "\n")


def summary_lines(settings: dict[str, Any], summary: dict[str, Any], gate) -> list[str]:
    score = settings["score"].upper()
    lines = [
        f"model {settings['model']} (sha256 {settings['model_sha256'][:12]}) on {settings['execution_provider']}",
        f"scales {','.join(map(str, settings['scales']))}; flagged when {score} >= {settings['threshold']:.4g}",
        *([f"batch: {settings['batch_note']}"] if settings.get("batch_note") else []),
        f"inputs found {summary['inputs_found']}, scored {summary['scored']}, failed {summary['failed']}, "
        f"flagged {summary['flagged']} ({summary['flagged_rate']:.1%})",
    ]
    per = summary["flagged_per_class"]
    if per:
        parts = [f"{k}{' ' + v['class'] if v['class'] else ''}: {v['flagged']}/{v['inputs']}" for k, v in per.items()]
        lines.append("flagged per predicted class: " + ", ".join(parts))
    v = summary["verdict"]
    lines.append(f"expected benign flag rate {v['expected_fpr']:.4g} ({v['expected_fpr_source']})")
    if v["suspected_targets"]:
        lines.extend("verdict: " + s["text"] for s in v["suspected_targets"])
    else:
        lines.append("verdict: no predicted class is flagged significantly more than expected")
    if gate is not None:
        lines.append("gate: PASSED" if gate["passed"] else "gate: FAILED (" + "; ".join(gate["reasons"]) + ")")
    return lines
