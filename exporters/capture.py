"""Keeping torch.onnx's own output off the user's terminal (it prints from Python and from C++)."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings

logger = logging.getLogger("scanner.exporters")


@contextlib.contextmanager
def quiet():
    """Keep the exporters' progress lines, graph dumps and warnings off the user's terminal.

    Both Python-level streams and the process's file descriptors 1 and 2 are captured (the
    TorchScript exporter prints from C++); what was captured goes to the debug log.
    """
    import sys

    captured = io.StringIO()
    saved_fds = []
    sink = tempfile.TemporaryFile(mode="w+b")
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except Exception:
            pass
    try:
        for fd in (1, 2):
            try:
                saved_fds.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
            except OSError:
                pass
        with contextlib.redirect_stdout(captured), contextlib.redirect_stderr(captured), \
                warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for stream in (sys.__stdout__, sys.__stderr__):
            try:
                stream.flush()
            except Exception:
                pass
        for fd, saved in saved_fds:
            os.dup2(saved, fd)
            os.close(saved)
        sink.seek(0)
        text = captured.getvalue() + sink.read().decode("utf-8", "replace")
        sink.close()
        if text.strip():
            logger.debug("torch.onnx output:\n%s", text)
