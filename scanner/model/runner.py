"""Running the model: float batches in, the chosen output out, chunked and padded as the
batch plan says. Nothing here decides anything; :mod:`scanner.model.loader` built the plan.
"""

from __future__ import annotations

import numpy as np

from ..errors import ModelLoadError, ScannerError

# Rows per session call when the model takes any batch. A call's activations, not its inputs,
# set the peak memory: the default decision (58 queries per input, 94 32x32 images per batch) in
# one call of 5,452 rows peaked at 7.1 GiB on ResNet-18, 1,536-row calls at 2.0 GiB, at the same
# speed and with identical scores (python -m bench.call_memory). 1,536 is the call SCALE-UP alone
# makes (256 x 6), so its tuned path is unchanged.
ROWS_PER_CALL = 1536


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
    """

    def __init__(self, session, *, input_name: str, input_dtype: str, output_name: str,
                 max_batch: int | None = None, pad: bool = False, pad_to: int | None = None) -> None:
        self.session = session
        self.input_name = input_name
        self.input_dtype = input_dtype
        self.output_name = output_name
        self.max_batch = max_batch
        self.copies = pad_to is not None
        self.pad_to = pad_to if pad_to is not None else (max_batch if pad else None)
        self.pad = self.pad_to is not None
        self.run_options = None  # set by terminate(): ONNX Runtime's flag to stop a call in flight

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
        try:
            extra = () if self.run_options is None else (self.run_options,)
            (out,) = self.session.run([self.output_name], {self.input_name: feed}, *extra)
        except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own exception types
            if self.run_options is not None and self.run_options.terminate:
                raise RunTerminated("the model run was stopped (time limit)") from None
            text = " ".join(str(exc).split())[:300]
            raise ModelLoadError(f"the model failed while running a batch of {len(batch)} inputs: "
                                 f"{type(exc).__name__}: {text}") from None
        out = np.asarray(out)
        if out.ndim == 0 or out.shape[0] != len(batch):
            raise ModelLoadError(f"the model returned {out.shape[0] if out.ndim else 'a scalar, not'} rows for a batch "
                                 f"of {len(batch)} (output {self.output_name!r} shaped {out.shape})")
        return out.reshape(len(batch), -1)

    def arm(self) -> None:
        """Run every call with ONNX Runtime run options, so that :meth:`terminate` can stop one."""
        import onnxruntime as ort

        self.run_options = ort.RunOptions()
        self.run_options.log_severity_level = 4  # the stop is reported by the scan, not as an ORT error line

    def disarm(self) -> None:
        self.run_options = None

    def terminate(self) -> None:
        """Stop the model call in flight (from another thread) and refuse new ones: a time limit."""
        if self.run_options is None:
            self.arm()
        self.run_options.terminate = True


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
