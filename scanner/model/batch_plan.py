"""How batches reach a session: a symbolic batch, a fixed batch of 1 made symbolic (verified
against per-sample runs), a fixed batch padded, or one input per call.

The plan is decided and verified once, at load; nothing changes it during a scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ModelLoadError
from .onnx_file import ModelInfo
from .preprocess import Preprocessor
from .runner import DEFAULT_CALL_TIMEOUT, CallTimedOut, cast_input, guarded_run
from .runtime import captured_stderr, create_session, provider_to_device


@dataclass(frozen=True)
class BatchPlan:
    """``mode``: "symbolic" | "rewritten" | "padded" | "per-sample"; ``fixed``: the call size a
    fixed-batch model needs (None: any); ``note``: why, in words."""

    mode: str
    fixed: int | None = None
    note: str = ""

    @property
    def max_batch(self) -> int | None:
        """Inputs per session call, at most (None: any)."""
        return {"per-sample": 1, "padded": self.fixed}.get(self.mode)

    @property
    def pad_to(self) -> int | None:
        """Rows every call must have (a batch fixed above 1), else None."""
        return self.fixed if self.fixed is not None and self.fixed > 1 else None


def make_batch_symbolic(proto):
    """Return a copy of ``proto`` with a fixed batch of 1 made symbolic.

    Sets the data input's and the outputs' first dim to ``N`` and, in every Reshape whose
    constant target starts with 1, sets that entry to 0 (copy from input) with allowzero=0.
    The caller must verify the result against per-sample outputs.
    """
    import onnx
    from onnx import numpy_helper

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    graph = model.graph
    initializers = {t.name for t in graph.initializer}
    data_inputs = [v for v in graph.input if v.name not in initializers]
    for value in list(data_inputs) + list(graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value == 1:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    del graph.value_info[:]  # stale intermediate shapes would pin batch 1 again
    consts = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = attr.t
    for node in graph.node:
        if node.op_type != "Reshape" or len(node.input) < 2 or node.input[1] not in consts:
            continue
        tensor = consts[node.input[1]]
        target = numpy_helper.to_array(tensor).copy()
        if target.ndim == 1 and target.size and target[0] == 1:
            target[0] = 0
            tensor.CopyFrom(numpy_helper.from_array(target.astype(np.int64), tensor.name))
            for attr in node.attribute:
                if attr.name == "allowzero":
                    attr.i = 0
    return model


def _outputs_agree(batched: np.ndarray, singles: np.ndarray) -> bool:
    """Same shape and equal up to float noise of a different batch size (labels: exactly)."""
    if batched.shape != singles.shape:
        return False
    if batched.dtype.kind in "iub":
        return bool(np.array_equal(batched, singles))
    # per row, relative to the row's size: loose enough for a GPU's batch-size-dependent kernels
    # (TF32, other reduction orders), tight enough for a scale computed over the call (dynamic
    # quantization moves a dark input's outputs by percents when a bright one shares its call)
    rows = singles.reshape(len(singles), -1).astype(np.float64)
    scale = np.maximum(1.0, np.abs(rows).max(axis=1, initial=0.0))[:, None]
    diff = np.abs(batched.reshape(rows.shape).astype(np.float64) - rows)
    return bool(np.all(diff <= 5e-3 * scale + 1e-2 * np.abs(rows)))


def _difference(batched: np.ndarray, singles: np.ndarray) -> str:
    if batched.shape != singles.shape:
        return f"shapes {batched.shape} and {singles.shape}"
    diff = np.abs(batched.astype(np.float64) - singles.astype(np.float64))
    return f"up to {float(diff.max(initial=0.0)):.3g}"


def verification_batch(info: ModelInfo, pre: Preprocessor) -> np.ndarray:
    """Inputs that show a graph mixing its batch: very different brightness, plain and amplified
    (the copies SCALE-UP feeds saturate), already preprocessed and cast for the model."""
    rng = np.random.default_rng(0)
    shape = (4,) + pre.model_shape
    plain = rng.random(shape, dtype=np.float32)
    plain *= np.array([0.02, 0.3, 0.7, 1.0], dtype=np.float32).reshape((4,) + (1,) * len(pre.model_shape))
    sample = np.concatenate([plain, np.minimum(plain * np.float32(5), np.float32(1))])
    pre.normalize_(sample)
    return cast_input(sample, info.input.dtype)


def _run(session, info: ModelInfo, output_name: str, batch: np.ndarray, *, pad_to: int | None = None,
         copies: bool = False, limit: float | str | None = DEFAULT_CALL_TIMEOUT) -> np.ndarray:
    """One call (padded to ``pad_to`` rows: zeros, or copies of the last row); checks that the
    output has one row per input sent, and returns the rows of ``batch``."""
    n = len(batch)
    if pad_to is not None and n < pad_to:
        fill = np.repeat(batch[-1:], pad_to - n, axis=0) if copies else np.zeros((pad_to - n,) + batch.shape[1:],
                                                                                 batch.dtype)
        batch = np.concatenate([batch, fill])
    try:
        out = guarded_run(session, output_name, {info.input.name: batch}, limit=limit)
    except CallTimedOut as exc:
        raise ModelLoadError(f"while verifying how to batch the model: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - ONNX Runtime raises its own types
        raise ModelLoadError(f"the model fails on a batch of {len(batch)} inputs of shape {list(batch.shape[1:])}: "
                             f"{_one_line(exc)}") from None
    out = np.asarray(out)
    if out.ndim == 0 or out.shape[0] != len(batch):
        raise ModelLoadError(
            f"output {output_name!r} has shape {list(out.shape)} for a batch of {len(batch)}: its first dimension "
            f"is not the batch; name the per-input output with --output-name (outputs: "
            f"{', '.join(str(o) for o in info.outputs)})")
    return out[:n].reshape(n, -1)


def _one_line(exc: Exception) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}" if text else type(exc).__name__


def _alone(session, info, output_name, batch, *, pad_to=None, limit=DEFAULT_CALL_TIMEOUT) -> np.ndarray:
    """Each input in a call of its own (a fixed batch padded with copies of it)."""
    return np.concatenate([_run(session, info, output_name, batch[i:i + 1], pad_to=pad_to, copies=True, limit=limit)
                           for i in range(len(batch))])


_DEPENDENT = ("outputs depend on the other inputs of a call (batched vs alone differ {diff}; e.g. dynamic "
              "quantization computes its scale over the whole call)")


def plan_batches(raw: bytes, proto, info: ModelInfo, pre: Preprocessor, output_name: str, device: str,
                 threads: int | None, call_timeout: float | str | None = DEFAULT_CALL_TIMEOUT):
    """Create the session and decide how to batch. Returns ``(session, provider, BatchPlan)``.
    Every verification call runs under the per-call watchdog (``call_timeout`` seconds).

    Every plan is verified on a real run: the output has one row per input, and a few inputs
    run together give the outputs they give alone (a dark, a bright and saturated copies side by
    side). A model whose outputs depend on the companions of an input runs one input per call.
    """
    source = str(info.path) if info.has_external_data else raw
    session, provider = create_session(source, device, threads=threads)
    batch_dim = info.input.shape[0] if info.input.shape else None
    sample = verification_batch(info, pre)
    fixed = batch_dim if isinstance(batch_dim, int) and batch_dim > 1 else None
    if not isinstance(batch_dim, int) or fixed is not None:
        together = np.concatenate([_run(session, info, output_name, sample[i:i + (fixed or len(sample))],
                                        pad_to=fixed, limit=call_timeout)
                                   for i in range(0, len(sample), fixed or len(sample))])
        alone = _alone(session, info, output_name, sample, pad_to=fixed, limit=call_timeout)
        if _outputs_agree(together, alone):
            if fixed is None:
                return session, provider, BatchPlan("symbolic")
            return session, provider, BatchPlan("padded", fixed, f"batch fixed to {fixed}: inputs are padded")
        note = _DEPENDENT.format(diff=_difference(together, alone))
        if fixed is not None:
            note += f"; batch fixed to {fixed}, each call padded with copies of its input"
        return session, provider, BatchPlan("per-sample", fixed, note + ": one input per call")
    # Fixed batch of 1: try to make it symbolic, and trust the rewrite only if it agrees with
    # per-sample outputs.
    singles = _alone(session, info, output_name, sample, limit=call_timeout)
    try:
        rewritten = make_batch_symbolic(proto)
        if info.has_external_data:
            import onnx

            onnx.load_external_data_for_model(rewritten, str(info.path.parent))
        blob = rewritten.SerializeToString()
        with captured_stderr():
            fast, fast_provider = create_session(blob, provider_to_device(provider), threads=threads)
            batched = np.asarray(guarded_run(fast, output_name, {info.input.name: sample}, limit=call_timeout))
        batched = batched.reshape(len(sample), -1) if batched.ndim and batched.shape[0] == len(sample) else batched
        if _outputs_agree(batched, singles):
            return fast, fast_provider, BatchPlan("rewritten", note="batch fixed to 1: made symbolic and verified")
        reason = f"batched outputs differ from per-sample outputs {_difference(batched, singles)}"
    except CallTimedOut as exc:
        raise ModelLoadError(f"while verifying how to batch the model: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to the loop
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return session, provider, BatchPlan("per-sample", 1, f"batch fixed to 1 and not rewritable ({reason}): one input per call")
