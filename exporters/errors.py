"""Exceptions and warnings of the exporters.

:class:`ExportError` derives from :class:`scanner.errors.ScannerError`, so a command-line shell
that catches ``ScannerError`` reports export failures as one ``Error: ...`` line as well.
"""

from __future__ import annotations

from scanner.errors import ScannerError


class ExportError(ScannerError):
    """A model could not be loaded, exported, or verified. The message is one line."""


class ParityError(ExportError):
    """The exported ONNX model does not reproduce the PyTorch model within the tolerance.

    Attributes
    ----------
    parity : tuple of ParityResult
        Every comparison made before the failure, the failing one last.
    """

    def __init__(self, message: str, parity: tuple = ()):
        super().__init__(message)
        self.parity = tuple(parity)


class ExportWarning(UserWarning):
    """Something about the model the user should know, that does not stop the export."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """A one-line summary of an exception: the deepest cause's first non-empty line."""
    chain = [exc]
    seen = {id(exc)}
    while chain[-1].__cause__ is not None and id(chain[-1].__cause__) not in seen:
        chain.append(chain[-1].__cause__)
        seen.add(id(chain[-1]))
    for item in reversed(chain):
        text = _strip_ansi(str(item)).strip()
        if text:
            line = text.splitlines()[0].strip()
            break
    else:
        line = type(chain[-1]).__name__
    if len(line) > limit:
        line = line[: limit - 3] + "..."
    return line


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
