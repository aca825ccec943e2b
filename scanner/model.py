"""ONNX model loading: reading the file, finding its input and output, fixing the batch
dimension, choosing the execution provider, and running it.

This is the only module that imports onnxruntime. It knows nothing about SCALE-UP: it takes
float32 batches already in the model's layout and returns integer labels.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelLoadError, SpecError
from .spec import Spec

log = logging.getLogger("scanner")

# ONNX TensorProto element types the scanner can feed or read.
_ELEM_TYPES = {
    1: "float32",
    2: "uint8",
    3: "int8",
    5: "int16",
    6: "int32",
    7: "int64",
    10: "float16",
    11: "float64",
    12: "uint32",
    13: "uint64",
}
_FEEDABLE = {"float32", "float16", "float64", "uint8"}
_INTEGER = {"uint8", "int8", "int16", "int32", "int64", "uint32", "uint64"}


@dataclass(frozen=True)
class TensorInfo:
    """Name, element type and shape of a graph input or output (symbolic dims are str/None)."""

    name: str
    dtype: str
    shape: tuple[Any, ...] | None

    def __str__(self) -> str:
        dims = "?" if self.shape is None else ", ".join("?" if d is None else str(d) for d in self.shape)
        return f"{self.name} {self.dtype} [{dims}]"


@dataclass
class ModelInfo:
    """What the scanner read from an ONNX file without running it."""

    path: Path
    sha256: str
    opset: int | None
    producer: str
    metadata: dict[str, str]
    data_inputs: list[TensorInfo]
    outputs: list[TensorInfo]
    has_external_data: bool
    initializer_inputs: int = 0  # graph inputs that have an initializer (weights): not fed

    @property
    def input(self) -> TensorInfo:
        return self.data_inputs[0]


_RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime_gpu")


def runtime_distributions(site_dir: str | Path | None = None) -> set[str]:
    """Which of onnxruntime / onnxruntime-gpu have their metadata in ``site_dir``.

    ``site_dir`` defaults to the folder that holds the ``onnxruntime`` package (found without
    importing it). The two distributions break each other exactly when they share that
    folder, and listing it is cheaper than importing ``importlib.metadata`` on every start.
    """
    if site_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            return set()
        site_dir = Path(list(spec.submodule_search_locations)[0]).parent
    found = set()
    with contextlib.suppress(OSError), os.scandir(site_dir) as entries:
        for entry in entries:
            name, dot, kind = entry.name.rpartition(".")
            if dot and kind in ("dist-info", "egg-info"):
                dist = name.split("-", 1)[0].lower().replace(".", "_")
                if dist in _RUNTIME_DISTRIBUTIONS:
                    found.add(dist)
    return found


def check_runtime(site_dir: str | Path | None = None) -> None:
    """Fail early, with the fix, when onnxruntime and onnxruntime-gpu are both installed."""
    if len(runtime_distributions(site_dir)) == 2:
        raise ModelLoadError(
            "both onnxruntime and onnxruntime-gpu are installed, which breaks both (they share one "
            "folder); fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"onnxruntime cannot be imported ({exc}); fix: pip install onnxruntime-gpu") from None


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_model(path: str | Path):
    """Parse an ONNX file's graph (external weights are checked, not loaded)."""
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    try:
        proto = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises several types for truncated or foreign bytes
        raise ModelLoadError(
            f"{path} is not a readable ONNX model (truncated or not ONNX: {type(exc).__name__})"
        ) from None
    if not proto.graph.node or not proto.opset_import or not proto.graph.output:
        raise ModelLoadError(f"{path} is not an ONNX model (no graph, nodes or outputs were found)")
    _check_external_data(proto, path)
    return proto


def _external_tensors(proto):
    import onnx

    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def _check_external_data(proto, path: Path) -> None:
    needed: dict[str, int] = {}
    for tensor in _external_tensors(proto):
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        needed[location] = max(needed.get(location, 0), end)
    for location, end in needed.items():
        data_path = path.parent / location
        if not data_path.is_file():
            raise ModelLoadError(
                f"the model's weights are in an external file {location!r} that is missing "
                f"(expected at {data_path}); copy it next to the model"
            )
        if data_path.stat().st_size < end:
            raise ModelLoadError(
                f"external data file {data_path} is truncated ({data_path.stat().st_size} bytes, "
                f"the model needs {end})"
            )


def _tensor_info(value_info) -> TensorInfo:
    ttype = value_info.type.tensor_type
    dtype = _ELEM_TYPES.get(ttype.elem_type, f"type{ttype.elem_type}")
    if not ttype.HasField("shape"):
        return TensorInfo(value_info.name, dtype, None)
    dims = []
    for dim in ttype.shape.dim:
        if dim.HasField("dim_value"):
            dims.append(int(dim.dim_value))
        elif dim.HasField("dim_param") and dim.dim_param:
            dims.append(dim.dim_param)
        else:
            dims.append(None)
    return TensorInfo(value_info.name, dtype, tuple(dims))


def inspect_proto(proto, path: Path) -> ModelInfo:
    initializers = {t.name for t in proto.graph.initializer}
    data_inputs = [_tensor_info(v) for v in proto.graph.input if v.name not in initializers]
    outputs = [_tensor_info(v) for v in proto.graph.output]
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    producer = " ".join(p for p in (proto.producer_name, proto.producer_version) if p)
    if not data_inputs:
        raise ModelLoadError(f"{path} has no data input (every graph input has an initializer)")
    if len(data_inputs) > 1:
        listed = ", ".join(str(t) for t in data_inputs)
        raise ModelLoadError(
            f"{path} has {len(data_inputs)} data inputs ({listed}); the scanner feeds a classifier with one "
            "image input (a training graph? export the inference graph)"
        )
    return ModelInfo(
        path=path,
        sha256=file_sha256(path),
        opset=opset,
        producer=producer or "unknown",
        metadata={p.key: p.value for p in proto.metadata_props},
        data_inputs=data_inputs,
        outputs=outputs,
        has_external_data=any(True for _ in _external_tensors(proto)),
        initializer_inputs=sum(1 for v in proto.graph.input if v.name in initializers),
    )


# -- what the graph implies about preprocessing ------------------------------------------------

def infer_from_graph(info: ModelInfo) -> dict[str, Any]:
    """Spec fields implied by the input tensor's shape and type (a layer for spec merging)."""
    inp = info.input
    out: dict[str, Any] = {}
    if inp.dtype == "uint8":
        out["pixel_range"] = "byte"
    shape = inp.shape
    if shape is None:
        return out
    known = [d if isinstance(d, int) else None for d in shape]
    if len(shape) == 4:
        c1, c3 = known[1], known[3]
        if c1 in (1, 3) and c3 not in (1, 3):
            out.update(layout="nchw", channels=c1, height=known[2], width=known[3])
        elif c3 in (1, 3) and c1 not in (1, 3):
            out.update(layout="nhwc", channels=c3, height=known[1], width=known[2])
        elif c1 in (1, 3):  # e.g. [N, 3, 3, 3]: NCHW is the common convention
            out.update(layout="nchw", channels=c1, height=known[2], width=known[3])
    elif len(shape) == 2 and known[1] is not None:
        out["layout"] = "flat"
        flat = known[1]
        for channels in (3, 1):
            side = int(round((flat / channels) ** 0.5))
            if flat % channels == 0 and side * side * channels == flat:
                out.update(channels=channels, height=side, width=side)
                break
    return {k: v for k, v in out.items() if v is not None}


def check_spec_fits(spec: Spec, info: ModelInfo) -> None:
    """Raise if the resolved spec cannot feed the model's input tensor."""
    inp = info.input
    if spec.input_name is not None and spec.input_name != inp.name:
        names = ", ".join(t.name for t in info.data_inputs)
        raise SpecError(f"input {spec.input_name!r} not found; the model's data input is {names}")
    if spec.height is None or spec.width is None:
        raise SpecError(
            f"cannot tell the input image size from the model (input {inp}); pass --size HxW or a spec file"
        )
    if inp.dtype not in _FEEDABLE:
        raise ModelLoadError(f"input {inp} has element type {inp.dtype}; the scanner feeds float or uint8 images")
    expected = spec_input_shape(spec)
    if inp.shape is None:
        return
    if len(inp.shape) != len(expected):
        raise SpecError(
            f"layout {spec.layout} means input rank {len(expected)}, but the model input is {inp}; "
            "pass --layout nchw|nhwc|flat"
        )
    for axis, (want, have) in enumerate(zip(expected, inp.shape)):
        if axis > 0 and isinstance(have, int) and have != want:
            shown = ", ".join(str(d) for d in expected[1:])
            raise SpecError(
                f"the spec ({spec.layout}, {spec.channels} channel(s), {spec.height}x{spec.width}) gives "
                f"input [N, {shown}] but the model input is {inp}; fix --layout/--size or the spec"
            )


def spec_input_shape(spec: Spec) -> tuple[Any, ...]:
    c, h, w = spec.channels, spec.height, spec.width
    if spec.layout == "nchw":
        return ("N", c, h, w)
    if spec.layout == "nhwc":
        return ("N", h, w, c)
    return ("N", h * w * c)


def choose_output(info: ModelInfo, name: str | None) -> tuple[TensorInfo, str, str]:
    """Pick the output to read: (tensor, kind "scores"|"labels", how it was chosen)."""
    if name is not None:
        for out in info.outputs:
            if out.name == name:
                kind = "labels" if out.dtype in _INTEGER else "scores"
                return out, kind, "named by --output-name / spec"
        raise SpecError(f"output {name!r} not found; outputs: {', '.join(str(o) for o in info.outputs)}")
    scores = [o for o in info.outputs if o.dtype in ("float32", "float16", "float64") and _is_nk(o)]
    labels = [o for o in info.outputs if o.dtype in _INTEGER and _is_label_shape(o)]
    if len(scores) == 1:
        return scores[0], "scores", "the only [N, K] float output"
    if len(scores) > 1:
        hinted = [o for o in scores if any(h in o.name.lower() for h in ("logit", "prob", "score", "pred"))]
        pick = hinted[0] if len(hinted) == 1 else scores[-1]
        others = ", ".join(o.name for o in scores)
        return pick, "scores", f"one of several [N, K] outputs ({others}); override with --output-name"
    if labels:
        return labels[0], "labels", "integer label output (SCALE-UP needs only labels)"
    raise ModelLoadError(
        "no output looks like class scores [N, K] or labels [N]; outputs: "
        + ", ".join(str(o) for o in info.outputs)
        + "; pick one with --output-name"
    )


def _is_nk(t: TensorInfo) -> bool:
    if t.shape is None:
        return True
    if len(t.shape) == 2:
        return not (isinstance(t.shape[1], int) and t.shape[1] < 2)
    return len(t.shape) == 3 and t.shape[1] == 1


def _is_label_shape(t: TensorInfo) -> bool:
    return t.shape is None or len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)


def num_classes(out: TensorInfo, kind: str) -> int | None:
    if kind == "scores" and out.shape and isinstance(out.shape[-1], int):
        return out.shape[-1]
    return None


# -- batch dimension ---------------------------------------------------------------------------

def make_batch_symbolic(proto):
    """Return a copy of ``proto`` with a fixed batch of 1 made symbolic, or None if not possible.

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


# -- providers and sessions --------------------------------------------------------------------

def _cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def _captured_stderr():
    """Capture what C++ code writes to fd 2 (ORT's CUDA probing prints errors there)."""
    captured = {"text": ""}
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured["text"] = tmp.read().decode("utf-8", "replace").strip()


def create_session(model: str | bytes, device: str, *, threads: int | None = None):
    """An ONNX Runtime session on ``device`` ("auto", "cpu" or "cuda") and the provider in use.

    "auto" tries CUDA only when a driver is present and keeps it only if the session really
    got it (``get_providers()[0]``); onnxruntime-gpu lists CUDA as available even without a GPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    if threads:
        options.intra_op_num_threads = threads

    def build(providers):
        return ort.InferenceSession(model, sess_options=options, providers=providers)

    want_cuda = device == "cuda" or (device == "auto" and _cuda_driver_present())
    if want_cuda and "CUDAExecutionProvider" in ort.get_available_providers():
        with _captured_stderr() as err:
            try:
                session = build(["CUDAExecutionProvider", "CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - reported below, CPU retried for auto
                session, failure = None, str(exc).splitlines()[0]
            else:
                failure = None
        if session is not None and session.get_providers()[0] == "CUDAExecutionProvider":
            return session, "CUDAExecutionProvider"
        reason = _short_ort_error(failure or err["text"]) or "the session fell back to CPU"
        if device == "cuda":
            raise ModelLoadError(f"--device cuda: ONNX Runtime could not use CUDA ({reason})")
        log.info("CUDA not usable (%s); running on CPU", reason)
    elif device == "cuda":
        raise ModelLoadError(
            "--device cuda: this ONNX Runtime has no CUDA provider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu and a CUDA driver"
        )
    elif device == "auto" and want_cuda is False:
        log.debug("no CUDA driver found; running on CPU")
    try:
        return build(["CPUExecutionProvider"]), "CPUExecutionProvider"
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"ONNX Runtime cannot load the model: {first}") from None


def _short_ort_error(text: str | None) -> str:
    """The useful tail of an ONNX Runtime C++ error line (drops timestamps and source paths)."""
    if not text:
        return ""
    line = text.strip().splitlines()[0]
    return line.rsplit("FAIL : ", 1)[-1].strip()


@dataclass
class BatchPlan:
    """How batches reach the session: dynamic, rewritten from batch 1, padded, or one by one."""

    mode: str  # "symbolic" | "rewritten" | "padded" | "per-sample"
    fixed: int | None = None  # the fixed batch size for "padded"
    note: str = ""
    fallback: Any = None  # "rewritten": the original session, to re-verify on the first real batch


def _outputs_agree(batched: np.ndarray, singles: np.ndarray) -> bool:
    return batched.shape == singles.shape and np.allclose(batched, singles, rtol=1e-4, atol=1e-5)


@dataclass
class OnnxClassifier:
    """A loaded ONNX classifier that maps model-layout float32 batches to integer labels."""

    info: ModelInfo
    spec: Spec
    session: Any
    provider: str
    output: TensorInfo
    output_kind: str
    output_note: str
    plan: BatchPlan
    notes: list[str] = field(default_factory=list)

    @property
    def input_dtype(self) -> str:
        return self.info.input.dtype

    @property
    def max_batch(self) -> int | None:
        """Largest batch one session call takes (None: any)."""
        return {"per-sample": 1, "padded": self.plan.fixed}.get(self.plan.mode)

    def predict(self, batch: np.ndarray, *, probabilities: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Labels (N,) int64 and, if asked and the model outputs scores, probabilities (N, K).

        ``batch`` is float32, already in the model's layout and range.
        """
        out = self._outputs(batch)
        labels = labels_from_output(out, self.output_kind, len(batch))
        probs = to_probabilities(out, len(batch)) if probabilities and self.output_kind == "scores" else None
        return labels, probs

    def predict_labels(self, batch: np.ndarray) -> np.ndarray:
        return self.predict(batch)[0]

    def _outputs(self, batch: np.ndarray) -> np.ndarray:
        """The raw output for every row, chunked and padded as the batch plan requires."""
        if self.plan.mode == "rewritten" and self.plan.fallback is not None:
            self._verify_rewrite(batch)
        if self.plan.mode in ("symbolic", "rewritten"):
            return self._run(batch)
        step = self.max_batch
        parts = []
        for start in range(0, len(batch), step):
            chunk = batch[start:start + step]
            if len(chunk) < step:  # pad a fixed batch with zeros, keep only real rows
                padded = np.zeros((step,) + batch.shape[1:], dtype=batch.dtype)
                padded[: len(chunk)] = chunk
                parts.append(self._run(padded)[: len(chunk)])
            else:
                parts.append(self._run(chunk))
        return np.concatenate(parts)

    def _verify_rewrite(self, batch: np.ndarray) -> None:
        """Check the rewritten batch-1 model once more on real inputs; fall back on mismatch."""
        original, self.plan.fallback = self.plan.fallback, None
        rows = _cast_input(batch[: min(8, len(batch))], self.input_dtype)
        batched = self.session.run([self.output.name], {self.info.input.name: rows})[0]
        singles = np.concatenate(_per_sample_outputs(original, self.info.input.name, self.output.name, rows))
        if not _outputs_agree(batched, singles):
            log.warning("the batch-1 model made symbolic disagrees with per-sample runs on real inputs; "
                        "running one input per call")
            self.session = original
            self.plan = BatchPlan("per-sample", 1, "batch fixed to 1; the symbolic rewrite disagreed with "
                                  "per-sample outputs on real inputs: one input per call")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        feed = _cast_input(batch, self.input_dtype)
        (out,) = self.session.run([self.output.name], {self.info.input.name: feed})
        return np.asarray(out).reshape(len(batch), -1)


def _cast_input(batch: np.ndarray, dtype: str) -> np.ndarray:
    if dtype == "float32":
        return batch
    if dtype == "uint8":
        return np.clip(np.rint(batch), 0, 255).astype(np.uint8)
    return batch.astype(dtype)


def labels_from_output(out: np.ndarray, kind: str, n: int) -> np.ndarray:
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


def _per_sample_outputs(session, input_name, output_name, batch):
    return [session.run([output_name], {input_name: batch[i:i + 1]})[0] for i in range(len(batch))]


def plan_batches(proto, info: ModelInfo, spec: Spec, output: TensorInfo, device: str, threads: int | None):
    """Create the session and decide how to batch. Returns (session, provider, BatchPlan)."""
    path = str(info.path)
    batch_dim = info.input.shape[0] if info.input.shape else None
    if not isinstance(batch_dim, int):
        session, provider = create_session(path, device, threads=threads)
        return session, provider, BatchPlan("symbolic")
    session, provider = create_session(path, device, threads=threads)
    if batch_dim > 1:
        return session, provider, BatchPlan("padded", batch_dim, f"batch fixed to {batch_dim}: inputs are padded")
    # Fixed batch of 1: try to make it symbolic, and trust the rewrite only if it agrees with
    # per-sample outputs on a few inputs.
    # Samples of very different brightness, so a graph that mixes the batch shows it.
    rng = np.random.default_rng(0)
    shape = (4,) + tuple(int(d) for d in info.input.shape[1:])
    sample = rng.random(shape, dtype=np.float32)
    sample *= np.array([0.02, 0.3, 0.7, 1.0], dtype=np.float32).reshape((4,) + (1,) * (len(shape) - 1))
    spec.normalize_(sample)
    sample = _cast_input(sample, info.input.dtype)
    try:
        rewritten = make_batch_symbolic(proto)
        if info.has_external_data:
            import onnx

            onnx.load_external_data_for_model(rewritten, str(info.path.parent))
        blob = rewritten.SerializeToString()
        with _captured_stderr():
            fast, fast_provider = create_session(blob, provider_to_device(provider), threads=threads)
            batched = fast.run([output.name], {info.input.name: sample})[0]
        singles = np.concatenate(_per_sample_outputs(session, info.input.name, output.name, sample))
        if _outputs_agree(batched, singles):
            return fast, fast_provider, BatchPlan("rewritten", note="batch fixed to 1: made symbolic and verified",
                                                  fallback=session)
        reason = "batched outputs differ from per-sample outputs"
    except Exception as exc:  # noqa: BLE001 - any failure means: fall back to the loop
        reason = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
    return session, provider, BatchPlan("per-sample", 1, f"batch fixed to 1 and not rewritable ({reason}): one input per call")


def provider_to_device(provider: str) -> str:
    return "cuda" if provider == "CUDAExecutionProvider" else "cpu"
