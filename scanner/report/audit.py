"""``scanner audit``'s reports: the terminal text, the JSON document and the HTML page.

They render an :class:`~scanner.audit.AuditResult` and decide nothing.
"""

from __future__ import annotations

import html
import json
from typing import IO

import numpy as np

from .._version import __version__
from ..audit import AuditResult
from .images import data_uri

SCHEMA = "scanner-audit/1"


def audit_text(result: AuditResult) -> str:
    """The table of classes and the verdict: what the terminal shows."""
    v = result.verdict
    lines = [f"verdict: {v.status}", f"  {v.reason}"]
    if result.classes:
        lines += ["", f"{'class':<24} {'held-back success':>17} {'anomaly':>8}  strongest trigger"]
        for c in result.classes:
            mark = " <- suspect" if c.suspect else ""
            name = f"{c.index} ({c.name})"[:24]
            lines.append(f"{name:<24} {c.heldout_rate:>16.0%} {c.anomaly:>8.1f}  {c.trigger}{mark}")
    s = result
    lines += ["", f"searched: {_families(s)} triggers ({s.budget.draws} random draws a setting); "
              f"{s.images} clean images ({s.search_images} to search, {s.heldout_images} held back); "
              f"{s.queries:,} queries"]
    if s.left_out:
        lines.append(s.left_out)
    if s.failures:
        lines.append(f"failed inputs: {len(s.failures)}, not used" + (" (the first 5; all in the JSON report)"
                                                                       if len(s.failures) > 5 else ""))
        lines += [f"  FAILED {name}: {reason}" for name, reason in s.failures[:5]]
    lines.append(f"rule: {v.rule}")
    return "\n".join(lines)


def _families(result: AuditResult) -> str:
    fams = list(result.families)
    return ", ".join(fams[:-1]) + " and " + fams[-1] if len(fams) > 1 else "".join(fams)


def write_audit_json(result: AuditResult, stream: IO[str]) -> None:
    doc = {"schema": SCHEMA, "scanner_version": __version__, **result.to_dict()}
    json.dump(doc, stream, indent=2)
    stream.write("\n")


def _png(image: np.ndarray, scale: int) -> str:
    img = np.clip(image, 0, 1)
    if scale > 1:
        img = img.repeat(scale, axis=0).repeat(scale, axis=1)
    return data_uri(img)


def _trigger_view(trigger, h: int, w: int, c: int) -> np.ndarray:
    """What a trigger looks like on its own: the pattern where it is stamped, grey elsewhere."""
    grey = np.full((1, h, w, c), 0.5, np.float32)
    if trigger.family == "additive" and trigger.pattern is not None:
        return 0.5 + trigger.pattern / (2 * max(float(np.abs(trigger.pattern).max()), 1e-8)) * 0.5
    return trigger.apply(grey)[0]


def _chart(result: AuditResult) -> str:
    rows, width = [], 300
    for c in result.classes:
        colour = "#c0392b" if c.suspect else "#7f8c8d"
        rows.append(f"<tr><td>{html.escape(f'{c.index} ({c.name})')}</td><td><svg width='{width}' height='14'>"
                    f"<rect width='{max(1, round(c.heldout_rate * width))}' height='14' fill='{colour}'/></svg></td>"
                    f"<td>{c.heldout_rate:.0%}</td><td>{c.anomaly:.1f}</td><td>{html.escape(c.trigger)}</td></tr>")
    return ("<table><tr><th>class</th><th>held-back success of its strongest trigger</th><th></th>"
            "<th>anomaly index</th><th>trigger</th></tr>" + "".join(rows) + "</table>")


def write_audit_html(result: AuditResult, stream: IO[str]) -> None:
    """One self-contained page: verdict, per-class chart, each suspect's trigger beside clean images with it."""
    v = result.verdict
    colour = {"suspect": "#c0392b", "no backdoor found": "#27ae60"}.get(v.status, "#7f8c8d")
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>scanner audit: {html.escape(v.status)}"
             "</title><style>body{font-family:sans-serif;margin:2em;max-width:1100px}td,th{padding:2px 8px;"
             "text-align:left}img{image-rendering:pixelated;margin:2px}</style></head><body>",
             f"<h1>Model audit: {html.escape(result.model)}</h1>",
             f"<div style='border:3px solid {colour};padding:1em'><b>verdict: {html.escape(v.status)}</b>"
             f"<p>{html.escape(v.reason)}</p><p><small>rule: {html.escape(v.rule)}</small></p></div>",
             "<h2>Every class</h2>", _chart(result)]
    clean = result.examples
    if clean is not None and len(clean) and result.searches:
        _, h, w, c = clean.shape
        scale = max(1, 96 // max(h, w))
        for k in v.targets:
            trig = result.searches[k].trigger
            shown = clean[:6]
            cells = [f"<figure style='display:inline-block'><img src='{_png(_trigger_view(trig, h, w, c), scale)}'>"
                     "<figcaption>trigger</figcaption></figure>"]
            cells += [f"<figure style='display:inline-block'><img src='{_png(a, scale)}'><img src='{_png(b, scale)}'>"
                      "<figcaption>clean / with trigger</figcaption></figure>" for a, b in zip(shown, trig.apply(shown))]
            parts.append(f"<h2>Class {k} ({html.escape(result.classes[k].name)}): {html.escape(trig.describe())}</h2>"
                         + "".join(cells))
    s = result
    parts.append(f"<h2>What was searched</h2><p>{_families(s)} triggers, {s.budget.draws} random "
                 f"draws a setting; {s.images} clean images ({s.search_images} to search, {s.heldout_images} held "
                 f"back); {s.queries:,} queries in {s.seconds:.1f} s; seed {s.seed}; scanner {__version__}</p>")
    if s.left_out:
        parts.append(f"<p>{html.escape(s.left_out)}</p>")
    if s.failures:
        parts.append("<h2>Inputs that could not be read</h2><ul>" + "".join(
            f"<li>{html.escape(n)}: {html.escape(r)}</li>" for n, r in s.failures) + "</ul>")
    parts.append("</body></html>\n")
    stream.write("".join(parts))
