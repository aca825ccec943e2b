"""How batches reach a session: a symbolic batch, a fixed batch of 1 made symbolic (verified
against per-sample runs), a fixed batch padded, or one input per call.

The plan is decided and verified once, at load; nothing changes it during a scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .onnxfile import ModelInfo
from .preprocess import Preprocessor
from .runner import cast_input
from .runtime import captured_stderr, create_session, provider_to_device


@dataclass(frozen=True)
class BatchPlan:
    """``mode``: "symbolic" | "rewritten" | "padded" | "per-sample"; ``fixed``: the call size."""

    mode: str
    fixed: int | None = None
    note: str = ""

    @property
    def max_batch(self) -> int | None:
        """Largest batch one session call takes (None: any)."""
        return {"per-sample": 1, "padded": self.fixed}.get(self.mode)


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
    return batched.shape == singles.shape and np.allclose(batched, singles, rtol=1e-4, atol=1e-5)


def _per_sample(session, input_name, output_name, batch) -> np.ndarray:
    return np.concatenate([session.run([output_name], {input_name: batch[i:i + 1]})[0] for i in range(len(batch))])


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


def plan_batches(raw: bytes, proto, info: ModelInfo, pre: Preprocessor, output_name: str, device: str,
                 threads: int | None):
    """Create the session and decide how to batch. Returns ``(session, provider, BatchPlan)``."""
    source = str(info.path) if info.has_external_data else raw
    session, provider = create_session(source, device, threads=threads)
    batch_dim = info.input.shape[0] if info.input.shape else None
    if not isinstance(batch_dim, int):
        return session, provider, BatchPlan("symbolic")
    if batch_dim > 1:
        return session, provider, BatchPlan("padded", batch_dim, f"batch fixed to {batch_dim}: inputs are padded")
    # Fixed batch of 1: try to make it symbolic, and trust the rewrite only if it agrees with
    # per-sample outputs.
    sample = verification_batch(info, pre)
    try:
        rewritten = make_batch_symbolic(proto)
        if info.has_external_data:
            import onnx

            onnx.load_external_data_for_model(rewritten, str(info.path.parent))
        blob = rewritten.SerializeToString()
        with captured_stderr():
            fast, fast_provider = create_session(blob, provider_to_device(provider), threads=threads)
            batched = fast.run([output_name], {info.input.name: sample})[0]
        singles = _per_sample(session, info.input.name, output_name, sample)
        if _outputs_agree(batched, singles):
            return fast, fast_provider, BatchPlan("rewritten", note="batch fixed to 1: made symbolic and verified")
        reason = "batched outputs differ from per-sample outputs"
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to the loop
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return session, provider, BatchPlan("per-sample", 1, f"batch fixed to 1 and not rewritable ({reason}): one input per call")
