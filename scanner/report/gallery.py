"""The HTML report's gallery: the most suspicious inputs, each beside the queries of the detectors
that decided.

Inputs are ordered by the deciding score, highest first; ties by :func:`tie_break` (the mean of
the other calibrated ``q_`` scores, else SCALE-UP's prob-consistency, highest first), then input
order. Each input is drawn as the model saw it, then, for each detector that ran, a few of its
queries of that input (:meth:`~scanner.detectors.base.Detector.preview`, before normalization):
SCALE-UP's amplified copies ``clip(n * x, 0, 1)`` with the label the scan reported at each scale,
STRIP's first blends, TeCo's corruptions at the highest severity, each region transplanted onto
the first held clean image. Only the labels the scan reported are shown: the report runs no model.

The detectors are rebuilt from the scan's settings; STRIP and the transplant detector take their
clean images back from the scan's calibration (the same ones, as the scan took them). Without a
calibration that holds them (a detector fit by hand), their queries are not drawn, and the
gallery says so.
"""

from __future__ import annotations

import html
from typing import Any

import numpy as np

from ..detectors import from_settings, make_detector, parts_of
from ..detectors.base import Detector, Preview
from ..errors import ScannerError
from ..results import ScanResult
from .common import display_name
from .images import data_uri, decode

#: inputs drawn with every detector's queries, at most (the first of the gallery; the others with
#: the queries whose labels the scan kept, SCALE-UP's, only): keeps the page about a megabyte
PREVIEWED = 8
#: the detectors' names as the gallery's headings spell them
TITLES = {"scaleup": "SCALE-UP", "strip": "STRIP", "teco": "TeCo", "transplant": "Region transplant"}
#: what each detector's previews are, in a few words
QUERIES = {"scaleup": "amplified copies clip(n&middot;x, 0, 1)", "strip": "blends with held clean images",
           "teco": "each corruption at the highest severity", "transplant": "each region pasted onto a held clean image"}


def tie_break(result: ScanResult) -> np.ndarray:
    """The gallery's second key, for inputs with the same deciding score: the mean of the other
    calibrated ``q_`` scores (NaN left out), else SCALE-UP's prob-consistency, else 0."""
    s, deciding = result.scores, result.settings.score.replace("-", "_")
    others = [np.asarray(v, np.float64) for k, v in s.named.items()
              if v is not None and k.startswith("q_") and k != deciding]
    if not others and s.named.get("prob_consistency") is not None and deciding != "prob_consistency":
        others = [np.asarray(s.named["prob_consistency"], np.float64)]
    if not others:
        return np.zeros(len(s.labels))
    stacked = np.vstack(others)
    counts = np.isfinite(stacked).sum(axis=0)
    sums = np.where(np.isfinite(stacked), stacked, 0.0).sum(axis=0)
    return np.where(counts > 0, sums / np.maximum(counts, 1), -np.inf)


def detectors_of(result: ScanResult) -> tuple[list[Detector], list[str]]:
    """The detectors that ran in the scan, rebuilt from its settings (those that hold clean images
    with the calibration's), and the names of those left out for want of their clean images."""
    st = result.settings
    ran = st.detector.get("detectors") or [{"name": "scaleup", "scales": list(st.detector.get("scales", ()))}]
    names = [d["name"] for d in ran]
    cal = st.calibration
    if cal is not None and cal.clean_images is not None and cal.detectors:
        try:  # what the scan itself rebuilt from the calibration (decide.scoring.make_detector_for)
            return parts_of(from_settings(cal.detectors, cal.clean_images, names)), []
        except ScannerError:
            pass
    parts, missing = [], []
    for entry in ran:
        try:
            part = make_detector(entry["name"], **{k: v for k, v in entry.items() if k != "name"})
        except ScannerError:  # settings this version cannot rebuild: nothing to draw
            continue
        if part.clean_images_needed:  # its clean images are not in the result
            missing.append(entry["name"])
        else:
            parts.append(part)
    return parts, missing


def gallery(result: ScanResult, cap: int, previewed: int = PREVIEWED) -> str:
    """The gallery section's HTML: at most ``cap`` inputs, the first ``previewed`` of them with
    every detector's queries."""
    s = result.scores
    if result.n_scored == 0 or cap <= 0:
        return "<p class='muted'>no input was scored</p>"
    score = np.nan_to_num(np.asarray(s.score, dtype=np.float64), nan=-np.inf)
    # the deciding score, highest first; ties by the other calibrated scores (tie_break); then input order
    order = np.lexsort((np.arange(len(score)), -tie_break(result), -score))[:cap].tolist()
    parts, missing = detectors_of(result)
    reporter = next((p for p in parts if p.query_names()), None)  # whose query labels the scan kept
    several = len(parts) + len(missing) > 1
    intro = _intro(result, len(order), reporter, several, min(previewed, len(order)), missing)
    few = [reporter] if reporter is not None else []
    return intro + "".join(_card(result, row, parts if at < previewed else few, reporter, several)
                           for at, row in enumerate(order))


def _intro(result: ScanResult, n: int, reporter: Detector | None, several: bool, drawn: int,
           missing: list[str]) -> str:
    st = result.settings
    title = None if reporter is None else TITLES.get(reporter.name, reporter.name)
    if not several:
        what = ("its detector's queries" if reporter is None else f"{title}'s {QUERIES.get(reporter.name, 'queries')} "
                f"({_e(reporter.describe())}) and the model's label at each (red: the unscaled label kept)")
    else:
        what = "a few queries of every detector that ran, as the model saw them"
        if drawn < n:
            what += f" (the first {drawn}" + (f"; the others beside {title}'s only)" if title else ")")
        if title:
            what += (f"; {title}'s with the model's label at each (red: the input's label kept), the others "
                     f"without (the report runs no model)")
    text = (f"<p class='muted'>the {n} inputs with the largest {_e(st.score.upper())} of {result.n_scored:,} scored "
            f"(ties: the mean of the other calibrated q- scores, highest first, then input order), each beside "
            f"{what}, with every detector's score.</p>")
    if missing:
        text += (f"<p class='muted'>not drawn: the queries of {_e(', '.join(missing))} (the clean images "
                 f"{'it uses are' if len(missing) == 1 else 'they use are'} not in the scan's calibration)</p>")
    return text


def _card(result: ScanResult, row: int, parts: list[Detector], reporter: Detector | None, several: bool) -> str:
    """One input: its name and scores, the input, then each of ``parts``' previews under its heading
    (the reporter's beside the input, with the labels the scan kept)."""
    s, st = result.scores, result.settings
    index, label = int(result.indices[row]), int(s.labels[row])
    image = decode(result, index)
    column = {name: i for i, name in enumerate(st.query_names)}
    first, head, blocks = [_cell(image, "x", _label(st, label), False)], "", []
    for part in parts:
        previews = _previews(part, image)
        cells = "".join(_cells(previews, s.query_labels[row], column, st, label))
        if part is reporter:
            first.append(cells)
            head = _heading(part, len(previews)) if several and previews else ""
        elif previews:
            blocks.append(f"<div class='det'>{_heading(part, len(previews))}<div class='row'>{cells}</div></div>")
    top = f"<div class='row'>{''.join(first)}</div>"
    if head:  # the input and the labelled queries first, under their detector's heading
        top = f"<div class='det'>{head}{top}</div>"
    others = " &middot; ".join(f"{_e(k)} {float(v[row]):.3g}" for k, v in s.named.items()
                               if v is not None and k != st.score.replace("-", "_") and np.isfinite(v[row]))
    return (f"<div class='card'><div class='name mono'>{_e(display_name(result.inputs.name(index)))} &middot; "
            f"{_e(st.score.upper())} {float(s.score[row]):.3g}<br><span class='muted'>{others}</span>"
            f"{' &middot; <span class=same>flagged</span>' if bool(s.flagged[row]) else ''}</div>"
            f"{top}{''.join(blocks)}</div>")


def _previews(part: Detector, image: np.ndarray | None) -> list[Preview]:
    if image is None:
        return []
    try:
        return part.preview(image)
    except (ScannerError, ValueError):  # held images of another size: no pictures, not a failed report
        return []


def _cells(previews: list[Preview], query_labels: np.ndarray, column: dict[str, int], settings, label: int) -> list[str]:
    """A cell per preview, under it the label the scan reported for that query, if it kept one
    (red: the input's own label)."""
    out = []
    for p in previews:
        at = None if p.query is None else column.get(p.query)
        q = None if at is None else int(query_labels[at])
        out.append(_cell(p.image, p.caption, "" if q is None else _label(settings, q), q == label))
    return out


def _heading(part: Detector, n: int) -> str:
    queries = part.queries_per_input - 1
    what = f"{n} of its {queries} queries" if n < queries else f"its {queries} queries"
    return (f"<div class='dname' data-detector='{_e(part.name)}'><b>{_e(TITLES.get(part.name, part.name))}</b> "
            f"{QUERIES.get(part.name, 'queries')} ({_e(part.describe())}): {what}</div>")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _label(settings, label: int) -> str:
    name = settings.class_name(label)
    return f"{label} {name}" if name else str(label)


def _cell(image: np.ndarray | None, caption: str, label: str, same: bool) -> str:
    src = data_uri(image) if image is not None else ""
    img = f"<img alt='{_e(caption)}' src='{src}'>" if src else "<div class='muted'>(no image)</div>"
    below = f"<br><span class='{'same' if same else ''}'>{_e(label)}</span>" if label else ""
    return f"<div class='cell'>{img}{_e(caption)}{below}</div>"
