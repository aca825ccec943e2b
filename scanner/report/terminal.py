"""What the command line shows on a terminal and in a CI log: log levels, colour, the progress bar
and the one-line outcome of a scan. No decisions here; the text of results is in :mod:`scanner.report`.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import IO

log = logging.getLogger("scanner")


# -- verbosity ---------------------------------------------------------------------------------
class _Stderr(logging.Handler):
    """Log records to whatever ``sys.stderr`` is when they are emitted (a test runner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
        except Exception:  # noqa: BLE001 - a log line never ends a scan
            self.handleError(record)


def set_verbosity(verbose: int, quiet: int) -> None:
    """``-q``: errors only (``-qq``: none); default: warnings; ``-v``: the scanner's info;
    ``-vv``: the scanner's debug; ``-vvv``: also third-party libraries' debug (Pillow, Ray...)."""
    root = logging.getLogger()
    if not any(isinstance(h, _Stderr) for h in root.handlers):
        handler = _Stderr()
        handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
        root.addHandler(handler)
    level = logging.WARNING - 10 * min(verbose, 2) + 10 * min(quiet, 2)
    log.setLevel(level)
    root.setLevel(logging.DEBUG if verbose >= 3 else max(level, logging.WARNING))


# -- colour ------------------------------------------------------------------------------------
_CODES = {"red": "31", "green": "32", "yellow": "33", "bold": "1", "dim": "2"}


def use_colour(stream: IO[str]) -> bool:
    """Colour only on a terminal, and never when ``NO_COLOR`` is set (https://no-color.org)."""
    if os.environ.get("NO_COLOR"):
        return False
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def paint(text: str, colour: str, enabled: bool) -> str:
    return f"\x1b[{_CODES[colour]}m{text}\x1b[0m" if enabled and text else text


def is_terminal(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


# -- progress ----------------------------------------------------------------------------------
def _clock(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class ProgressBar:
    """One line on stderr: ``label  done/total  pct  [bar]  rate img/s  elapsed  ETA``.

    Redrawn at most ten times a second; :meth:`clear` takes it off the line so that rows written
    to the same terminal do not mix with it (:meth:`update` draws it again).
    """

    WIDTH = 24

    def __init__(self, label: str, stream: IO[str] | None = None) -> None:
        self.label = label
        self._stream = stream
        self.started = time.monotonic()
        self.done, self.total = 0, None
        self._drawn = 0.0
        self._shown = False

    @property
    def stream(self) -> IO[str]:
        """The stream given, else whatever ``sys.stderr`` is now (the Ray engine moves it)."""
        return self._stream or sys.stderr

    def __call__(self, done: int, total: int | None) -> None:
        self.update(done, total)

    def text(self, now: float | None = None) -> str:
        elapsed = (now or time.monotonic()) - self.started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        if self.total:
            filled = int(self.WIDTH * self.done / self.total)
            eta = _clock((self.total - self.done) / rate) if rate > 0 else "?"
            return (f"{self.label}  {self.done:,}/{self.total:,}  {self.done / self.total:4.0%}  "
                    f"[{'#' * filled}{'.' * (self.WIDTH - filled)}]  {rate:,.0f} img/s  "
                    f"elapsed {_clock(elapsed)}  ETA {eta}")
        return f"{self.label}  {self.done:,}  {rate:,.0f} img/s  elapsed {_clock(elapsed)}"

    def update(self, done: int, total: int | None, *, force: bool = False) -> None:
        self.done, self.total = done, total
        now = time.monotonic()
        if not force and now - self._drawn < 0.1 and done != total:
            return
        self._drawn = now
        self.stream.write("\r\x1b[K" + self.text(now))
        self.stream.flush()
        self._shown = True

    def clear(self) -> None:
        if self._shown:
            self.stream.write("\r\x1b[K")
            self.stream.flush()
            self._shown = False

    def redraw(self) -> None:
        if self.done or self.total:
            self.update(self.done, self.total, force=True)


# -- the CI line ---------------------------------------------------------------------------------
def outcome_line(summary, gate, where: str) -> str | None:
    """One line for a CI log when the gate failed or the verdict names a suspect, else None:
    what failed, the numbers, where the report is."""
    suspects = summary.verdict.suspects
    if (gate is None or gate.passed) and not suspects:
        return None
    parts = []
    if gate is not None and not gate.passed:
        parts.append("gate FAILED (" + "; ".join(gate.reasons) + ")")
    elif gate is not None:
        parts.append("gate passed")
    parts.append(f"{summary.flagged} of {summary.scored} scored inputs flagged ({summary.flagged_rate:.1%}), "
                 f"{summary.failed} failed")
    if suspects:
        parts.append("; ".join(s.text for s in suspects))
    parts.append(f"report: {where}")
    return "scanner: " + "; ".join(parts)
