"""The ``scanner`` command line, a thin shell over the library: the commands (:mod:`.app`), the
options they share (:mod:`.options`), and the run-time helpers (:mod:`.support`: errors to exit
codes, -q/-v anywhere, the progress bar's lifetime, --timeout's hard stop)."""

from .app import app, main

__all__ = ["app", "main"]
