"""The parts every report shares: the formats, the JSON header, the closing summary lines,
names shown safely, and report files written whole (temporary file, then rename).

The renderers (:mod:`scanner.report.stream`, :mod:`scanner.report.html`) and the facade
:mod:`scanner.report` build on this module; it imports none of them.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from enum import Enum
from pathlib import Path
from typing import IO, Any

from .._validation import check_output_file
from ..decide import text
from ..decide.verdict import Gate, Summary
from ..errors import ScannerError
from ..results import ScanResult, ScanSettings
from .terminal import paint

REPORT_SCHEMA_VERSION = 1


class Format(str, Enum):
    """Report formats of ``scanner scan``."""

    table = "table"
    json = "json"
    jsonl = "jsonl"
    csv = "csv"
    html = "html"  # the audit report (scanner.report.html), written at the end


class InspectFormat(str, Enum):
    """Formats of ``scanner inspect``."""

    table = "table"
    json = "json"


def report_header(result: ScanResult, summary: Summary, gate: Gate | None) -> dict[str, Any]:
    """Everything in the JSON report except the per-input lists (schema: docs/reports.md)."""
    return {"schema_version": REPORT_SCHEMA_VERSION, "kind": "scan", **result.settings.to_dict(),
            "summary": summary.to_dict(), "gate": None if gate is None else gate.to_dict(),
            "warnings": list(summary.warnings)}


def write_json_report(result: ScanResult, summary: Summary, gate: Gate | None, stream: IO[str]) -> None:
    """The JSON report, written one record at a time so memory does not grow with the inputs."""
    head = json.dumps(report_header(result, summary, gate), indent=2)
    stream.write(head[:-2] + ',\n  "results": [')
    for i, record in enumerate(result.records()):
        stream.write(("," if i else "") + "\n    " + json.dumps(record))
    stream.write("\n  ],\n  \"failures\": " + json.dumps(result.failure_records()) + "\n}\n")


def num_text(value) -> str:
    return "" if value is None else f"{value:.6g}"


def summary_lines(settings: ScanSettings, summary: Summary, gate: Gate | None, *, colour: bool = False) -> list[str]:
    """The scan's closing block: model, settings, counts, per-class counts, verdict, gate, in lines
    under 100 columns (:mod:`scanner.decide.text`, also ``str(result)``); ``colour`` paints the
    verdict and the gate (ANSI). Every class is in the JSON report."""
    lines = [(line, None) for line in settings.lines()] + text.summary_lines(summary, gate)
    return [paint(part, c, colour) if c else part for line, c in lines for part in text.wrap(line)]


# -- writing safely ------------------------------------------------------------------------------
_CONTROL = {i: f"\\x{i:02x}" for i in (*range(0x20), 0x7f)} | {0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t"}


def display_name(text: str) -> str:
    """A name shown safely on one line: undecodable bytes as ``\\xNN``, control characters
    (newline, carriage return, escape...) as escapes. JSON keeps names as they are (escaped by JSON)."""
    try:
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a surrogate that no file name decoding produced
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text.translate(_CONTROL)


def csv_text(text: str | None) -> str:
    """A text cell for CSV: shown safely, and never read as a formula by a spreadsheet."""
    if not text:
        return ""
    text = display_name(text)
    return "'" + text if text[0] in "=+-@" else text


class _ReportFile:
    """A report file open for writing: a failed write (disk full...) is one error naming the
    report, while an error of anything else in the block (an input, the model) stays its own."""

    def __init__(self, fh: IO[str], path: Path) -> None:
        self._fh, self._path = fh, path

    def _failed(self, exc: OSError) -> ScannerError:
        return ScannerError(f"cannot write {self._path}: {exc.strerror or exc}")

    def write(self, text: str) -> int:
        try:
            return self._fh.write(text)
        except OSError as exc:
            raise self._failed(exc) from None

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._fh.flush()
        except OSError as exc:
            raise self._failed(exc) from None

    def __getattr__(self, name: str):
        return getattr(self._fh, name)


@contextlib.contextmanager
def open_report(path: Path | None, stdout: IO[str]):
    """Where a report goes: ``stdout``, or a file written to a temporary name beside it and renamed
    into place only when the block completes. A run that fails leaves any previous file as it was.

    The target is checked first (:func:`scanner._validation.check_output_file`): a regular file
    or a new name; a symbolic link is followed (its target replaced, the link kept); a directory,
    FIFO, device or socket is refused, never replaced. A write, flush or rename that fails raises
    a :class:`ScannerError` naming the report, so a report that is not there is never reported
    written; an error raised by the block itself passes through unchanged.
    """
    if path is None:
        yield stdout
        return
    path = Path(path)
    target = check_output_file(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as exc:
        raise ScannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    try:
        try:
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(tmp, 0o666 & ~mask)  # a report is readable like any file the user writes, not mkstemp's 0600
            fh = os.fdopen(fd, "w", encoding="utf-8", newline="")
        except OSError as exc:
            os.close(fd)
            raise ScannerError(f"cannot write {path}: {exc.strerror or exc}") from None
        try:
            yield _ReportFile(fh, path)
        except BaseException:
            with contextlib.suppress(OSError):
                fh.close()
            raise
        try:
            fh.close()
            os.replace(tmp, target)
        except OSError as exc:
            raise ScannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
