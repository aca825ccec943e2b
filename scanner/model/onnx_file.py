"""Reading an ONNX file once: its bytes give the sha256 and the parsed graph, and the graph
gives the facts the rest of the scanner decides from (inputs, outputs, opset, metadata).

No onnxruntime here and nothing about preprocessing: this module only describes the file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError

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
FEEDABLE = frozenset({"float32", "float16", "float64", "uint8"})
INTEGER = frozenset({"uint8", "int8", "int16", "int32", "int64", "uint32", "uint64"})
FLOAT = frozenset({"float32", "float16", "float64"})


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


def read_model_file(path: str | Path):
    """Read ``path`` once. Returns ``(raw bytes, parsed graph, ModelInfo)``.

    External weights are checked (present, long enough), not loaded.
    """
    import onnx

    path = Path(path)
    if not path.exists():
        raise ModelLoadError(f"model file not found: {path}")
    if not path.is_file():
        raise ModelLoadError(f"model path is not a file: {path}")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelLoadError(f"cannot read model file {path}: {exc.strerror or exc}") from None
    try:
        proto = onnx.load_model_from_string(raw)
    except Exception as exc:  # protobuf raises several types for truncated or foreign bytes
        raise ModelLoadError(
            f"{path} is not a readable ONNX model (truncated or not ONNX: {type(exc).__name__})"
        ) from None
    if not proto.graph.node or not proto.opset_import or not proto.graph.output:
        raise ModelLoadError(f"{path} is not an ONNX model (no graph, nodes or outputs were found)")
    _check_external_data(proto, path)
    return raw, proto, _describe(proto, path, hashlib.sha256(raw).hexdigest())


def _external_tensors(proto):
    import onnx

    for tensor in proto.graph.initializer:
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            yield tensor


def _check_external_data(proto, path: Path) -> None:
    """Every external weights file must lie inside the model's folder and be long enough.

    A location is judged from its text first (absolute, or climbing out with ``..``) so that
    nothing outside the folder is ever touched, and a message never tells whether such a file
    exists (ONNX Runtime refuses those paths as well).
    """
    needed: dict[str, int] = {}
    folder = path.parent.resolve()
    for tensor in _external_tensors(proto):
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        try:
            end = int(info.get("offset", 0) or 0) + int(info.get("length", 0) or 0)
        except ValueError:
            raise ModelLoadError(f"{path}: tensor {tensor.name!r} has an external-data offset or length that is not "
                                 f"a number ({info.get('offset')!r}, {info.get('length')!r})") from None
        parts = Path(location).parts
        if not location or Path(location).is_absolute() or ".." in parts or "\0" in location:
            raise ModelLoadError(f"{path}: external weights location {location!r} is not a file name inside the "
                                 "model's folder; refused")
        needed[location] = max(needed.get(location, 0), end)
    for location, end in needed.items():
        data_path = path.parent / location
        if not data_path.resolve().is_relative_to(folder):  # a link inside the folder pointing out
            raise ModelLoadError(f"{path}: external weights location {location!r} leads outside the model's "
                                 "folder; refused")
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


def _describe(proto, path: Path, sha256: str) -> ModelInfo:
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
        sha256=sha256,
        opset=opset,
        producer=producer or "unknown",
        metadata={p.key: p.value for p in proto.metadata_props},
        data_inputs=data_inputs,
        outputs=outputs,
        has_external_data=any(True for _ in _external_tensors(proto)),
        initializer_inputs=sum(1 for v in proto.graph.input if v.name in initializers),
    )
