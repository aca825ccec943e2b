"""Checks for values that come from flags, spec files, metadata, calibration files or callers.

Each check returns the value normalized or raises one :class:`~scanner.errors.ScannerError`
(or the subclass given) whose message names the value's source: NaN, infinities, wrong types
and out-of-range values never reach the scoring or the decisions.
"""

from __future__ import annotations

import json
import math
import os
import stat
import sys
from pathlib import Path
from typing import Any

from .errors import ScannerError

# Bounds on sizes a user can ask for: beyond them a scan would not finish or not fit in memory.
MAX_SIDE = 8192            # pixels per image side
MAX_PIXELS = 1 << 24       # pixels per image (4096 x 4096)
MAX_SCALES = 64            # scales in one scale set
MAX_SCALE = 1000.0         # largest amplification factor
MAX_LABEL = 2**31 - 1      # largest class label a calibration may name


def _shown(value: Any) -> str:
    """``repr(value)``, cut short: a 4000-digit number in a file makes a readable message too."""
    try:
        text = repr(value)
    except ValueError:  # an int beyond Python's digit limit for str()
        return f"an integer of more than {sys.get_int_max_str_digits()} digits"
    return text if len(text) <= 60 else f"{text[:40]}... ({len(text)} characters)"


def is_finite(value: int | float) -> bool:
    """``math.isfinite``, and False (not OverflowError) for an integer too large for a float."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_path(value: Any, name: str, error=ScannerError) -> Path:
    """A file system path: ``str``, ``bytes`` (decoded as the file system does) or ``os.PathLike``."""
    if isinstance(value, bytes):
        value = os.fsdecode(value)
    if not isinstance(value, (str, os.PathLike)):
        raise error(f"{name}: expected a path (str or os.PathLike), got {type(value).__name__}")
    try:
        path = Path(value)
    except TypeError:  # a PathLike whose __fspath__ gives bytes or something else
        raise error(f"{name}: expected a path (str or os.PathLike), got {type(value).__name__}") from None
    if "\0" in str(path):
        raise error(f"{name}: a path cannot contain a NUL character: {_shown(str(path))}")
    return path


def check_callable(value: Any, name: str, error=ScannerError):
    """None or something to call."""
    if value is not None and not callable(value):
        raise error(f"{name}: expected a function or None, got {type(value).__name__}")
    return value


def check_number(value: Any, name: str, *, lo: float | None = None, hi: float | None = None,
                 lo_open: bool = False, integer: bool = False, error=ScannerError):
    """A finite number (an int if ``integer``) within ``[lo, hi]`` (``(lo, hi]`` if ``lo_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not is_finite(value):
        kind = "an integer" if integer else "a finite number"
        raise error(f"{name}: expected {kind}, got {_shown(value)}")
    if integer and value != int(value):
        raise error(f"{name}: expected an integer, got {_shown(value)}")
    if lo is not None and (value <= lo if lo_open else value < lo):
        raise error(f"{name}: expected a value {'above' if lo_open else 'of at least'} {lo:g}, got {_shown(value)}")
    if hi is not None and value > hi:
        raise error(f"{name}: expected a value of at most {hi:g}, got {_shown(value)}")
    return int(value) if integer else float(value)


def check_rate(value: Any, name: str, error=ScannerError) -> float:
    """A probability: finite, in [0, 1]."""
    return check_number(value, name, lo=0.0, hi=1.0, error=error)


def check_scales(scales, name: str = "scales", error=ScannerError) -> tuple:
    """A non-empty scale set of positive, finite, bounded factors."""
    try:
        values = tuple(scales)
    except TypeError:
        raise error(f"{name}: expected a sequence of numbers, got {scales!r}") from None
    if not values:
        raise error(f"{name}: the scale set is empty")
    if len(values) > MAX_SCALES:
        raise error(f"{name}: {len(values)} scales; at most {MAX_SCALES} are allowed")
    for v in values:
        check_number(v, name, lo=0.0, lo_open=True, hi=MAX_SCALE, error=error)
    return values


def check_size(height: int, width: int, name: str, error=ScannerError) -> None:
    """An image size the scanner can hold: each side at most MAX_SIDE, at most MAX_PIXELS pixels."""
    for side in (height, width):
        check_number(side, name, lo=1, hi=MAX_SIDE, integer=True, error=error)
    if height * width > MAX_PIXELS:
        raise error(f"{name}: {height}x{width} is {height * width} pixels; at most {MAX_PIXELS} are allowed")


def check_label_key(key: Any, name: str, error=ScannerError) -> int:
    """A class label written as an object key ("0", "1", ...): ASCII digits, at most MAX_LABEL."""
    if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 10 and int(key) <= MAX_LABEL):
        raise error(f"{name}: key {_shown(key)} is not a class label (an integer from 0 to {MAX_LABEL})")
    return int(key)


def load_json(text: str, source: str, error=ScannerError) -> Any:
    """``json.loads`` with every way a file can fail it as one ``error`` naming ``source``: not
    JSON, nested deeper than Python recurses (RecursionError), an integer of more digits than
    Python converts (ValueError). NaN and infinity literals parse; the checks above refuse them."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON: {exc.msg} (line {exc.lineno})") from None
    except RecursionError:
        raise error(f"{source} is nested too deeply to read (arrays or objects inside each other "
                    f"about {sys.getrecursionlimit()} levels or more)") from None
    except ValueError:  # int("1" * 5001): more digits than int_max_str_digits
        raise error(f"{source} holds an integer of more than {sys.get_int_max_str_digits()} digits") from None


def file_kind(mode: int) -> str:
    """What a file that is not a regular file is: "a FIFO", "a directory"..."""
    kinds = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))
    return next((text for test, text in kinds if test(mode)), "a special file")


def check_output_file(path: str | Path) -> Path:
    """Where an output file named ``path`` (``-o``, ``--html``...) is written, checked before any work.

    A regular file or a new name in an existing folder is written (replaced whole); a symbolic
    link is followed and the file it points to written (the link stays a link). Anything else (a
    directory, a FIFO, a device such as /dev/null, a socket, a link loop) is refused with one
    :class:`ScannerError` naming the path and what it is: replacing it would destroy it (a device
    node) or hang (a FIFO), and writing into it would not leave a report.
    """
    target = Path(os.path.realpath(path))
    try:
        mode: int | None = os.stat(target).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        raise ScannerError(f"cannot write {path}: {exc.strerror or exc}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise ScannerError(f"cannot write {path}: it is {file_kind(mode)}, not a regular file "
                           "(reports and output files are written to regular files only)")
    if not target.parent.is_dir():
        raise ScannerError(f"cannot write {path}: the folder {target.parent} does not exist")
    return target
