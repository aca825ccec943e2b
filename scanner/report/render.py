"""Rendering: scans, models and evaluations as table / JSON / JSONL / CSV / HTML text.

The one door through which results become text: :func:`render_scan` picks the renderer
(:mod:`scanner.report.stream` streams table/CSV/JSONL/JSON, :mod:`scanner.report.html` writes the
audit page); the shared parts live in :mod:`scanner.report.common` and are re-exported here.
Data goes to the given stream (stdout or ``--output``); nothing here prints logs or decides.
"""

from __future__ import annotations

import json
from typing import IO, TYPE_CHECKING, Any

from ..decide.text import wrap
from ..decide.verdict import Gate, Summary
from .common import (
    REPORT_SCHEMA_VERSION, Format, InspectFormat, csv_text, display_name, num_text, open_report, report_header,
    summary_lines, write_json_report,
)
from .stream import ScanWriter, Show
from ..results import ScanResult

__all__ = [  # the shared parts are re-exported: callers import every report name from here
    "REPORT_SCHEMA_VERSION", "Format", "InspectFormat", "csv_text", "display_name", "num_text", "open_report",
    "report_header", "summary_lines", "write_json_report", "render_scan", "render_model", "render_evaluation",
    "write_evaluation_json", "evaluation_lines", "ScanWriter", "Show",
]

if TYPE_CHECKING:
    from ..evaluation import Evaluation
    from ..model.loader import Model


def render_scan(result: ScanResult, summary: Summary, gate: Gate | None, fmt: Format, stream: IO[str], *,
                show=None, colour: bool = False) -> None:
    """A finished scan's report: the same text a streamed scan writes (:mod:`scanner.report.stream`)."""
    writer = ScanWriter(fmt, stream, result.settings, result.score_names, show=show or Show.all, colour=colour)
    writer.start()
    writer.add(result)
    writer.finish(result, summary, gate)


def render_model(model: "Model", fmt: InspectFormat, stream: IO[str]) -> None:
    """What ``scanner inspect`` prints."""
    text = json.dumps(model.describe(), indent=2) if fmt is InspectFormat.json else str(model)
    stream.write(text + "\n")


def render_evaluation(evaluation: "Evaluation", stream: IO[str]) -> None:
    """The paper's figures as lines of text, under 100 columns (continuation lines indented)."""
    lines = evaluation_lines(evaluation.to_dict(), evaluation.settings.detector_text)
    stream.write("\n".join(part for line in lines for part in wrap(line)) + "\n")


def write_evaluation_json(evaluation: "Evaluation", stream: IO[str]) -> None:
    json.dump(evaluation.to_dict(), stream, indent=2)
    stream.write("\n")


def evaluation_lines(doc: dict[str, Any], detectors: str = "") -> list[str]:
    p = doc["protocol"]
    lines = [
        f"model {doc['model']} on {doc['execution_provider']}; {detectors or 'scales ' + ','.join(map(str, doc.get('scales', [])))}",
        f"benign: {p['benign_found']} found, {p['benign_scored']} scored, {p['benign_kept']} kept ({p['benign_filter']})",
        f"poisoned: {p['poisoned_found']} found, {p['poisoned_scored']} scored, {p['poisoned_kept']} kept ({p['poisoned_filter']})",
    ]
    if p["benign_accuracy"] is not None:
        lines.append(f"clean accuracy on the benign set: {p['benign_accuracy']:.4f}")
    if p["attack_success_rate"] is not None:
        lines.append(f"attack success rate on the poisoned set: {p['attack_success_rate']:.4f}")
    undecidable = p.get("undecidable") or {}
    if undecidable.get("benign") or undecidable.get("poisoned"):
        lines.append(f"undecidable for the decision: {undecidable['benign']} benign, {undecidable['poisoned']} poisoned, "
                     f"{undecidable['rule']}")
    for name, m in doc["metrics"].items():
        t = m["at_threshold"]
        fixed = ", ".join(f"TPR {r['tpr']:.4f} at FPR {r['fpr']:.4f} (target {r['target_fpr']})" for r in m["tpr_at_fpr"])
        lines.append(f"{name.upper()}{' (decision)' if m.get('decision') else ''}: AUROC {m['auroc']:.4f}; at threshold {t['threshold']:.4g}: TPR {t['tpr']:.4f}, "
                     f"FPR {t['fpr']:.4f}, F1 {t['f1']:.4f}; {fixed}; best F1 {m['best_f1']['f1']:.4f} (oracle)"
                     + (f"; cannot judge {u['benign']} benign, {u['poisoned']} poisoned" if (u := m.get("undecidable"))
                        and (u["benign"] or u["poisoned"]) else ""))
    if p["failures"]:
        lines.append(f"{len(p['failures'])} input(s) could not be read, e.g. {p['failures'][0]['input']}: {p['failures'][0]['reason']}")
    return lines
