"""The preprocessing spec: how a model wants its pixels, in one versioned schema.

A spec says how an image with pixel values in [0, 1] (decoded, resized, RGB) becomes the model's
input tensor; :mod:`scanner.model.preprocess` compiles it into the function that does so. The same schema is written into ONNX ``metadata_props`` by ``exporters/`` (key
``scanner.spec``), read from ``--spec FILE``, and built from command-line flags.

Model input, from a unit-range image ``x`` (after SCALE-UP's ``clip(n * x, 0, 1)``)::

    x = x[..., ::-1]                    if bgr
    x = x * 255                         if pixel_range == "byte"
    x = (x - mean) / std                if mean/std given (in the units of pixel_range)
    then arranged as layout: nchw (N, C, H, W), nhwc (N, H, W, C) or flat (N, H*W*C)

Precedence, highest first: flags, spec file, model metadata, what the graph's input shape
implies, defaults (:mod:`scanner.model.resolve` gathers the layers). ``ResolvedSpec.sources`` records
where each field came from.
"""

from __future__ import annotations

import json
import logging
import math
from enum import Enum
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .._validation import MAX_SIDE, check_size, load_json
from ..errors import SpecError

log = logging.getLogger("scanner")

SCHEMA_VERSION = 1
METADATA_KEY = "scanner.spec"
# Bounds on the strings a spec may carry (a model's metadata is written by whoever made the model;
# 10 class names of 5 MB each once gave a 305 MB HTML report). A spec's JSON text (spec file or
# metadata value) over MAX_SPEC_BYTES is refused unread; a class name over MAX_NAME_CHARS is cut to
# that length with one warning line (names are labels in reports: a folder name, at most 255
# bytes, is never cut); an input or output name over it is refused (it must name a graph tensor).
MAX_SPEC_BYTES = 4 << 20
MAX_NAME_CHARS = 1024
MAX_CLASS_NAMES = 100_000
LAYOUTS = ("nchw", "nhwc", "flat")
PIXEL_RANGES = ("unit", "byte")


class Layout(str, Enum):
    """Input layouts, as command-line choices."""

    nchw = "nchw"
    nhwc = "nhwc"
    flat = "flat"


class PixelRange(str, Enum):
    """Input value ranges, as command-line choices: unit = [0, 1], byte = [0, 255]."""

    unit = "unit"
    byte = "byte"

# Fields a spec file / metadata / flags may set. Anything else is rejected, so a typo is an
# error rather than a silently ignored setting.
SPEC_FIELDS = (
    "layout",
    "height",
    "width",
    "channels",
    "pixel_range",
    "mean",
    "std",
    "bgr",
    "class_names",
    "input_name",
    "output_name",
)

DEFAULTS: dict[str, Any] = {
    "layout": "nchw",
    "height": None,
    "width": None,
    "channels": 3,
    "pixel_range": "unit",
    "mean": None,
    "std": None,
    "bgr": False,
    "class_names": None,
    "input_name": None,
    "output_name": None,
}


@dataclass(frozen=True)
class Spec:
    """How to turn unit-range RGB images into this model's input tensor.

    Attributes
    ----------
    layout : {"nchw", "nhwc", "flat"}
    height, width : int
        Size the images are resized to.
    channels : {1, 3}
        1 means the image is converted to grayscale.
    pixel_range : {"unit", "byte"}
        Whether the model expects values in [0, 1] or [0, 255].
    mean, std : tuple of float, length ``channels`` (or 1), or None
        Normalization the scanner applies outside the graph, in ``pixel_range`` units.
    bgr : bool
        Reverse the channel order (RGB -> BGR) before feeding.
    class_names : tuple of str or None
    input_name, output_name : str or None
        Graph tensors to feed and read; None lets the model loader choose.
    """

    layout: str = "nchw"
    height: int | None = None
    width: int | None = None
    channels: int = 3
    pixel_range: str = "unit"
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    bgr: bool = False
    class_names: tuple[str, ...] | None = None
    input_name: str | None = None
    output_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The versioned JSON-ready form, the same for spec files and model metadata."""
        out: dict[str, Any] = {"schema_version": SCHEMA_VERSION}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=False)


@dataclass(frozen=True)
class ResolvedSpec:
    """A :class:`Spec` plus, for each field, where its value came from."""

    spec: Spec
    sources: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        lines = []
        for name in SPEC_FIELDS:
            value = getattr(self.spec, name)
            if isinstance(value, tuple) and name == "class_names" and len(value) > 12:
                value = f"{len(value)} names: {', '.join(value[:5])}, ..."
            lines.append(f"  {name:<12} {value!s:<28} ({self.sources.get(name, 'default')})")
        return "\n".join(lines)


def validate_spec_dict(data: Any, *, origin: str) -> dict[str, Any]:
    """Check a spec mapping (from a file, metadata or flags) and return it normalized.

    Only keys that are present are returned, so layers can be merged by precedence.
    """
    if not isinstance(data, dict):
        raise SpecError(f"{origin}: expected a JSON object, got {type(data).__name__}")
    data = dict(data)
    version = data.pop("schema_version", SCHEMA_VERSION)
    if isinstance(version, bool) or version != SCHEMA_VERSION:  # true == 1 in Python, not in the schema
        raise SpecError(
            f"{origin}: spec schema_version {version!r} is not supported (this scanner reads {SCHEMA_VERSION})"
        )
    unknown = sorted(set(data) - set(SPEC_FIELDS))
    if unknown:
        raise SpecError(f"{origin}: unknown spec field(s) {', '.join(unknown)}; allowed: {', '.join(SPEC_FIELDS)}")
    out: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            out[key] = None
            continue
        try:
            out[key] = _check_field(key, value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise SpecError(f"{origin}: field {key!r}: {exc}") from None
    if out.get("class_names"):
        out["class_names"] = _cut_long_names(out["class_names"], origin)
    return out


def _cut_long_names(names: tuple[str, ...], origin: str) -> tuple[str, ...]:
    long = sum(len(n) > MAX_NAME_CHARS for n in names)
    if not long:
        return names
    log.warning("%s: %d class name(s) longer than %d characters (the longest %d) cut to %d", origin, long,
                MAX_NAME_CHARS, max(len(n) for n in names), MAX_NAME_CHARS)
    return tuple(n if len(n) <= MAX_NAME_CHARS else n[:MAX_NAME_CHARS - 3] + "..." for n in names)


def _check_field(key: str, value: Any) -> Any:
    if key == "layout":
        value = str(value).lower()
        if value not in LAYOUTS:
            raise ValueError(f"expected one of {', '.join(LAYOUTS)}, got {value!r}")
        return value
    if key == "pixel_range":
        value = str(value).lower()
        if value not in PIXEL_RANGES:
            raise ValueError(f"expected one of {', '.join(PIXEL_RANGES)}, got {value!r}")
        return value
    if key in ("height", "width"):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or int(value) != value or int(value) < 1:
            raise ValueError(f"expected a positive integer, got {value!r}")
        if value > MAX_SIDE:
            raise ValueError(f"expected at most {MAX_SIDE} pixels, got {int(value)}")
        return int(value)
    if key == "channels":
        if isinstance(value, bool) or value not in (1, 3):  # true == 1 in Python
            raise ValueError(f"expected 1 or 3, got {value!r}")
        return int(value)
    if key in ("mean", "std"):
        if isinstance(value, (int, float)):
            value = [value]
        if isinstance(value, str) or any(isinstance(v, (bool, str)) for v in value):
            raise ValueError(f"expected numbers, got {value!r}")
        values = tuple(float(v) for v in value)
        if not values or len(values) not in (1, 3):
            raise ValueError(f"expected 1 or 3 numbers, got {len(values)}")
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"expected finite numbers, got {list(values)}")
        if key == "std" and any(v <= 0 for v in values):
            raise ValueError(f"std must be positive, got {list(values)}")
        return values
    if key == "bgr":
        if not isinstance(value, bool):
            raise ValueError(f"expected true or false, got {value!r}")
        return value
    if key == "class_names":
        if isinstance(value, (str, dict)) or not isinstance(value, (list, tuple)) \
                or not all(isinstance(v, str) for v in value):
            raise ValueError("expected a list of strings")
        if len(value) > MAX_CLASS_NAMES:
            raise ValueError(f"{len(value)} names, above the limit of {MAX_CLASS_NAMES}")
        return tuple(value)
    if key in ("input_name", "output_name"):
        if not isinstance(value, str):
            raise ValueError(f"expected a tensor name (a string), got {type(value).__name__}")
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"a name of {len(value)} characters, above the limit of {MAX_NAME_CHARS}")
        return value
    raise AssertionError(key)


def read_spec_file(path: str | Path) -> dict[str, Any]:
    """Read and validate a ``--spec`` JSON file."""
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_SPEC_BYTES + 1)
    except OSError as exc:
        raise SpecError(f"cannot read spec file {path}: {exc.strerror or exc}") from None
    _check_spec_size(len(data), f"spec file {path}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"spec file {path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    data = load_json(text, f"spec file {path}", error=SpecError)
    return validate_spec_dict(data, origin=f"spec file {path}")


def _check_spec_size(size: int, origin: str) -> None:
    if size > MAX_SPEC_BYTES:
        raise SpecError(f"{origin}: {'over ' if size == MAX_SPEC_BYTES + 1 else ''}{size} bytes, above the limit of "
                        f"{MAX_SPEC_BYTES} bytes (4 MiB) for a spec")


def spec_from_metadata(metadata: dict[str, str]) -> dict[str, Any]:
    """The spec layer stored in a model's ``metadata_props`` (empty if none)."""
    raw = metadata.get(METADATA_KEY)
    if raw is None:
        return {}
    _check_spec_size(len(raw.encode("utf-8", "surrogatepass")), f"model metadata {METADATA_KEY!r}")
    data = load_json(raw, f"model metadata {METADATA_KEY!r}", error=SpecError)
    return validate_spec_dict(data, origin=f"model metadata {METADATA_KEY!r}")


def merge_layers(layers: list[tuple[str, dict[str, Any]]]) -> ResolvedSpec:
    """Merge spec layers given highest precedence first; unset fields take defaults."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for source, layer in layers:
        for key, value in layer.items():
            if key not in values and value is not None:
                values[key] = value
                sources[key] = source
    for key, value in DEFAULTS.items():
        if key not in values:
            values[key] = value
            sources[key] = "default"
    spec = Spec(**values)
    if spec.height is not None and spec.width is not None:
        check_size(spec.height, spec.width, f"image size (height from {sources['height']}, width from "
                   f"{sources['width']})", error=SpecError)
    for key in ("mean", "std"):
        stats = getattr(spec, key)
        if stats is not None and len(stats) not in (1, spec.channels):
            raise SpecError(
                f"{key} has {len(stats)} values but the model takes {spec.channels} channel(s) "
                f"({key} from {sources[key]}, channels from {sources['channels']})"
            )
    return ResolvedSpec(spec, sources)

