"""Spec resolution: which preprocessing a model gets and which output is read, and why.

Layers, highest precedence first: options (flags or the library's ``spec=``), a spec file, the
model's metadata, what the graph's input shape implies, defaults. The result records where
every field came from, is checked against the model's input tensor, and names the output to
read with the reason it was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelLoadError, SpecError
from .onnx_file import FEEDABLE, FLOAT, INTEGER, ModelInfo, TensorInfo
from .preprocess import Preprocessor
from .spec import ResolvedSpec, Spec, merge_layers, read_spec_file, spec_from_metadata, validate_spec_dict

# The smallest image side the scanner takes (8 x 8: the smallest image data sets, such as the
# 8 x 8 digits). A "size" such as 28x1 makes a row of tabular features fit a flat input, but it
# is no image, and SCALE-UP's amplification or STRIP's blends mean nothing on it.
MIN_SIDE = 8
IMAGE_INPUTS = "[N, C, H, W], [N, H, W, C] or a flat image [N, H*W*C]"


@dataclass(frozen=True)
class OutputChoice:
    """The output the scanner reads: the tensor, ``kind`` "scores" or "labels", and why."""

    tensor: TensorInfo
    kind: str
    reason: str


def resolve_spec(info: ModelInfo, *, options: dict[str, Any] | None = None,
                 spec_file: str | Path | None = None) -> ResolvedSpec:
    """Merge every layer into a spec that fits ``info``'s input tensor (or raise SpecError)."""
    given = [
        ("option", validate_spec_dict(options or {}, origin="options")),
        ("spec file", read_spec_file(spec_file) if spec_file else {}),
        ("model metadata", spec_from_metadata(info.metadata)),
    ]
    known = {}
    for _, layer in reversed(given):
        known.update({k: v for k, v in layer.items() if v is not None})
    resolved = merge_layers(given + [("inferred from graph", infer_from_graph(info, known))])
    check_spec_fits(resolved.spec, info)
    return resolved


def infer_from_graph(info: ModelInfo, given: dict[str, Any] | None = None) -> dict[str, Any]:
    """Spec fields implied by the input tensor's shape and type (a layer for spec merging).

    ``given`` holds the fields set by higher layers: on a flat input with a given height and
    width, the channel count is what the flat size leaves (``--size 28x1`` on ``[N, 28]`` is
    one channel), not the default 3.
    """
    given = given or {}
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
        h, w = given.get("height"), given.get("width")
        if h and w and "channels" not in given:
            if flat % (h * w) == 0 and flat // (h * w) in (1, 3):
                out["channels"] = flat // (h * w)
        else:
            for channels in (3, 1):
                side = int(round((flat / channels) ** 0.5))
                if flat % channels == 0 and side * side * channels == flat:
                    out.update(channels=channels, height=side, width=side)
                    break
    return {k: v for k, v in out.items() if v is not None}


def looks_like_image(info: ModelInfo) -> bool:
    """Whether the input could be an image: rank 4, or a flat [N, D] with D a square image
    of 1 or 3 channels, or of unknown shape. Anything else (tabular features, sequences) is not."""
    shape = info.input.shape
    if shape is None or len(shape) == 4:
        return True
    if len(shape) == 2 and isinstance(shape[1], int):
        return bool({"height", "channels"} & set(infer_from_graph(info)))
    return len(shape) == 2


def check_spec_fits(spec: Spec, info: ModelInfo) -> None:
    """Raise if the resolved spec cannot feed the model's input tensor, or the input is no image
    (rank other than 2 or 4, or a side under :data:`MIN_SIDE`), whatever the flags say."""
    inp = info.input
    if inp.shape is not None and len(inp.shape) not in (2, 4):
        raise SpecError(f"the model input {inp} is not an image (rank {len(inp.shape)}; an image input is "
                        f"{IMAGE_INPUTS}); the scanner scans image classifiers")
    if spec.input_name is not None and spec.input_name != inp.name:
        names = ", ".join(t.name for t in info.data_inputs)
        raise SpecError(f"input {spec.input_name!r} not found; the model's data input is {names}")
    if spec.height is None or spec.width is None:
        if not looks_like_image(info):
            raise SpecError(
                f"the model input {inp} does not look like an image ([N, C, H, W], [N, H, W, C] or a flat "
                "square image [N, H*W*C]); SCALE-UP scans image classifiers"
            )
        raise SpecError(
            f"cannot tell the input image size from the model (input {inp}); pass --size HxW or a spec file"
        )
    if min(spec.height, spec.width) < MIN_SIDE:
        raise SpecError(
            f"the model input {inp} read as {spec.height}x{spec.width} pixels is not an image (a side under "
            f"{MIN_SIDE} pixels; an image input is {IMAGE_INPUTS}); the scanner scans image classifiers"
        )
    if inp.dtype not in FEEDABLE:
        raise ModelLoadError(f"input {inp} has element type {inp.dtype}; the scanner feeds float or uint8 images")
    expected = Preprocessor(spec).input_shape
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


def choose_output(info: ModelInfo, name: str | None) -> OutputChoice:
    """Pick the output to read: a named one, else the [N, K] float scores, else [N] labels.

    Outputs whose first dimension is the batch (symbolic, or equal to the input's fixed batch)
    are preferred; an intermediate with a fixed first dimension such as ``[128, 3200]`` is read
    only when nothing else fits (and the load-time run then rejects it). A named output must be
    ``[N, K]`` scores or ``[N]`` labels.
    """
    batch = info.input.shape[0] if info.input.shape else None
    if name is not None:
        for out in info.outputs:
            if out.name == name:
                kind = "labels" if out.dtype in INTEGER else "scores"
                fits = _is_label_shape(out) if kind == "labels" else out.dtype in FLOAT and _is_nk(out)
                if not fits:
                    raise SpecError(f"output {out} is not class scores [N, K] or labels [N], so it cannot be "
                                    "read as a classifier's prediction; name another with --output-name")
                if not _batch_first(out, batch):
                    raise SpecError(f"output {out} has a fixed first dimension that is not the input's batch "
                                    f"({info.input}); name a per-input output with --output-name")
                return OutputChoice(out, kind, "named by --output-name / spec")
        raise SpecError(f"output {name!r} not found; outputs: {', '.join(str(o) for o in info.outputs)}")
    for per_input in (True, False):
        scores = [o for o in info.outputs
                  if o.dtype in FLOAT and _is_nk(o) and _batch_first(o, batch) == per_input]
        labels = [o for o in info.outputs
                  if o.dtype in INTEGER and _is_label_shape(o) and _batch_first(o, batch) == per_input]
        skipped = [o.name for o in info.outputs if per_input and not _batch_first(o, batch)]
        note = ("" if not skipped else f" whose first dimension is the batch ({', '.join(skipped)}: fixed, skipped)"
                ) if per_input else "; its first dimension is not the batch"
        if len(scores) == 1:
            return OutputChoice(scores[0], "scores", "the only [N, K] float output" + note)
        if len(scores) > 1:
            hinted = [o for o in scores if any(h in o.name.lower() for h in ("logit", "prob", "score", "pred"))]
            pick = hinted[0] if len(hinted) == 1 else scores[-1]
            others = ", ".join(o.name for o in scores)
            return OutputChoice(pick, "scores",
                                f"one of several [N, K] outputs ({others}); override with --output-name" + note)
        if labels:
            return OutputChoice(labels[0], "labels", "integer label output (SCALE-UP needs only labels)" + note)
    raise ModelLoadError(
        "no output looks like class scores [N, K] or labels [N]; outputs: "
        + ", ".join(str(o) for o in info.outputs)
        + "; pick one with --output-name"
    )


def _batch_first(t: TensorInfo, batch: Any) -> bool:
    """Whether ``t``'s first dimension can be the batch: symbolic or unknown, or equal to the
    input's fixed batch size."""
    if not t.shape:
        return True
    first = t.shape[0]
    return not isinstance(first, int) or (isinstance(batch, int) and first == batch)


def _is_nk(t: TensorInfo) -> bool:
    if t.shape is None:
        return True
    if len(t.shape) == 2:
        return not (isinstance(t.shape[1], int) and t.shape[1] < 2)
    return len(t.shape) == 3 and t.shape[1] == 1


def _is_label_shape(t: TensorInfo) -> bool:
    return t.shape is None or len(t.shape) == 1 or (len(t.shape) == 2 and t.shape[1] == 1)


def num_classes(choice: OutputChoice, spec: Spec) -> int | None:
    """K from the output's declared shape, else from the spec's class names, else unknown."""
    shape = choice.tensor.shape
    if choice.kind == "scores" and shape and isinstance(shape[-1], int):
        return shape[-1]
    return len(spec.class_names) if spec.class_names else None
