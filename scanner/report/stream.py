"""Scan reports written as the scan goes: table rows, CSV rows and JSONL lines leave with their
batch, in input order (a failed input where it stands among the scored ones); the summary comes
last. The JSON document is written whole at the end, its ``results`` array one record at a time.

A :class:`ScanWriter` takes the whole result as one "batch" as well, so a report rendered after
the fact (the Ray engine, :func:`scanner.report.render.render_scan`) is the same text as a streamed one.
"""

from __future__ import annotations

import csv
import json
from enum import Enum
from typing import IO, Any, Callable

from .common import (
    Format, csv_text, display_name, num_text, report_header, summary_lines, write_json_report,
)
from .html import write_html
from ..results import ScanResult, ScanSettings, csv_columns, rows
from .terminal import paint


class Show(str, Enum):
    """Which table rows a scan prints (the summary always)."""

    all = "all"
    flagged = "flagged"  # flagged inputs and failed ones
    none = "none"


# fixed widths: rows are printed before the longest name is known, so the input's name, the one
# cell of any length, comes last (as in `ls -l`): a long path pushes nothing out of line
_HEADINGS = {"nspc": "NSPC", "prob_consistency": "P-CONS"}
_WIDTHS = {"input": 0, "label": 14, "SPC": 5, "NSPC": 6, "P-CONS": 6, "flagged": 7}


class ScanWriter:
    """Writes one scan's report to ``stream`` as batches arrive.

    ``start()`` once, ``add(chunk)`` per batch (a :class:`ScanResult` of those inputs, in input
    order), ``finish(result, summary, gate)`` once with the whole result. ``show`` and ``colour``
    only change the table. ``around_write`` (a context manager factory) wraps every write, e.g.
    to lift a progress bar off the terminal line.
    """

    def __init__(self, fmt, stream: IO[str], settings: ScanSettings, score_names, *, show: Show = Show.all,
                 colour: bool = False, around_write: Callable | None = None) -> None:

        self.fmt = fmt if isinstance(fmt, Format) else Format(fmt)
        self.stream, self.settings = stream, settings
        self.score_names = tuple(score_names)
        self.show, self.colour = show, colour
        self.around_write = around_write
        self.covered = 0  # inputs [0, covered) have been written (or deliberately left out)
        self.hidden = 0
        self._pending_start = False
        self._csv = csv.writer(stream, lineterminator="\n")

    # -- the three steps --
    def start(self) -> None:
        """Write the header (table, CSV) with the first rows: a run that fails before any input
        is reached (no inputs found) leaves stdout empty."""
        self._pending_start = True

    def _start(self) -> None:

        self._pending_start = False
        if self.fmt is Format.table and self.show is not Show.none:
            self._emit(self._table_line(self._table_head()) + "\n")
        elif self.fmt is Format.csv:
            self._emit(lambda: self._csv.writerow(csv_columns(self.settings, self.score_names)))

    def add(self, chunk: ScanResult, first: int = 0) -> None:
        """The rows of inputs ``first`` .. ``first + chunk.n_found - 1``."""
        if self.fmt in (Format.json, Format.html):
            return
        if self._pending_start:
            self._start()
        text = [self._row(kind, record) for _, kind, record in rows(chunk)]
        self.covered = max(self.covered, first + chunk.n_found)
        text = [t for t in text if t is not None]
        if not text:
            return
        if self.fmt is Format.csv:
            self._emit(lambda: self._csv.writerows(text))
        else:
            self._emit("".join(text))

    def finish(self, result: ScanResult, summary, gate) -> None:
        """The failures not written yet (inputs a time limit left unreached), then the summary."""
        if self.fmt is Format.json:
            self._emit(lambda: write_json_report(result, summary, gate, self.stream))
            return
        if self.fmt is Format.html:
            self._emit(lambda: write_html(result, summary, gate, self.stream))
            return
        if self._pending_start:
            self._start()
        late = [(i, reason) for i, reason in result.failures if i >= self.covered]
        if late:
            left = ScanResult(result.inputs, result.indices[:0], result.scores, late, result.settings, 0.0,
                              score_names=result.score_names)
            text = [self._row("failure", r) for r in left.failure_records()]
            if self.fmt is Format.csv:
                self._emit(lambda: self._csv.writerows(text))
            else:
                self._emit("".join(t for t in text if t))
        if self.fmt is Format.jsonl:
            self._emit(json.dumps({"type": "summary", **report_header(result, summary, gate)}) + "\n")
        elif self.fmt is Format.table:
            lines = summary_lines(result.settings, summary, gate, colour=self.colour)
            if self.hidden and self.show is not Show.none:  # --show none asked for no rows: no hint
                lines.insert(0, f"{self.hidden:,} scored input(s) not shown (--show {self.show.value}); "
                                "--show all lists every row, -f csv/jsonl/json -o FILE keeps them")
            self._emit(("\n" if self.show is not Show.none else "") + "\n".join(lines) + "\n")

    # -- rows --
    def _row(self, kind: str, r: dict[str, Any]):

        queries = self.settings.query_names
        if self.fmt is Format.jsonl:
            return json.dumps({"type": kind, **r}) + "\n"
        if self.fmt is Format.csv:
            if kind == "failure":
                return ([csv_text(r["input"]), "failed", "", ""] + [""] * (len(self.score_names) + 1)
                        + [""] * len(queries) + [csv_text(r["reason"])])
            key = next(k for k in r if isinstance(r[k], dict))
            undecidable = r.get("undecidable")
            return ([csv_text(r["input"]), "undecidable" if undecidable else "scored", r["predicted_label"],
                     csv_text(r["predicted_class"])]
                    + [num_text(r.get(s)) for s in self.score_names] + [int(r["flagged"])]
                    + list(r[key].values()) + [csv_text(undecidable) if undecidable else ""])
        if kind == "failure":
            if self.show is Show.none:
                return None
            return self._paint(f"FAILED  {display_name(r['input'])}: {display_name(r['reason'])}", "yellow") + "\n"
        if self.show is Show.none or (self.show is Show.flagged and not r["flagged"]):
            self.hidden += 1
            return None
        key = next(k for k in r if isinstance(r[k], dict))
        label = str(r["predicted_label"]) + (f" {display_name(r['predicted_class'])}" if r["predicted_class"] else "")
        cells = [label]
        for _, name in self._columns():
            cells.append("-" if r.get(name) is None else f"{r[name]:.2f}")
        if self.settings.query_names:
            cells.append(" ".join(str(v) for v in r[key].values()))
        cells.append("yes" if r["flagged"] else "undecidable" if r.get("undecidable") else "no")
        cells.append(display_name(r["input"]))
        line = self._table_line(cells)
        return (self._paint(line, "red") if r["flagged"] else line) + "\n"

    def _columns(self) -> list[tuple[str, str]]:
        """(heading, record key) of the score columns: SPC when SCALE-UP ran, and the decision's score."""
        out = [("SPC", "spc")] if "spc" in self.score_names else []
        score = self.settings.score.replace("-", "_")
        if score != "spc":
            out.append((_HEADINGS.get(score, score.upper()), score))
        return out

    def _table_head(self) -> list[str]:
        return (["label"] + [h for h, _ in self._columns()]
                + (["labels at " + ",".join(self.settings.query_names)] if self.settings.query_names else [])
                + ["flagged", "input"])

    def _table_line(self, cells: list[str]) -> str:
        head = self._table_head()
        widths = [_WIDTHS.get(h, len(h)) for h in head]
        return "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()

    def _paint(self, text: str, colour: str) -> str:

        return paint(text, colour, self.colour)

    def _emit(self, what) -> None:
        if self.around_write is None:
            self._write(what)
        else:
            with self.around_write():
                self._write(what)

    def _write(self, what) -> None:
        if callable(what):
            what()
        else:
            self.stream.write(what)
        self.stream.flush()
