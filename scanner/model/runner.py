"""Running the model: float batches in, the chosen output out, chunked and padded as the
batch plan says. Nothing here decides anything; :mod:`scanner.model.loader` built the plan.
"""

from __future__ import annotations

import threading

import numpy as np

from ..errors import ModelLoadError, ScannerError

# Rows per session call when the model takes any batch. A call's activations, not its inputs,
# set the peak memory: the default decision (58 queries per input, 94 32x32 images per batch) in
# one call of 5,452 rows peaked at 7.1 GiB on ResNet-18, 1,536-row calls at 2.0 GiB, at the same
# speed and with identical scores (python -m bench.call_memory). 1,536 is the call SCALE-UP alone
# makes (256 x 6), so its tuned path is unchanged.
ROWS_PER_CALL = 1536

# The per-call watchdog: a model call still running after its limit is stopped (ONNX Runtime's
# terminate flag, checked between nodes and loop iterations), so that a model that never returns
# (a Loop of 10^12 steps) cannot hang a scan. The default limit ("auto") grows with the call's
# input values (rows x height x width x channels; a batch's query buffer holds at most 2^24):
# 60 s plus 60 s per million values, so a small call that hangs is stopped in about a minute and
# the largest call gets about 17 minutes. The slowest calls measured (python -m bench.call_time,
# a CIFAR ResNet-18, 0.56 GFLOP at 32 x 32, on a 2-core CPU at a load average of 12) cost 8.6 us
# per value (1,536 rows at 32 x 32: 40 s) and 11.4 us per value (the same network on 108 rows
# of 224 x 224: 186 s, 27 GFLOP a row), against 60 us allowed: 5 times the worst, on a machine
# six times oversubscribed. A number of seconds replaces the rule; None or 0: no limit.
DEFAULT_CALL_TIMEOUT = "auto"
AUTO_BASE_S = 60.0
AUTO_PER_VALUE_S = 60e-6


def check_call_timeout(value, name: str = "call_timeout"):
    """``"auto"``, a number of seconds (0: none), or None (none); returns "auto", a float or None."""
    from .._validation import check_number

    if value is None or value == DEFAULT_CALL_TIMEOUT:
        return value
    if isinstance(value, str):
        raise ScannerError(f"{name}: expected auto, a number of seconds or 0 (no limit), got {value[:40]!r}")
    return check_number(value, name, lo=0.0, hi=1e7) or None


def call_limit(call_timeout, values: int) -> float | None:
    """Seconds a call of ``values`` input values may run under ``call_timeout``."""
    if call_timeout == DEFAULT_CALL_TIMEOUT:
        return AUTO_BASE_S + AUTO_PER_VALUE_S * values
    return call_timeout or None


class Runner:
    """One ONNX Runtime session and the tensor names to feed and read.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    input_name, input_dtype : str
        The data input and its element type (float32 batches are cast to it).
    output_name : str
    max_batch : int or None
        Largest batch one call takes (None: any).
    pad : bool
        Pad the last chunk with zeros to ``max_batch`` rows (a fixed batch larger than 1).
    pad_to : int, optional
        Every call has this many rows, the missing ones copies of the chunk's last input (a
        fixed batch run one input per call: the padding cannot change that input's output).
    call_timeout : "auto", float or None, default="auto"
        Seconds one call may run before it is stopped (:class:`CallTimedOut`); "auto": 60 s plus
        60 s per million input values of the call; None or 0: no limit.
    """

    def __init__(self, session, *, input_name: str, input_dtype: str, output_name: str,
                 max_batch: int | None = None, pad: bool = False, pad_to: int | None = None,
                 call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT) -> None:
        self.session = session
        self.input_name = input_name
        self.input_dtype = input_dtype
        self.output_name = output_name
        self.max_batch = max_batch
        self.copies = pad_to is not None
        self.pad_to = pad_to if pad_to is not None else (max_batch if pad else None)
        self.pad = self.pad_to is not None
        self.call_timeout = call_timeout
        self._stopped = False  # set by terminate(): no call runs until disarm()
        self._in_flight = None  # the run options of the call in flight (terminate() stops it)

    def run(self, batch: np.ndarray) -> np.ndarray:
        """The output for every row of ``batch`` (float32, in the model's layout), shape (N, -1)."""
        step = self.max_batch
        if step is None or len(batch) <= step and not self.pad:
            return self._call(batch)
        parts = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            if self.pad and len(chunk) < self.pad_to:  # keep only the real rows of a padded call
                padded = np.empty((self.pad_to,) + batch.shape[1:], dtype=batch.dtype)
                padded[: len(chunk)] = chunk
                padded[len(chunk):] = chunk[-1] if self.copies else 0
                parts.append(self._call(padded)[: len(chunk)])
            else:
                parts.append(self._call(chunk))
        return np.concatenate(parts)

    def _call(self, batch: np.ndarray) -> np.ndarray:
        feed = cast_input(batch, self.input_dtype)
        options = self._in_flight = run_options()
        try:
            if self._stopped:
                raise RunTerminated("the model run was stopped (time limit)")
            out = guarded_run(self.session, self.output_name, {self.input_name: feed}, options=options,
                              limit=self.call_timeout)
        except CallTimedOut:
            raise
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            if self._stopped:
                raise RunTerminated("the model run was stopped (time limit)") from None
            text = " ".join(str(exc).split())[:300]
            raise ModelLoadError(f"the model failed while running a batch of {len(batch)} inputs: "
                                 f"{type(exc).__name__}: {text}") from None
        finally:
            self._in_flight = None
        out = np.asarray(out)
        if out.ndim == 0 or out.shape[0] != len(batch):
            raise ModelLoadError(f"the model returned {out.shape[0] if out.ndim else 'a scalar, not'} rows for a batch "
                                 f"of {len(batch)} (output {self.output_name!r} shaped {out.shape})")
        return out.reshape(len(batch), -1)

    def arm(self) -> None:
        """Kept for callers of the earlier API: every call can be stopped by :meth:`terminate`."""

    def disarm(self) -> None:
        """The session serves calls again after :meth:`terminate`."""
        self._stopped = False

    def terminate(self) -> None:
        """Stop the model call in flight (from another thread) and refuse new ones: a time limit."""
        self._stopped = True
        options = self._in_flight
        if options is not None:
            options.terminate = True


def run_options():
    """ONNX Runtime run options whose ``terminate`` flag stops the call; the stop is reported by
    the scanner, not as an ONNX Runtime error line."""
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 4
    return options


# Seconds a stopped call gets to return (ONNX Runtime checks its terminate flag between nodes and
# loop iterations; an operator that never checks it is left running on its own thread).
STOP_GRACE = 5.0


def guarded_run(session, output_name: str, feed: dict, *, options=None,
                limit: float | str | None = DEFAULT_CALL_TIMEOUT):
    """``session.run`` of one output under the per-call watchdog: a call still running after
    ``limit`` seconds (see :func:`call_limit`: "auto" grows with the call's size) is stopped
    and raises :class:`CallTimedOut` (None or 0: no limit).

    The call runs on a thread of its own while this one waits, so that an interrupt (Ctrl-C,
    or SIGTERM / SIGHUP turned into one by the command line) is handled at once, not when the
    model returns: the call is stopped and the interrupt goes on. Other errors are ONNX
    Runtime's, for the caller to word."""
    if options is None:
        options = run_options()
    first = next(iter(feed.values()))
    limit = call_limit(limit, int(first.size))
    box: dict = {}
    done = threading.Event()  # waited on, not Thread.join: an interrupted join marks a running thread stopped

    def call() -> None:
        try:
            box["out"] = session.run([output_name], feed, options)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["exc"] = exc
        finally:
            done.set()

    threading.Thread(target=call, name="scanner-model-call", daemon=True).start()
    try:
        finished = done.wait(limit or None)
    except BaseException:  # an interrupt while the model runs: stop the call, then go on
        options.terminate = True
        done.wait(STOP_GRACE)
        raise
    if not finished:
        options.terminate = True
        done.wait(STOP_GRACE)
        raise CallTimedOut(limit, len(first))
    if "exc" in box:
        raise box["exc"]
    (out,) = box["out"]
    return out


def cast_input(batch: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return batch
    if dtype == "uint8":
        return np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    return batch.astype(dtype)


def labels_from_output(out: np.ndarray, kind: str, n: int) -> np.ndarray:
    """Predicted labels (n,) int64 from a label output or from class scores."""
    out = np.asarray(out)
    if kind == "labels":
        return out.reshape(n).astype(np.int64)
    return out.reshape(n, -1).argmax(axis=1).astype(np.int64)


def to_probabilities(out: np.ndarray, n: int) -> np.ndarray:
    """Rows of class probabilities: kept if the output already is one, else softmax of logits."""
    out = np.asarray(out, dtype=np.float32).reshape(n, -1)
    if out.min(initial=0) >= 0 and np.allclose(out.sum(axis=1), 1, atol=1e-3):
        return out
    shifted = np.exp(out - out.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class RunTerminated(ScannerError):
    """A model call was stopped by :meth:`Runner.terminate` (the scan's time limit)."""


class CallTimedOut(RunTerminated):
    """One model call ran past the per-call limit (``call_timeout``, ``--call-timeout``)."""

    def __init__(self, limit: float, rows: int) -> None:
        self.limit, self.rows = limit, rows
        super().__init__(f"a model call of {rows} inputs did not return within the per-call limit of {limit:.3g} s "
                         "(call_timeout; --call-timeout on the command line, 0 for none)")
