"""The HTML audit report (``scanner scan --format html -o report.html``): one self-contained file.

No network at view time and no script: inline CSS, inline SVG charts, images as ``data:`` URIs.
Its title says what decided (the deciding score and the detectors). It holds the verdict and the
gate, the flagged rate of each predicted class against its expected rate, a histogram of each score
(the deciding one first; a threshold line on it and on every calibrated score), the model and
settings (the preprocessing as a table with where each field came from), the failures, and a
gallery of the most suspicious inputs (capped; :mod:`.gallery`): by the deciding score, highest
first; ties by :func:`tie_break`, then input order. Each input is shown beside a few queries of
every detector that ran, as the model saw them (SCALE-UP's amplified copies ``clip(n * x, 0, 1)``
with the label at each scale, STRIP's blends, TeCo's corruptions, the transplanted regions), so an
auditor sees what the trigger survives. Its size does not grow with the number of inputs beyond
the per-class chart and the failure list (both capped).
"""

from __future__ import annotations

import html
import math
from typing import IO, Any

import numpy as np
from pathlib import Path

from ..decide.verdict import Gate, Summary
from .common import display_name
from .gallery import gallery as _gallery, tie_break  # noqa: F401 - its documented home
from ..results import ScanResult

GALLERY = 24  # inputs in the gallery at most
MAX_CLASSES = 60  # classes in the per-class chart at most (the highest flagged rates)
MAX_FAILURES = 50
BINS = 20

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1100px;
color:#1d2330;background:#fff;padding:0 16px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #dde2ea;padding-bottom:4px}
table{border-collapse:collapse}td,th{padding:3px 10px 3px 0;text-align:left;vertical-align:top}
th{color:#5b6475;font-weight:600}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12.5px}
.badge{display:inline-block;padding:4px 10px;border-radius:4px;font-weight:600;margin:4px 8px 4px 0}
.bad{background:#fde2e1;color:#a4161a}.good{background:#dff3e4;color:#1b6e35}.warn{background:#fff3cd;color:#7a5b00}
.muted{color:#6b7385}.card{border:1px solid #dde2ea;border-radius:6px;padding:8px;margin:0 0 10px}
.row{display:flex;gap:6px;align-items:flex-end;flex-wrap:wrap}.cell{text-align:center;font-size:12px}
.cell img{display:block;image-rendering:pixelated;width:80px;height:80px;object-fit:contain;background:#f3f4f7;
border:1px solid #dde2ea}.det .cell img{width:64px;height:64px}.dname{font-size:12px;color:#5b6475;margin:6px 0 2px}
.same{color:#a4161a;font-weight:600}.name{font-size:12.5px;margin-bottom:4px;word-break:break-all}
svg text{font:11px system-ui,sans-serif;fill:#1d2330}
"""


def write_html(result: ScanResult, summary: Summary, gate: Gate | None, stream: IO[str], *,
               gallery: int = GALLERY) -> None:
    """Write the audit report of a finished scan to ``stream``."""
    st = result.settings
    out = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
           "<meta name='viewport' content='width=device-width,initial-scale=1'><link rel='icon' href='data:,'>",
           f"<title>Backdoor-input scan, {_e(title(st))}: {_e(display_name(st.model))}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Backdoor-input scan: {_e(title(st))}</h1><div class='muted mono'>{_e(display_name(st.model))} "
           f"(sha256 {st.model_sha256[:16]}) &middot; scanner {st.scanner_version}</div>"]
    out.append("<h2>Verdict</h2>" + _verdict(summary, gate))
    out.append("<h2>Flagged rate per predicted class</h2>" + _class_chart(summary))
    out.append("<h2>Scores</h2>" + _histograms(result))
    out.append("<h2>Model and settings</h2>" + _settings(result, summary))
    out.append(f"<h2>Most suspicious inputs</h2>{_gallery(result, gallery)}")
    if result.failures:
        out.append("<h2>Failed inputs</h2>" + _failures(result))
    out.append("</body></html>\n")
    stream.write("\n".join(out))


def title(settings) -> str:
    """What decided, for the title: ``decided by Q-PROFILE (scaleup + strip + teco)``."""
    names = [d["name"] for d in settings.detector.get("detectors", [])] or ["scaleup"]
    return f"decided by {settings.score.upper()} ({' + '.join(names)})"


def thresholds(settings, names) -> dict[str, float]:
    """The flag's threshold on each score that has one: the deciding score's, and with a
    calibration every calibrated ``q_`` score's (p-value at most its FPR) and NSPC's."""
    out = {}
    cal = settings.calibration
    if cal is not None:
        out["nspc"] = float(cal.threshold)
        out.update({name: 1.0 - float(cal.target_fpr) for name in names if name.startswith("q_")})
    out[settings.score.replace("-", "_")] = float(settings.threshold)
    return out


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


# -- sections ------------------------------------------------------------------------------------
def _verdict(summary: Summary, gate: Gate | None) -> str:
    v = summary.verdict
    parts = []
    if v.suspects:
        parts += [f"<div class='badge bad'>{_e(s.text)}</div>" for s in v.suspects]
    elif v.withheld:
        parts.append(f"<div class='badge warn'>no suspect named: {_e(v.withheld)}</div>")
    else:
        parts.append("<div class='badge good'>no predicted class is flagged significantly more than expected</div>")
    if gate is not None:
        parts.append("<div class='badge good'>gate: PASSED</div>" if gate.passed else
                     f"<div class='badge bad'>gate: FAILED ({_e('; '.join(gate.reasons))})</div>")
    if summary.incomplete:
        parts.append(f"<div class='badge warn'>INCOMPLETE: {_e(summary.incomplete)}</div>")
    parts += [f"<div class='badge warn'>Warning: {_e(w)}</div>" for w in summary.warnings]
    parts.append(f"<p>{summary.inputs_found:,} inputs found, {summary.scored:,} scored, {summary.failed:,} failed, "
                 f"<b>{summary.flagged:,} flagged ({summary.flagged_rate:.1%})</b>. Expected benign flag rate "
                 f"{v.expected_fpr:.4g} ({_e(v.expected_fpr_source)}); {_e(v.test)}, alpha {v.alpha:g}.</p>")
    return "\n".join(parts)


def _settings(result: ScanResult, summary: Summary) -> str:
    st = result.settings
    cal = st.calibration
    rows = [
        ("model", st.model), ("sha256", st.model_sha256), ("execution provider", st.execution_provider),
        ("output", st.output), ("batch", f"{st.batch_mode}{': ' + st.batch_note if st.batch_note else ''}"),
        ("detector", st.detector_text), ("decision", f"flagged when {st.score.upper()} >= {st.threshold:.4g}"),
        ("calibration", "none (data-free)" if cal is None else
         f"{cal.n_samples} benign inputs, target FPR {cal.target_fpr}, achieved {cal.achieved_fpr:.4f}"),
        ("scan time", f"{summary.seconds:.2f} s"),
    ]
    table = "<table>" + "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
    return table + "<h3>Preprocessing</h3>" + _preprocessing(st)


def _preprocessing(st) -> str:
    """The spec as a table: each field, its value, and where it came from."""
    spec = st.spec.to_dict()
    rows = []
    for key, value in spec.items():
        if key == "schema_version" or value is None:
            continue
        if key == "class_names":
            value = ", ".join(value[:12]) + (f" ... ({len(value)})" if len(value) > 12 else "")
        elif isinstance(value, (list, tuple)):
            value = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
        rows.append(f"<tr><th>{_e(key)}</th><td class='mono'>{_e(value)}</td>"
                    f"<td class='muted'>{_e(st.spec_sources.get(key, 'default'))}</td></tr>")
    return "<table class='prep'><tr><th>field</th><th>value</th><th>from</th></tr>" + "".join(rows) + "</table>"


def _class_chart(summary: Summary) -> str:
    v = summary.verdict
    classes = list(summary.per_class)
    if not classes:
        return "<p class='muted'>no input was scored</p>"
    note = ""
    if len(classes) > MAX_CLASSES:
        note = f"<p class='muted'>the {MAX_CLASSES} classes with the highest flagged rates of {len(classes)}</p>"
        classes = sorted(sorted(classes, key=lambda c: -c.flagged / c.inputs)[:MAX_CLASSES], key=lambda c: c.label)
    suspects = {s.label for s in v.suspects}
    left, width, row = 170, 520, 18
    height = row * len(classes) + 30
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{left + width + 150}' height='{height}' "
             f"role='img' aria-label='flagged rate per predicted class'>"]
    for k in range(0, 11, 2):
        x = left + width * k / 10
        parts.append(f"<line x1='{x:.1f}' y1='0' x2='{x:.1f}' y2='{height - 24}' stroke='#eceff4'/>"
                     f"<text x='{x:.1f}' y='{height - 10}' text-anchor='middle'>{k * 10}%</text>")
    for i, c in enumerate(classes):
        y = i * row + 2
        rate = c.flagged / c.inputs
        expected = v.expected_fpr_per_class.get(c.label, v.expected_fpr)
        colour = "#d9363e" if c.label in suspects else "#5b8def"
        name = f"{c.label} {c.class_name}" if c.class_name else str(c.label)
        parts.append(f"<text x='{left - 6}' y='{y + 12}' text-anchor='end'>{_e(name[:26])}</text>"
                     f"<rect x='{left}' y='{y + 2}' width='{max(rate * width, 0.5):.1f}' height='{row - 6}' fill='{colour}'/>"
                     f"<line x1='{left + expected * width:.1f}' y1='{y}' x2='{left + expected * width:.1f}' "
                     f"y2='{y + row - 2}' stroke='#1d2330' stroke-width='2'/>"
                     f"<text x='{left + width + 8}' y='{y + 12}'>{c.flagged}/{c.inputs} ({rate:.0%})</text>")
    parts.append("</svg>")
    legend = ("<p class='muted'>bars: flagged rate of the inputs predicted as each class (red: suspected target); "
              "black tick: the expected benign flag rate of that class.</p>")
    return note + "".join(parts) + legend


def _histograms(result: ScanResult) -> str:
    st, s = result.settings, result.scores
    shown = []
    lines = thresholds(st, result.score_names)
    deciding = st.score.replace("-", "_")
    for name in sorted(result.score_names, key=lambda n: n != deciding):  # the deciding score first
        values = s.named.get(name)
        if values is None or len(values) == 0:
            continue
        values = np.asarray(values, dtype=np.float64)
        values = values[np.isfinite(values)]
        if len(values) == 0:
            continue
        shown.append(_histogram(name + (" (decision)" if name == deciding else ""), values, lines.get(name)))
    return "<div class='row'>" + "".join(shown) + "</div>" if shown else "<p class='muted'>no scores</p>"


def _histogram(name: str, values: np.ndarray, threshold: float | None) -> str:
    lo, hi = float(values.min()), float(values.max())
    base = name.split(" (")[0]
    if base.endswith(("spc", "prob_consistency")) and not base.endswith("nspc") or base.startswith("q_"):
        lo, hi = 0.0, 1.0
    if threshold is not None:
        lo, hi = min(lo, threshold), max(hi, threshold)
    if hi <= lo:
        hi = lo + 1.0
    counts, edges = np.histogram(values, bins=BINS, range=(lo, hi))
    w, h, pad = 250, 120, 28
    top = max(int(counts.max()), 1)
    bar = w / BINS
    parts = [f"<div class='card'><b>{_e(name.upper())}</b> <span class='muted'>({len(values):,} inputs)</span><br>"
             f"<svg xmlns='http://www.w3.org/2000/svg' width='{w + 2 * pad}' height='{h + pad}' role='img' "
             f"aria-label='{_e(name)} histogram'>"]
    for i, n in enumerate(counts.tolist()):
        bh = h * math.sqrt(n / top) if n else 0  # square-root scale: the small bins stay visible
        parts.append(f"<rect x='{pad + i * bar + 1:.1f}' y='{h - bh:.1f}' width='{bar - 2:.1f}' height='{bh:.1f}' "
                     f"fill='#5b8def'><title>{edges[i]:.3g} to {edges[i + 1]:.3g}: {n}</title></rect>")
    parts.append(f"<line x1='{pad}' y1='{h}' x2='{pad + w}' y2='{h}' stroke='#1d2330'/>"
                 f"<text x='{pad - 4}' y='12' text-anchor='end'>{top}</text>")
    for k in range(5):  # five ticks on the axis
        x, value = pad + w * k / 4, lo + (hi - lo) * k / 4
        parts.append(f"<line x1='{x:.1f}' y1='{h}' x2='{x:.1f}' y2='{h + 4}' stroke='#1d2330'/>"
                     f"<text x='{x:.1f}' y='{h + 16}' text-anchor='middle'>{value:.3g}</text>")
    if threshold is not None:
        x = pad + w * (threshold - lo) / (hi - lo)
        right = x > pad + w * 0.6  # the label on the side with room, never clipped
        parts.append(f"<line x1='{x:.1f}' y1='0' x2='{x:.1f}' y2='{h}' stroke='#d9363e' stroke-width='2' "
                     f"stroke-dasharray='4 3'/><text x='{x - 4 if right else x + 4:.1f}' y='12' fill='#d9363e' "
                     f"text-anchor='{'end' if right else 'start'}'>threshold {threshold:.3g}</text>")
    parts.append("</svg><div class='muted'>counts on a square-root scale</div></div>")
    return "".join(parts)


def _failures(result: ScanResult) -> str:

    records = result.failure_records()
    rows = "".join(f"<tr><td class='mono'>{_e(display_name(f['input']))}</td><td>{_e(display_name(f['reason']))}</td></tr>"
                   for f in records[:MAX_FAILURES])
    more = f"<p class='muted'>and {len(records) - MAX_FAILURES:,} more (all in the JSON/CSV report)</p>" \
        if len(records) > MAX_FAILURES else ""
    return f"<table>{rows}</table>{more}"


# -- scanner evaluate --html ---------------------------------------------------------------------
def write_evaluation_html(evaluation, stream: IO[str]) -> None:
    """The paper's protocol as one self-contained page: settings, protocol counts, every metric,
    the SPC ROC curve and the SPC of the kept benign and poisoned inputs."""
    from sklearn.metrics import roc_curve

    doc = evaluation.to_dict()
    p = doc["protocol"]
    w, pad = 300, 34
    colours = ("#d9363e", "#2f6fdb", "#1f9d55", "#b7791f", "#805ad5", "#319795", "#d53f8c", "#4a5568", "#975a16")
    curves, legend, marks = [], [], []
    for i, (name, m) in enumerate(doc["metrics"].items()):
        b, q = np.asarray(evaluation.benign[name], float), np.asarray(evaluation.poisoned[name], float)
        fpr, tpr, _ = roc_curve(np.r_[np.zeros(b.size), np.ones(q.size)], np.r_[b, q])
        c = colours[i % len(colours)]
        points = " ".join(f"{pad + x * w:.1f},{pad + (1 - y) * w:.1f}" for x, y in zip(fpr, tpr))
        curves.append(f"<polyline points='{points}' fill='none' stroke='{c}' stroke-width='{3 if m['decision'] else 1.5}'/>")
        legend.append(f"<span style='color:{c}'>&#9632;</span> {_e(name)} {m['auroc']:.4f}")
        if m["decision"]:
            at = m["at_threshold"]
            marks.append(f"<circle cx='{pad + at['fpr'] * w:.1f}' cy='{pad + (1 - at['tpr']) * w:.1f}' r='5' "
                         f"fill='none' stroke='{c}' stroke-width='2'><title>operating point: {_e(name)} >= "
                         f"{m['threshold']:.4g}</title></circle>")
    roc = (f"<div class='card'><b>ROC, every score</b> <span class='muted'>(AUROC; circle: the decision's operating "
           f"point)</span><br><svg xmlns='http://www.w3.org/2000/svg' width='{w + 2 * pad}' height='{w + 2 * pad}' "
           f"role='img' aria-label='ROC curves'><rect x='{pad}' y='{pad}' width='{w}' height='{w}' fill='none' "
           f"stroke='#1d2330'/><line x1='{pad}' y1='{pad + w}' x2='{pad + w}' y2='{pad}' stroke='#b9c0cc' "
           f"stroke-dasharray='3 3'/>{''.join(curves)}{''.join(marks)}"
           f"<text x='{pad + w / 2}' y='{2 * pad + w - 6}' text-anchor='middle'>false-positive rate</text>"
           f"<text x='12' y='{pad + w / 2}' transform='rotate(-90 12 {pad + w / 2})' text-anchor='middle'>"
           f"true-positive rate</text></svg><br>{'<br>'.join(legend)}</div>")
    histograms = "".join(
        _histogram(f"benign {name}", np.asarray(evaluation.benign[name], float), m["threshold"])
        + _histogram(f"poisoned {name}", np.asarray(evaluation.poisoned[name], float), m["threshold"])
        for name, m in doc["metrics"].items())
    rows = [("benign", f"{p['benign_found']} found, {p['benign_scored']} scored, {p['benign_kept']} kept "
                       f"({p['benign_filter']})"),
            ("poisoned", f"{p['poisoned_found']} found, {p['poisoned_scored']} scored, {p['poisoned_kept']} kept "
                         f"({p['poisoned_filter']})"),
            ("clean accuracy", p["benign_accuracy"]), ("attack success rate", p["attack_success_rate"]),
            ("failures", len(p["failures"])), ("model", doc["model"]), ("sha256", doc["model_sha256"]),
            ("execution provider", doc["execution_provider"]),
            ("detectors", evaluation.settings.detector_text), ("scales", ",".join(map(str, doc.get("scales", []))))]
    table = "<table>" + "".join(f"<tr><th>{_e(k)}</th><td class='mono'>{_e(v)}</td></tr>" for k, v in rows) + "</table>"
    head = "<tr><th>score</th><th>AUROC</th><th>threshold</th><th>TPR</th><th>FPR</th><th>F1</th>" + \
           "".join(f"<th>TPR at FPR {r['target_fpr']}</th>" for r in next(iter(doc["metrics"].values()))["tpr_at_fpr"]) + \
           "<th>best F1 (oracle)</th></tr>"
    body = "".join(
        f"<tr><td>{_e(name)}</td><td>{m['auroc']:.4f}</td><td>{m['at_threshold']['threshold']:.4g}</td>"
        f"<td>{m['at_threshold']['tpr']:.4f}</td><td>{m['at_threshold']['fpr']:.4f}</td><td>{m['at_threshold']['f1']:.4f}</td>"
        + "".join(f"<td>{r['tpr']:.4f} (FPR {r['fpr']:.4f})</td>" for r in m["tpr_at_fpr"])
        + f"<td>{m['best_f1']['f1']:.4f}</td></tr>" for name, m in doc["metrics"].items())
    stream.write("\n".join([
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><link rel='icon' href='data:,'>",
        f"<title>Evaluation: {_e(doc['model'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>Evaluation of {_e(Path(doc['model']).name)}: benign {_e(evaluation.names[0])} vs poisoned "
        f"{_e(evaluation.names[1])}</h1>", "<h2>Protocol</h2>" + table,
        "<h2>Metrics</h2><table class='mono'>" + head + body + "</table>",
        "<h2>Curves</h2><div class='row'>" + roc + histograms + "</div>",
        "</body></html>\n"]))
