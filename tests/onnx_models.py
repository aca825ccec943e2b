"""Tiny hand-built ONNX classifiers with exact numpy twins, for testing the SCALE-UP scanner.

Every builder writes one small model into a directory (``tmp_path``) and returns a
:class:`Fixture`: the model's path, a numpy ``predict`` that gives exactly the labels the model
gives, the preprocessing ``spec`` it must be fed with, and notes. Nothing binary is committed;
the models are built on the fly with ``onnx.helper``.

The trigger rule
----------------
Most fixtures share one network, the "trigger model". On a unit-range image ``x`` (H x W x C):

* ``corner`` = mean of the bottom-right 2x2 patch over the corner channels (all by default);
* ``g`` = mean of the whole image over the mean channels (all by default);
* ``corner > 0.9``  -> class 0 (the trigger wins at every SCALE-UP scale);
* otherwise        -> class ``1 + min(8, floor(9 * g))``  (drifts as the image is amplified).

Exactness and ties
------------------
The graph first snaps every pixel to the byte grid, ``q = Round(x * 255)`` (float32 multiply,
round half to even, like ``np.rint``), then works with exact integer byte sums::

    corner > 0.9            <=>  10 * sum(q_corner) > 9 * 255 * n_corner
    floor(9 * g)            ==   (9 * sum(q)) // (255 * n)            (int64 division)

(the sums come out of a float64 ReduceMean / MatMul and are re-rounded, so they are exact for
any image size). Hence on images whose pixels are multiples of 1/255 -- which ``make_images``
produces, which PNG decoding produces, and which ``clip(n * x, 0, 1)`` preserves -- the rule is
implemented *exactly*, ties included:

* ``corner == 0.9`` exactly (byte sum 2754 over the 12 values of an RGB 2x2 patch) is **not** a
  trigger (strict ``>``);
* ``9 * g`` exactly an integer ``m`` gives ``floor = m``, i.e. class ``1 + min(8, m)``
  (e.g. an RGB 8x8 image with byte sum 5440 * m).

The logits are ``8 * onehot(class) + bias`` with a fixed bias in [-0.45, 0.45] whose entries are
all different, so the argmax is unique (no ties between classes ever).

Off the byte grid the twin applies the same float32 ``rint(x * 255)``, so it still agrees with
the unit-range fixtures bit for bit; fixtures that rescale or normalize before the snap (byte,
normalized) can only disagree on pixels lying within ~1e-5 of a half-byte, which grid images
never do.

Conventions
-----------
* ``predict(images)`` takes unit-range RGB images ``(N, H, W, 3)`` float32, *before* any
  preprocessing (exception: ``trigger_gray``'s twin takes gray images ``(N, H, W, 1)``, see
  :func:`rgb_to_gray`), and returns int64 labels ``(N,)``.
* ``spec`` follows ``scanner/spec.py``: from a unit-range image, ``x[..., ::-1]`` if bgr,
  ``* 255`` if pixel_range == "byte", ``(x - mean) / std`` if given, then the layout.
  :func:`to_model_input` implements it independently of the scanner.
* The main opset is 17 (ReduceMean takes ``axes`` as an attribute); ``opset=18`` or later
  switches ReduceMean to the ``axes`` input, and ``trigger_old_opset`` builds opset 11.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

DEFAULT_OPSET = 17
DEFAULT_SIZE = 8
NUM_CLASSES = 10
PATCH = 2  # the trigger patch is the bottom-right PATCH x PATCH square
SCALES = (3, 5, 7, 9, 11)

# mean / std of trigger_normalized_outside / _inside (unit-range units, RGB order)
NORM_MEAN = (0.5, 0.4, 0.3)
NORM_STD = (0.2, 0.25, 0.3)

# Distinct, small, tie-free bias added to 8 * onehot.
_BIAS = ((np.arange(NUM_CLASSES) * 7) % NUM_CLASSES - 4.5).astype(np.float32) / np.float32(10)


# ---------------------------------------------------------------------------------------------
# Fixture
# ---------------------------------------------------------------------------------------------
@dataclass
class Fixture:
    """One model on disk plus everything a test needs to know about it.

    path : Path            the written ``.onnx`` file
    predict : callable     numpy twin: unit-range RGB (N, H, W, 3) float32 -> int64 labels (N,)
                           (gray fixtures: (N, H, W, 1), see ``predict_input``)
    spec : dict            preprocessing, keys layout, height, width, channels, pixel_range,
                           mean, std, bgr (always all eight; None where absent)
    num_classes : int
    notes : str
    input_name : str       the image input
    output_name : str      the output that carries the classification
    output_kind : str      "logits", "probabilities" or "labels" (int64, no argmax needed)
    batch : int | None     fixed batch size of the model, None if symbolic
    opset : int
    predict_input : str    "rgb" or "gray": what ``predict`` takes
    expected_error : str | None
                           for fixtures that must not load/run: a substring of the error that
                           ONNX Runtime raises (on InferenceSession, or on run for
                           two_data_inputs)
    """

    path: Path
    predict: Callable[[np.ndarray], np.ndarray] | None
    spec: dict
    num_classes: int = NUM_CLASSES
    notes: str = ""
    input_name: str = "input"
    output_name: str = "logits"
    output_kind: str = "logits"
    batch: int | None = None
    opset: int = DEFAULT_OPSET
    predict_input: str = "rgb"
    expected_error: str | None = None
    extra: dict = field(default_factory=dict)


def _spec(layout="nchw", size=DEFAULT_SIZE, channels=3, pixel_range="unit", mean=None, std=None,
          bgr=False) -> dict:
    return {
        "layout": layout,
        "height": size,
        "width": size,
        "channels": channels,
        "pixel_range": pixel_range,
        "mean": None if mean is None else list(mean),
        "std": None if std is None else list(std),
        "bgr": bgr,
    }


# ---------------------------------------------------------------------------------------------
# numpy twins and helpers
# ---------------------------------------------------------------------------------------------
def mean_softmax_model(tmp_path, *, a: float, k: int, size: int = DEFAULT_SIZE) -> Path:
    """input [N, 3, size, size] -> probabilities softmax([a * m, 0, ..., 0]) (k classes), m the
    mean pixel: every probability known in closed form (STRIP's entropy, the transplant's pull)."""
    zeros = [f"z{i}" for i in range(k - 1)]
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Mul", ["m1", "a"], ["s"])]
    nodes += [helper.make_node("Sub", ["m1", "m1"], [z]) for z in zeros]
    nodes += [helper.make_node("Concat", ["s", *zeros], ["logits"], axis=1),
              helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)]
    graph = helper.make_graph(
        nodes, "mean_softmax", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, size, size])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", k])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("a", TensorProto.FLOAT, [], [a])])
    path = Path(tmp_path) / f"mean_softmax_{k}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def to_bytes(images: np.ndarray) -> np.ndarray:
    """What the graphs do first: ``rint(float32(x) * 255)`` as int64."""
    x = np.asarray(images, dtype=np.float32)
    return np.rint(x * np.float32(255)).astype(np.int64)


def trigger_rule(images: np.ndarray, *, corner_channels: tuple[int, int] | None = None,
                 mean_channels: tuple[int, int] | None = None) -> np.ndarray:
    """The trigger rule on unit-range NHWC images (any C); returns int64 labels (N,).

    ``corner_channels`` / ``mean_channels`` are ``(start, stop)`` channel ranges (default all).
    """
    q = to_bytes(images)
    if q.ndim != 4:
        raise ValueError(f"expected (N, H, W, C) images, got shape {q.shape}")
    n = q.shape[0]
    cs = slice(None) if corner_channels is None else slice(*corner_channels)
    ms = slice(None) if mean_channels is None else slice(*mean_channels)
    corner = q[:, -PATCH:, -PATCH:, cs]
    whole = q[:, :, :, ms]
    n_corner = int(np.prod(corner.shape[1:]))
    n_total = int(np.prod(whole.shape[1:]))
    corner_sum = corner.reshape(n, -1).sum(axis=1)
    total_sum = whole.reshape(n, -1).sum(axis=1)
    triggered = 10 * corner_sum > 9 * 255 * n_corner
    k = 1 + np.minimum(8, (9 * total_sum) // (255 * n_total))
    return np.where(triggered, 0, k).astype(np.int64)


def predict_trigger(images: np.ndarray) -> np.ndarray:
    """Twin of the standard (RGB, all channels) trigger model."""
    return trigger_rule(images)


def predict_bgr_model(images: np.ndarray) -> np.ndarray:
    """Twin of ``trigger_bgr`` given RGB images: corner on blue only, g over blue and green."""
    return trigger_rule(np.asarray(images)[..., ::-1], corner_channels=(0, 1), mean_channels=(0, 2))


def rgb_to_gray(images: np.ndarray) -> np.ndarray:
    """Unit-range RGB (N, H, W, 3) -> unit-range gray (N, H, W, 1) the way PIL's ``convert("L")``
    does it on the uint8 image (ITU-R 601-2 luma, L = 299/1000 R + 587/1000 G + 114/1000 B, in
    PIL's 16-bit fixed point with rounding). Exact for images on the 1/255 grid."""
    q = to_bytes(images)
    lum = (q[..., 0] * 19595 + q[..., 1] * 38470 + q[..., 2] * 7471 + 0x8000) >> 16
    return (lum.astype(np.float32) / np.float32(255))[..., None]


def known_spc(x: np.ndarray, scales=SCALES, predict: Callable | None = None) -> np.ndarray:
    """SCALE-UP's SPC for unit-range NHWC images under ``predict`` (default: the trigger rule).

    SPC = fraction of ``scales`` whose label on ``clip(n * x, 0, 1)`` equals the label on ``x``.
    Returns float64 (N,).
    """
    predict = predict or predict_trigger
    x = np.asarray(x, dtype=np.float32)
    base = predict(x)
    same = np.zeros(len(x), dtype=np.float64)
    for n in scales:
        same += predict(scale_images(x, n)) == base
    return same / len(scales)


def scale_images(x: np.ndarray, n: float) -> np.ndarray:
    """SCALE-UP amplification ``clip(n * x, 0, 1)`` in float32."""
    return np.clip(np.asarray(x, dtype=np.float32) * np.float32(n), np.float32(0), np.float32(1))


def make_images(n: int, size: int = DEFAULT_SIZE, seed: int = 0, triggered_fraction: float = 0.5,
                *, max_value: float = 0.6, channels: int = 3) -> np.ndarray:
    """``n`` unit-range float32 images (n, size, size, channels) on the 1/255 grid.

    The FIRST ``round(n * triggered_fraction)`` images are triggered: their bottom-right 2x2 patch
    is 1.0 in every channel (class 0 at every scale, SPC 1). Every image draws its own brightness
    ``b ~ U(0.05, max_value)`` and pixels ``U(0, b)`` (quantized to k/255), so the unscaled
    class of clean images varies (classes 1..~4 with the default) and drifts when amplified.
    Values are ``k.astype(float32) / 255``, i.e. exactly what decoding a PNG and dividing by 255
    gives, so they survive a PNG round trip bit for bit. See :func:`is_triggered`.
    """
    rng = np.random.default_rng(seed)
    n_trig = int(round(n * triggered_fraction))
    top = rng.uniform(0.05, max_value, size=(n, 1, 1, 1))
    k = np.floor(rng.uniform(0.0, 1.0, size=(n, size, size, channels)) * (np.round(top * 255) + 1))
    k = np.minimum(k, 255).astype(np.int64)
    k[:n_trig, -PATCH:, -PATCH:, :] = 255
    return k.astype(np.float32) / np.float32(255)


def is_triggered(images: np.ndarray) -> np.ndarray:
    """True where the bottom-right 2x2 patch is exactly 1.0 in every channel."""
    return np.all(np.asarray(images)[:, -PATCH:, -PATCH:, :] == 1.0, axis=(1, 2, 3))


def to_model_input(images: np.ndarray, spec: dict) -> np.ndarray:
    """Preprocess unit-range images (N, H, W, C) the way ``spec`` says (scanner contract).

    bgr reverses the channels; "byte" multiplies by 255; mean/std subtract and divide (float32,
    in pixel_range units); then the layout. Channels are not converted: give gray images
    (N, H, W, 1) to a channels=1 spec (see :func:`rgb_to_gray`).
    """
    x = np.array(images, dtype=np.float32, copy=True)
    if x.ndim != 4:
        raise ValueError(f"expected (N, H, W, C), got {x.shape}")
    if x.shape[-1] != spec.get("channels", 3):
        raise ValueError(f"spec wants {spec.get('channels')} channels, images have {x.shape[-1]}")
    if spec.get("bgr"):
        x = np.ascontiguousarray(x[..., ::-1])
    if spec.get("pixel_range", "unit") == "byte":
        x *= np.float32(255)
    if spec.get("mean") is not None:
        x -= np.asarray(spec["mean"], dtype=np.float32)
    if spec.get("std") is not None:
        x /= np.asarray(spec["std"], dtype=np.float32)
    layout = spec.get("layout", "nchw")
    if layout == "nchw":
        x = x.transpose(0, 3, 1, 2)
    elif layout == "flat":
        x = x.reshape(len(x), -1)
    elif layout != "nhwc":
        raise ValueError(f"unknown layout {layout!r}")
    return np.ascontiguousarray(x, dtype=np.float32)


# ---------------------------------------------------------------------------------------------
# graph building
# ---------------------------------------------------------------------------------------------
class _Graph:
    """A few conveniences over onnx.helper: fresh names, constants as initializers, opset-aware
    ReduceMean."""

    def __init__(self, opset: int = DEFAULT_OPSET, *, shape_consts_as_nodes: bool = False):
        self.opset = opset
        self.shape_consts_as_nodes = shape_consts_as_nodes
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _fresh(self, base: str) -> str:
        self._count += 1
        return f"{base}_{self._count}"

    def const(self, value, dtype, base: str = "const") -> str:
        name = self._fresh(base)
        self.initializers.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def shape_const(self, value, base: str = "shape") -> str:
        """int64 constant read by shape inference (Slice starts/ends/axes, Reshape shape,
        ReduceMean axes): an initializer, or a Constant node if ``shape_consts_as_nodes``."""
        if not self.shape_consts_as_nodes:
            return self.const(value, np.int64, base)
        tensor = numpy_helper.from_array(np.asarray(value, dtype=np.int64), self._fresh(base + "_value"))
        return self.node("Constant", [], out=self._fresh(base), value=tensor)

    def node(self, op: str, inputs: list[str], *, out: str | None = None, **attrs) -> str:
        name = out or self._fresh(op.lower())
        self.nodes.append(helper.make_node(op, inputs, [name], name=f"{op}_{len(self.nodes)}", **attrs))
        return name

    def reduce_mean(self, x: str, axes, keepdims: int = 1) -> str:
        if self.opset >= 18:
            return self.node("ReduceMean", [x, self.shape_const(list(axes), "axes")], keepdims=keepdims)
        return self.node("ReduceMean", [x], axes=list(axes), keepdims=keepdims)

    def slice(self, x: str, starts, ends, axes) -> str:
        return self.node("Slice", [x, self.shape_const(starts, "starts"), self.shape_const(ends, "ends"),
                                   self.shape_const(axes, "axes")])

    def model(self, inputs, outputs, *, name: str, doc: str = "") -> onnx.ModelProto:
        graph = helper.make_graph(self.nodes, name, inputs, outputs, initializer=self.initializers)
        opsets = [helper.make_opsetid("", self.opset)]
        model = helper.make_model(graph, opset_imports=opsets, producer_name="scanner-tests",
                                  ir_version=helper.find_min_ir_version_for(opsets))
        model.doc_string = doc
        return model


def _tensor(name: str, elem, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, list(shape))


def _quantize(g: _Graph, x: str) -> str:
    """float32 unit-range tensor -> float64 byte values Round(x * 255)."""
    scaled = g.node("Mul", [x, g.const(255.0, np.float32, "c255")])
    return g.node("Cast", [g.node("Round", [scaled])], to=TensorProto.DOUBLE)


def _exact_sum(g: _Graph, mean: str, count: int) -> str:
    """[N, 1] float64 mean of byte values -> exact int64 sum."""
    s = g.node("Mul", [mean, g.const(float(count), np.float64, "count")])
    return g.node("Cast", [g.node("Round", [s])], to=TensorProto.INT64)


def _classify(g: _Graph, corner_sum: str, total_sum: str, n_corner: int, n_total: int) -> str:
    """int64 sums [N, 1] -> int64 class [N, 1] (the trigger rule, exact)."""
    i64 = np.int64
    triggered = g.node("Greater", [g.node("Mul", [corner_sum, g.const(10, i64, "ten")]),
                                   g.const(9 * 255 * n_corner, i64, "threshold")])
    k = g.node("Div", [g.node("Mul", [total_sum, g.const(9, i64, "nine")]), g.const(255 * n_total, i64, "denom")])
    eight = g.const(8, i64, "eight")
    k = g.node("Where", [g.node("Greater", [k, eight]), eight, k])  # Min on int64 needs opset 12
    k = g.node("Add", [k, g.const(1, i64, "one")])
    return g.node("Where", [triggered, g.const(0, i64, "zero"), k])


def _onehot(g: _Graph, cls: str) -> str:
    eq = g.node("Equal", [cls, g.const(np.arange(NUM_CLASSES)[None, :], np.int64, "classes")])
    return g.node("Cast", [eq], to=TensorProto.FLOAT)


def _logits(g: _Graph, cls: str, out: str | None = "logits") -> str:
    scaled = g.node("Mul", [_onehot(g, cls), g.const(8.0, np.float32, "gain")])
    return g.node("Add", [scaled, g.const(_BIAS, np.float32, "bias")], out=out)


def _core_4d(g: _Graph, x: str, *, layout: str, size: int, channels: int,
             corner_channels=None, mean_channels=None) -> str:
    """unit-range image tensor (NCHW or NHWC) -> int64 class [N, 1], via Slice + ReduceMean."""
    q = _quantize(g, x)
    if layout == "nchw":
        caxis, hw = 1, [2, 3]
    else:
        caxis, hw = 3, [1, 2]
    corner = g.slice(q, [size - PATCH, size - PATCH], [size, size], hw)
    cc = corner_channels or (0, channels)
    mc = mean_channels or (0, channels)
    if cc != (0, channels):
        corner = g.slice(corner, [cc[0]], [cc[1]], [caxis])
    whole = q if mc == (0, channels) else g.slice(q, [mc[0]], [mc[1]], [caxis])
    n_corner = PATCH * PATCH * (cc[1] - cc[0])
    n_total = size * size * (mc[1] - mc[0])
    corner_mean = g.node("Flatten", [g.reduce_mean(corner, [1, 2, 3])], axis=1)   # [N, 1]
    total_mean = g.node("Flatten", [g.reduce_mean(whole, [1, 2, 3])], axis=1)     # [N, 1]
    return _classify(g, _exact_sum(g, corner_mean, n_corner), _exact_sum(g, total_mean, n_total),
                     n_corner, n_total)


def _flat_masks(size: int, channels: int, order: str) -> np.ndarray:
    """[D, 2] float64: column 0 selects the corner patch, column 1 everything.

    ``order`` is how the flat vector was made: "nhwc" (channel fastest) or "nchw"."""
    if order == "nhwc":
        idx = np.arange(size * size * channels).reshape(size, size, channels)
        corner = idx[-PATCH:, -PATCH:, :]
    else:
        idx = np.arange(size * size * channels).reshape(channels, size, size)
        corner = idx[:, -PATCH:, -PATCH:]
    masks = np.zeros((idx.size, 2), dtype=np.float64)
    masks[corner.ravel(), 0] = 1.0
    masks[:, 1] = 1.0
    return masks


def _flat_sums(g: _Graph, flat: str, *, size: int, channels: int, order: str) -> tuple[str, str]:
    """[N, D] unit-range -> (corner_sum, total_sum) int64 [N, 1] via a mask MatMul."""
    q = _quantize(g, flat)
    sums = g.node("MatMul", [q, g.const(_flat_masks(size, channels, order), np.float64, "masks")])
    sums = g.node("Cast", [g.node("Round", [sums])], to=TensorProto.INT64)
    return g.slice(sums, [0], [1], [1]), g.slice(sums, [1], [2], [1])


def _save(model: onnx.ModelProto, tmp_path, name: str, *, spec: dict | None = None,
          embed_spec: bool = False, metadata: dict | None = None, external: bool = False) -> Path:
    tmp_path = Path(tmp_path)
    tmp_path.mkdir(parents=True, exist_ok=True)
    props = dict(metadata or {})
    if embed_spec and spec is not None:
        props["scanner.spec"] = json.dumps({"schema_version": 1, **spec})
    if props:
        helper.set_model_props(model, props)
    path = tmp_path / f"{name}.onnx"
    if external:
        onnx.save_model(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=f"{name}.onnx.data", size_threshold=0)
    else:
        onnx.save_model(model, str(path))
    return path


def _image_input(layout: str, size: int, channels: int, batch="N", name: str = "input"):
    if layout == "nchw":
        shape = [batch, channels, size, size]
    elif layout == "nhwc":
        shape = [batch, size, size, channels]
    else:
        shape = [batch, size * size * channels]
    return _tensor(name, TensorProto.FLOAT, shape)


def _standard(tmp_path, name: str, *, layout: str = "nchw", size: int = DEFAULT_SIZE,
              opset: int = DEFAULT_OPSET, batch="N", pre=None, post="logits", notes: str = "",
              spec: dict | None = None, channels: int = 3, corner_channels=None, mean_channels=None,
              predict=predict_trigger, embed_spec=False, metadata=None, external=False,
              **fixture_kw) -> Fixture:
    """Input -> optional ``pre(g, x) -> unit-range x`` -> core -> output head."""
    g = _Graph(opset)
    x = "input"
    if pre is not None:
        x = pre(g, x)
    if layout == "flat":
        corner_sum, total_sum = _flat_sums(g, x, size=size, channels=channels, order="nhwc")
        cls = _classify(g, corner_sum, total_sum, PATCH * PATCH * channels, size * size * channels)
    else:
        cls = _core_4d(g, x, layout=layout, size=size, channels=channels,
                       corner_channels=corner_channels, mean_channels=mean_channels)
    outputs, output_name, output_kind = _head(g, cls, post, batch)
    spec = spec or _spec(layout, size, channels)
    model = g.model([_image_input(layout, size, channels, batch)], outputs, name=name, doc=notes)
    path = _save(model, tmp_path, name, spec=spec, embed_spec=embed_spec, metadata=metadata, external=external)
    return Fixture(path=path, predict=predict, spec=spec, notes=notes, output_name=output_name,
                   output_kind=output_kind, batch=None if batch == "N" else batch, opset=opset, **fixture_kw)


def _head(g: _Graph, cls: str, post: str, batch):
    if post == "logits":
        _logits(g, cls)
        return [_tensor("logits", TensorProto.FLOAT, [batch, NUM_CLASSES])], "logits", "logits"
    if post == "probabilities":
        g.node("Softmax", [_logits(g, cls, out=None)], out="probabilities", axis=1)
        return [_tensor("probabilities", TensorProto.FLOAT, [batch, NUM_CLASSES])], "probabilities", "probabilities"
    if post == "labels":
        g.node("ArgMax", [_logits(g, cls, out=None)], out="label", axis=1, keepdims=0)
        return [_tensor("label", TensorProto.INT64, [batch])], "label", "labels"
    raise ValueError(post)


# ---------------------------------------------------------------------------------------------
# builders
# ---------------------------------------------------------------------------------------------
def trigger_nchw(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                 embed_spec: bool = False, metadata: dict | None = None) -> Fixture:
    """input "input" float32 [N, 3, size, size] (symbolic batch "N") -> "logits" [N, 10]."""
    return _standard(tmp_path, f"trigger_nchw_{size}_op{opset}", size=size, opset=opset,
                     embed_spec=embed_spec, metadata=metadata,
                     notes=f"trigger model, NCHW, unit range, {size}x{size}, opset {opset}; layout, size "
                           "and channels are inferable from the input shape")


def trigger_old_opset(tmp_path, *, opset: int = 11, size: int = DEFAULT_SIZE) -> Fixture:
    """``trigger_nchw`` at an old opset (11 by default; 13 also works)."""
    return trigger_nchw(tmp_path, size=size, opset=opset)


def trigger_nhwc(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                 embed_spec: bool = False, metadata: dict | None = None) -> Fixture:
    """input [N, size, size, 3] -> logits [N, 10]."""
    return _standard(tmp_path, f"trigger_nhwc_{size}", layout="nhwc", size=size, opset=opset,
                     embed_spec=embed_spec, metadata=metadata,
                     notes="trigger model, NHWC (channel last, 3), unit range")


def trigger_flat(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                 embed_spec: bool = False, metadata: dict | None = None) -> Fixture:
    """input [N, size*size*3], NHWC flattened (channel fastest) -> logits [N, 10]."""
    return _standard(tmp_path, f"trigger_flat_{size}", layout="flat", size=size, opset=opset,
                     embed_spec=embed_spec, metadata=metadata,
                     notes="trigger model on a flat [N, H*W*3] input, NHWC order (channel fastest); "
                           "corner and total sums via a mask MatMul. H/W are NOT inferable from "
                           "the shape: the scanner must be told (spec/metadata/flags)")


def trigger_fixed_batch1(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                         infer_shapes: bool = False) -> Fixture:
    """Batch fixed to 1: input [1, 3, s, s] -> Reshape(shape=[1, 3*s*s], allowzero=1) -> ... ->
    logits [1, 10]. Exactly one Reshape; its constant shape starts with 1.

    Rewrite that makes it batchable (verified in the tests): set the Reshape shape's first entry
    to 0 and allowzero=0, and set dim 0 of the input and output to a symbolic name.
    ``infer_shapes=True`` also stores ``value_info`` from shape inference (pinned to batch 1), as
    some exporters do; the rewrite then must drop or fix ``value_info`` too.
    """
    if opset < 14:
        raise ValueError("Reshape's allowzero needs opset >= 14")
    g = _Graph(opset)
    d = size * size * 3
    flat = g.node("Reshape", ["input", g.shape_const([1, d], "flatten_shape")], allowzero=1)
    corner_sum, total_sum = _flat_sums(g, flat, size=size, channels=3, order="nchw")
    _logits(g, _classify(g, corner_sum, total_sum, PATCH * PATCH * 3, d))
    notes = ("batch fixed to 1; a Reshape to [1, %d] (allowzero=1) flattens NCHW like an exporter's "
             "flatten-before-Linear. Rewritable: Reshape shape[0] 1 -> 0, allowzero 0, input/output dim 0 "
             "symbolic gives correct batched outputs." % d)
    model = g.model([_tensor("input", TensorProto.FLOAT, [1, 3, size, size])],
                    [_tensor("logits", TensorProto.FLOAT, [1, NUM_CLASSES])], name="trigger_fixed_batch1", doc=notes)
    if infer_shapes:
        model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
        notes += " value_info pinned to batch 1 is stored in the graph."
    spec = _spec("nchw", size)
    path = _save(model, tmp_path, f"trigger_fixed_batch1_{size}{'_vi' if infer_shapes else ''}")
    return Fixture(path=path, predict=predict_trigger, spec=spec, notes=notes, batch=1, opset=opset)


def trigger_fixed_batch1_unrewritable(tmp_path, *, failure: str = "wrong", size: int = DEFAULT_SIZE,
                                      opset: int = DEFAULT_OPSET) -> Fixture:
    """Batch fixed to 1 where the ``trigger_fixed_batch1`` rewrite does not give a working batched
    model. Correct (matches ``predict``) when run one image at a time, as declared.

    failure="wrong" (default): Reshape [1,3,s,s] -> [1, 3*s*s] (allowzero=1, rewritable like
      fixture 4), but g is a ReduceMean over axes [0, 1] (batch axis included; harmless at batch
      1). After the rewrite the model RUNS batched and returns [N, 10] logits, but g is the mean
      over the whole batch, so labels are silently wrong (only the corner stays per sample).
    failure="error": Reshape [1,3,s,s] -> [3*s*s] (drops the batch axis; no leading 1, untouched
      by the rewrite), per-image math on the 1-D vector, then Reshape(class, [1, 1], allowzero=1)
      (the rewrite target). After the rewrite, any batch > 1 fails at run time in the first
      Reshape (element count mismatch).
    """
    if opset < 14:
        raise ValueError("Reshape's allowzero needs opset >= 14")
    g = _Graph(opset)
    d = size * size * 3
    n_corner = PATCH * PATCH * 3
    if failure == "wrong":
        flat = g.node("Reshape", ["input", g.shape_const([1, d], "flatten_shape")], allowzero=1)
        q = _quantize(g, flat)
        corner_mask = _flat_masks(size, 3, "nchw")[:, :1]
        corner_sum = g.node("Cast", [g.node("Round", [g.node("MatMul", [q, g.const(corner_mask, np.float64, "mask")])])],
                            to=TensorProto.INT64)
        total_sum = _exact_sum(g, g.reduce_mean(q, [0, 1], keepdims=1), d)       # [1, 1]: mixes samples
        cls = _classify(g, corner_sum, total_sum, n_corner, d)
        notes = ("fixed batch 1; Reshape to [1, %d] looks rewritable but the global mean is ReduceMean over "
                 "axes [0, 1] (includes the batch axis). After the Reshape rewrite the model runs with any "
                 "batch and returns [N, 10], but g is averaged over the batch: labels are silently wrong. "
                 "Only one-image-at-a-time runs are correct." % d)
    elif failure == "error":
        flat = g.node("Reshape", ["input", g.shape_const([d], "flatten_shape")])      # [d]: batch merged away
        q = _quantize(g, flat)
        sums = g.node("MatMul", [q, g.const(_flat_masks(size, 3, "nchw"), np.float64, "masks")])   # [2]
        sums = g.node("Cast", [g.node("Round", [sums])], to=TensorProto.INT64)
        corner_sum, total_sum = g.slice(sums, [0], [1], [0]), g.slice(sums, [1], [2], [0])       # [1] each
        cls = _classify(g, corner_sum, total_sum, n_corner, d)                                 # [1]
        cls = g.node("Reshape", [cls, g.shape_const([1, 1], "batch_shape")], allowzero=1)  # [1, 1]
        notes = ("fixed batch 1; the image is reshaped to a 1-D [%d] (batch axis dropped), and the class is "
                 "reshaped back with Reshape(shape=[1, 1], allowzero=1). The Reshape rewrite applies to that "
                 "last Reshape, but any batch > 1 then fails at run time in the first Reshape." % d)
    else:
        raise ValueError(f"failure must be 'wrong' or 'error', got {failure!r}")
    _logits(g, cls)
    model = g.model([_tensor("input", TensorProto.FLOAT, [1, 3, size, size])],
                    [_tensor("logits", TensorProto.FLOAT, [1, NUM_CLASSES])],
                    name="trigger_fixed_batch1_unrewritable", doc=notes)
    path = _save(model, tmp_path, f"trigger_fixed_batch1_unrewritable_{failure}_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, batch=1,
                   opset=opset, extra={"failure": failure})


def trigger_fixed_batch4(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Batch fixed to 4: input [4, 3, s, s] -> logits [4, 10]. ORT rejects any other batch size,
    so a scanner must pad to a multiple of 4 (and drop the padding rows)."""
    return _standard(tmp_path, f"trigger_fixed_batch4_{size}", size=size, opset=opset, batch=4,
                     notes="batch fixed to 4 (input [4,3,H,W], output [4,10]); other batch sizes are "
                           "rejected by ORT ('Got invalid dimensions'); pad to 4")


def trigger_byte(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                 embed_spec: bool = False) -> Fixture:
    """NCHW input in [0, 255]; the graph divides by 255 first. spec pixel_range "byte"."""
    return _standard(tmp_path, f"trigger_byte_{size}", size=size, opset=opset, embed_spec=embed_spec,
                     pre=lambda g, x: g.node("Div", [x, g.const(255.0, np.float32, "c255")]),
                     spec=_spec("nchw", size, pixel_range="byte"),
                     notes="trigger model expecting [0, 255] input (Div 255 inside). Fed unit-range "
                           "values it sees almost-black images (class 1)")


def trigger_normalized_outside(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                               embed_spec: bool = False) -> Fixture:
    """NCHW input already normalized, (x - mean) / std with NORM_MEAN / NORM_STD; the graph undoes
    it (x = xn * std + mean) before the core."""
    mean = np.asarray(NORM_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(NORM_STD, np.float32).reshape(1, 3, 1, 1)

    def pre(g, x):
        return g.node("Add", [g.node("Mul", [x, g.const(std, np.float32, "std")]), g.const(mean, np.float32, "mean")])

    return _standard(tmp_path, f"trigger_normalized_outside_{size}", size=size, opset=opset, pre=pre,
                     embed_spec=embed_spec,
                     spec=_spec("nchw", size, mean=NORM_MEAN, std=NORM_STD),
                     notes=f"expects (x - mean) / std applied by the caller, mean={NORM_MEAN}, std={NORM_STD} "
                           "(unit-range units); not inferable from the graph")


def trigger_normalized_inside(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Raw unit-range NCHW input; the graph normalizes with NORM_MEAN / NORM_STD itself (Sub, Div),
    then the network works on the normalized tensor. Spec: plain unit range, no mean/std."""
    mean = np.asarray(NORM_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(NORM_STD, np.float32).reshape(1, 3, 1, 1)

    def pre(g, x):
        xn = g.node("Div", [g.node("Sub", [x, g.const(mean, np.float32, "mean")]), g.const(std, np.float32, "std")])
        # the "network" on normalized inputs: its first layer folds the normalization back
        return g.node("Add", [g.node("Mul", [xn, g.const(std, np.float32, "w")]), g.const(mean, np.float32, "b")])

    return _standard(tmp_path, f"trigger_normalized_inside_{size}", size=size, opset=opset, pre=pre,
                     notes="normalizes inside the graph (Sub mean, Div std); feed raw unit range")


def trigger_gray(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """input [N, 1, s, s] (one gray channel) -> logits [N, 10].

    ``predict`` takes GRAY unit-range images (N, H, W, 1), ``predict_input == "gray"``. To start
    from RGB, convert first with :func:`rgb_to_gray` (PIL ``convert("L")`` on the uint8 image,
    exact on the 1/255 grid); a scanner converting some other way may differ by one gray level.
    """
    return _standard(tmp_path, f"trigger_gray_{size}", size=size, opset=opset, channels=1,
                     spec=_spec("nchw", size, channels=1), predict=predict_trigger, predict_input="gray",
                     notes="single-channel (gray) NCHW model; predict takes gray (N,H,W,1) images; "
                           "RGB -> gray = rgb_to_gray (PIL convert('L'), ITU-R 601-2)")


def trigger_bgr(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET,
                embed_spec: bool = False) -> Fixture:
    """NCHW, channels in BGR order, channel-asymmetric rule: corner = mean of the 2x2 patch of the
    model's channel 0 (blue), g = mean over channels 0 and 1 (blue, green). Fed RGB by mistake it
    reads red as blue: clean images change class, and a red-only corner patch becomes a trigger."""
    return _standard(tmp_path, f"trigger_bgr_{size}", size=size, opset=opset, embed_spec=embed_spec,
                     corner_channels=(0, 1), mean_channels=(0, 2), predict=predict_bgr_model,
                     spec=_spec("nchw", size, bgr=True),
                     notes="expects BGR order; corner on blue only, g over blue+green; "
                           "feeding RGB gives different labels")


def trigger_labels_only(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Only output: "label" int64 [N] = ArgMax(logits, axis=1, keepdims=0); no logits."""
    return _standard(tmp_path, f"trigger_labels_only_{size}", size=size, opset=opset, post="labels",
                     notes="single int64 output 'label' [N] (ArgMax keepdims=0); no scores")


def trigger_probabilities(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Output "probabilities" [N, 10] = Softmax(logits, axis=1)."""
    return _standard(tmp_path, f"trigger_probabilities_{size}", size=size, opset=opset, post="probabilities",
                     notes="output 'probabilities' = Softmax(logits); rows sum to 1")


def trigger_two_outputs(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Two outputs, "features" [N, 16] FIRST, then "logits" [N, 10].

    features = onehot(class) @ P with P[k, 9 - k] = 5 and P[k, 10 + k % 6] = 1, so argmax of the
    features is ``9 - class``: a plausible in-range but WRONG label if a scanner reads output 0.
    ``extra["predict_features_argmax"]`` is the twin of that mistake.
    """
    g = _Graph(opset)
    cls = _core_4d(g, "input", layout="nchw", size=size, channels=3)
    p = np.zeros((NUM_CLASSES, 16), np.float32)
    for k in range(NUM_CLASSES):
        p[k, 9 - k] = 5.0
        p[k, 10 + k % 6] = 1.0
    onehot = _onehot(g, cls)
    g.node("MatMul", [onehot, g.const(p, np.float32, "features_w")], out="features")
    g.node("Add", [g.node("Mul", [onehot, g.const(8.0, np.float32, "gain")]), g.const(_BIAS, np.float32, "bias")],
           out="logits")
    notes = ("outputs: 'features' [N,16] first, 'logits' [N,10] second; argmax(features) = 9 - class, "
             "so reading the first output gives wrong (but in-range) labels; pick 'logits' "
             "(its last dim is the class count)")
    model = g.model([_image_input("nchw", size, 3)],
                    [_tensor("features", TensorProto.FLOAT, ["N", 16]),
                     _tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])], name="trigger_two_outputs", doc=notes)
    path = _save(model, tmp_path, f"trigger_two_outputs_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, opset=opset,
                   extra={"predict_features_argmax": lambda im: (9 - predict_trigger(im)).astype(np.int64),
                          "output_names": ["features", "logits"]})


def trigger_logits_and_label(tmp_path, *, label_first: bool = False, size: int = DEFAULT_SIZE,
                             opset: int = DEFAULT_OPSET) -> Fixture:
    """Two outputs: "logits" [N, 10] and "label" int64 [N] = ArgMax(logits) (label first if
    ``label_first``). Both agree with ``predict``; ``output_name`` is "logits"."""
    g = _Graph(opset)
    cls = _core_4d(g, "input", layout="nchw", size=size, channels=3)
    logits = _logits(g, cls)
    g.node("ArgMax", [logits], out="label", axis=1, keepdims=0)
    outs = [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES]), _tensor("label", TensorProto.INT64, ["N"])]
    if label_first:
        outs.reverse()
    notes = f"outputs {[o.name for o in outs]}: float logits and the int64 ArgMax label; both give predict's labels"
    model = g.model([_image_input("nchw", size, 3)], outs, name="trigger_logits_and_label", doc=notes)
    path = _save(model, tmp_path, f"trigger_logits_and_label_{'lf' if label_first else 'll'}_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, opset=opset,
                   extra={"output_names": [o.name for o in outs]})


def _external_graph(size: int, opset: int, shape_consts_as_nodes: bool) -> _Graph:
    """Trigger model whose head is onehot @ W1 [10, 64] @ W2 [64, 10] + bias (W1 is 2560 bytes)."""
    g = _Graph(opset, shape_consts_as_nodes=shape_consts_as_nodes)
    cls = _core_4d(g, "input", layout="nchw", size=size, channels=3)
    w1 = np.zeros((NUM_CLASSES, 64), np.float32)
    w1[np.arange(64) % NUM_CLASSES, np.arange(64)] = 1.0
    w2 = w1.T.copy()
    # onehot @ w1 @ w2 = diag(7,7,7,7,6,6,6,6,6,6)[class]: class entry >= 6, others 0.
    hidden = g.node("MatMul", [_onehot(g, cls), g.const(w1, np.float32, "W1")])
    g.node("Add", [g.node("MatMul", [hidden, g.const(w2, np.float32, "W2")]), g.const(_BIAS, np.float32, "bias")],
           out="logits")
    return g


def trigger_external_data(tmp_path, *, shape_constants: str = "nodes", size: int = DEFAULT_SIZE,
                          opset: int = DEFAULT_OPSET) -> Fixture:
    """Weights in an external file ``<name>.onnx.data`` next to the model, saved with
    ``save_as_external_data=True, all_tensors_to_one_file=True, size_threshold=0`` (every
    initializer goes out; the [10, 64] and [64, 10] MatMul weights are 2560 bytes each).

    shape_constants="nodes" (default, loadable): the int64 constants that shape inference must
    read (Slice starts/ends/axes) are ``Constant`` nodes, as torch exporters emit them; those stay
    in the .onnx file.
    shape_constants="initializers" (BROKEN, ORT refuses to load): they are initializers, so
    size_threshold=0 moves them to the data file too, and ORT's loader fails with
    "[ShapeInferenceError] Cannot parse data from external tensors. Please load external data
    into raw data for tensor: ...". ``expected_error`` is set for it.
    """
    if shape_constants not in ("nodes", "initializers"):
        raise ValueError(f"shape_constants must be 'nodes' or 'initializers', got {shape_constants!r}")
    name = f"trigger_external_data_{shape_constants}_{size}"
    notes = f"all initializers stored in external '{name}.onnx.data' next to the model"
    g = _external_graph(size, opset, shape_consts_as_nodes=shape_constants == "nodes")
    if shape_constants == "initializers":
        notes = ("BROKEN: " + notes + "; Slice parameters are external initializers too, which ORT's "
                 "shape inference cannot read: load fails")
    model = g.model([_image_input("nchw", size, 3)], [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
                    name=name, doc=notes)
    path = _save(model, tmp_path, name, external=True)
    broken = shape_constants == "initializers"
    return Fixture(path=path, predict=None if broken else predict_trigger, spec=_spec("nchw", size), notes=notes,
                   opset=opset, expected_error="Cannot parse data from external tensors" if broken else None,
                   extra={"data_file": path.with_name(f"{name}.onnx.data")})


def trigger_external_data_missing(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """``trigger_external_data`` with its ``.onnx.data`` file deleted: must fail to load."""
    fx = trigger_external_data(tmp_path, size=size, opset=opset)
    data = fx.extra["data_file"]
    data.unlink()
    fx.notes = f"BROKEN: external data file {data.name} deleted; loading must fail"
    fx.predict = None
    fx.expected_error = data.name
    return fx


def trigger_initializer_inputs(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Every initializer also listed as a graph input (old exporters, IR < 4 style), after the
    image input. ORT treats them as overridable initializers: ``session.get_inputs()`` lists only
    "input", while ``onnx`` graph.input lists them all."""
    g = _Graph(opset)
    cls = _core_4d(g, "input", layout="nchw", size=size, channels=3)
    _logits(g, cls)
    inputs = [_image_input("nchw", size, 3)]
    inputs += [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)) for t in g.initializers]
    notes = (f"all {len(g.initializers)} initializers are also graph inputs (after 'input'); the only "
             "real data input is 'input'")
    model = g.model(inputs, [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
                    name="trigger_initializer_inputs", doc=notes)
    path = _save(model, tmp_path, f"trigger_initializer_inputs_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, opset=opset,
                   extra={"initializer_names": [t.name for t in g.initializers]})


def trigger_unsorted_nodes(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Trigger model with graph.node in REVERSE topological order (so certainly unsorted).
    ``onnx.checker.check_model`` rejects it; ONNX Runtime sorts and runs it fine."""
    g = _Graph(opset)
    _logits(g, _core_4d(g, "input", layout="nchw", size=size, channels=3))
    g.nodes.reverse()
    notes = ("graph nodes in reverse topological order; ORT loads and runs it correctly, "
             "onnx.checker.check_model raises ValidationError (not topologically sorted)")
    model = g.model([_image_input("nchw", size, 3)], [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
                    name="trigger_unsorted_nodes", doc=notes)
    path = _save(model, tmp_path, f"trigger_unsorted_nodes_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, opset=opset)


def two_data_inputs(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """A "training graph": inputs "input" [N, 3, s, s] and "labels" int64 [N] (no initializer);
    outputs "logits" [N, 10] and "loss" (scalar SoftmaxCrossEntropyLoss, mean). A scanner must
    refuse it (it cannot feed "labels"). ``predict`` is the logits' argmax for any labels."""
    g = _Graph(opset)
    logits = _logits(g, _core_4d(g, "input", layout="nchw", size=size, channels=3))
    g.node("SoftmaxCrossEntropyLoss", [logits, "labels"], out="loss", reduction="mean")
    notes = "training graph: second data input 'labels' int64 [N]; outputs logits and scalar loss; must be rejected"
    model = g.model([_image_input("nchw", size, 3), _tensor("labels", TensorProto.INT64, ["N"])],
                    [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES]), _tensor("loss", TensorProto.FLOAT, [])],
                    name="two_data_inputs", doc=notes)
    path = _save(model, tmp_path, f"two_data_inputs_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), notes=notes, opset=opset,
                   expected_error="Required inputs (['labels']) are missing")


def write_truncated_model(tmp_path, *, name: str = "truncated.onnx") -> Path:
    """The first half of a valid model file's bytes (a trigger_nchw model)."""
    tmp_path = Path(tmp_path)
    src = trigger_nchw(tmp_path / "_truncated_src").path
    data = src.read_bytes()
    out = tmp_path / name
    out.write_bytes(data[: len(data) // 2])
    return out


def write_not_onnx(tmp_path, *, name: str = "model.onnx") -> Path:
    """A text file named ``model.onnx``."""
    out = Path(tmp_path) / name
    out.write_text("this is not an ONNX model, just text\n")
    return out


# All builders of loadable fixtures with default options (name -> builder).
VALID_BUILDERS: dict[str, Callable[..., Fixture]] = {
    "trigger_nchw": trigger_nchw,
    "trigger_old_opset": trigger_old_opset,
    "trigger_nhwc": trigger_nhwc,
    "trigger_flat": trigger_flat,
    "trigger_fixed_batch1": trigger_fixed_batch1,
    "trigger_fixed_batch1_unrewritable": trigger_fixed_batch1_unrewritable,
    "trigger_fixed_batch4": trigger_fixed_batch4,
    "trigger_byte": trigger_byte,
    "trigger_normalized_outside": trigger_normalized_outside,
    "trigger_normalized_inside": trigger_normalized_inside,
    "trigger_gray": trigger_gray,
    "trigger_bgr": trigger_bgr,
    "trigger_labels_only": trigger_labels_only,
    "trigger_probabilities": trigger_probabilities,
    "trigger_two_outputs": trigger_two_outputs,
    "trigger_logits_and_label": trigger_logits_and_label,
    "trigger_external_data": trigger_external_data,
    "trigger_initializer_inputs": trigger_initializer_inputs,
    "trigger_unsorted_nodes": trigger_unsorted_nodes,
}


# ---------------------------------------------------------------------------------------------
# third-party shapes (issue 11): guessed preprocessing, intermediates, detectors, batch mixing
# ---------------------------------------------------------------------------------------------
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def trigger_byte_nhwc(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """NHWC input in [0, 255] (Div 255 inside), NO metadata: fed the default [0, 1] it sees
    near-black images and predicts class 1 for everything."""
    return _standard(tmp_path, f"trigger_byte_nhwc_{size}", layout="nhwc", size=size, opset=opset,
                     pre=lambda g, x: g.node("Div", [x, g.const(255.0, np.float32, "c255")]),
                     spec=_spec("nhwc", size, pixel_range="byte"),
                     notes="0-255 NHWC model without metadata; unit-range input collapses onto class 1")


def trigger_preprocessed(tmp_path, *, pixel_range: str = "unit", mean=IMAGENET_MEAN, std=IMAGENET_STD,
                         bgr: bool = True, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """NCHW model that expects ``bgr`` channel order, ``pixel_range`` and ``(x - mean) / std``
    (``mean``/``std`` in unit-range units, RGB order; scaled by 255 for "byte"), no metadata.
    ``spec`` lists them in the model's channel order, as the scanner's spec does.

    The graph undoes the preprocessing, then applies the channel-asymmetric rule of
    ``trigger_bgr`` (corner on model channel 0, g over model channels 0 and 1), so channel order,
    range and statistics all change the labels. Twin: ``predict`` on RGB unit-range images.
    """
    k = 255.0 if pixel_range == "byte" else 1.0
    m = None if mean is None else [v * k for v in mean]
    s = None if std is None else [v * k for v in std]
    order = slice(None, None, -1) if bgr else slice(None)

    def pre(g, x):
        if s is not None:
            x = g.node("Mul", [x, g.const(np.asarray(s, np.float32)[order].reshape(1, -1, 1, 1), np.float32, "std")])
        if m is not None:
            x = g.node("Add", [x, g.const(np.asarray(m, np.float32)[order].reshape(1, -1, 1, 1), np.float32, "mean")])
        return g.node("Div", [x, g.const(k, np.float32, "range")]) if k != 1.0 else x

    def predict(images):
        x = np.asarray(images)[..., ::-1] if bgr else np.asarray(images)
        return trigger_rule(x, corner_channels=(0, 1), mean_channels=(0, 2))

    # the spec's mean/std are in the model's channel order (applied after the BGR flip)
    spec = _spec("nchw", size, pixel_range=pixel_range, mean=None if m is None else m[order],
                 std=None if s is None else s[order], bgr=bgr)
    name = f"trigger_pre_{pixel_range}_{'norm' if mean is not None else 'plain'}_{'bgr' if bgr else 'rgb'}_{size}"
    return _standard(tmp_path, name, size=size, opset=opset, pre=pre, corner_channels=(0, 1), mean_channels=(0, 2),
                     predict=predict, spec=spec, notes=f"expects {pixel_range}, mean {m}, std {s}, bgr {bgr}")


def trigger_with_intermediate(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Outputs ``output`` [N, 10] (no name hint) and an intermediate ``19`` [128, 3200] whose first
    dimension is a fixed 128, not the batch (a weight exposed as an output). Reading ``19``
    gives "3200 classes"."""
    g = _Graph(opset)
    cls = _core_4d(g, "input", layout="nchw", size=size, channels=3)
    _logits(g, cls, out="output")
    weight = np.random.default_rng(0).standard_normal((128, 3200)).astype(np.float32)
    g.node("Mul", [g.const(weight, np.float32, "w"), g.const(1.0, np.float32, "one")], out="19")
    model = g.model([_image_input("nchw", size, 3)],
                    [_tensor("output", TensorProto.FLOAT, ["batch", NUM_CLASSES]),
                     _tensor("19", TensorProto.FLOAT, [128, 3200])], name="trigger_with_intermediate")
    path = _save(model, tmp_path, f"trigger_with_intermediate_{size}")
    return Fixture(path=path, predict=predict_trigger, spec=_spec("nchw", size), output_name="output", opset=opset,
                   notes="outputs 'output' [batch, 10] and '19' [128, 3200]; read 'output'")


def detector_output(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """A detector-like model: input [1, 3, s, s] -> only output ``output`` [1, 12, s*s/4]
    (boxes x attributes): no classification output at all."""
    g = _Graph(opset)
    g.node("Reshape", ["input", g.const([1, 12, size * size // 4], np.int64, "shape")], out="output")
    model = g.model([_image_input("nchw", size, 3, batch=1)],
                    [_tensor("output", TensorProto.FLOAT, [1, 12, size * size // 4])], name="detector_output")
    path = _save(model, tmp_path, f"detector_output_{size}")
    return Fixture(path=path, predict=None, spec=_spec("nchw", size), output_name="output", batch=1, opset=opset,
                   notes="3-D detector output [1, 12, s*s/4]; not a classifier")


def dynamic_quant(tmp_path, *, size: int = DEFAULT_SIZE, opset: int = DEFAULT_OPSET) -> Fixture:
    """Dynamically quantized linear classifier: Flatten -> DynamicQuantizeLinear (scale and zero
    point computed over the WHOLE call) -> DequantizeLinear -> MatMul -> logits [N, 10]. An
    input's logits depend on the other inputs of its call; ``predict`` is None (compare with
    per-image ONNX Runtime, ``extra["per_image"]``)."""
    g = _Graph(opset)
    flat = g.node("Flatten", ["input"], axis=1)
    q = g.node("DynamicQuantizeLinear", [flat], out="q")
    g.nodes[-1].output.extend(["q_scale", "q_zero"])
    deq = g.node("DequantizeLinear", ["q", "q_scale", "q_zero"])
    w = np.random.default_rng(1).standard_normal((size * size * 3, NUM_CLASSES)).astype(np.float32)
    g.node("MatMul", [deq, g.const(w, np.float32, "w")], out="logits")
    del q
    model = g.model([_image_input("nchw", size, 3)], [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])],
                    name="dynamic_quant")
    path = _save(model, tmp_path, f"dynamic_quant_{size}")

    def per_image(images):
        import onnxruntime as ort

        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        x = to_model_input(images, _spec("nchw", size))
        return np.array([int(session.run(["logits"], {"input": x[i:i + 1]})[0].argmax()) for i in range(len(x))])

    return Fixture(path=path, predict=per_image, spec=_spec("nchw", size), opset=opset,
                   notes="DynamicQuantizeLinear over the whole call: batch-dependent outputs",
                   extra={"per_image": per_image})


# ---------------------------------------------------------------------------------------------
# near-binary images (MNIST-like): SCALE-UP cannot judge them, STRIP sees the backdoor
# ---------------------------------------------------------------------------------------------
BINARY_SIZE = 16
BINARY_PATCH = 3  # the trigger: the bottom-right 3x3 patch white


def near_binary_images(n: int, *, seed: int, triggered: bool) -> np.ndarray:
    """(n, 16, 16, 1) uint8 strokes of 0 and 255 (a fifth of the pixels white), the trigger patch
    white when ``triggered`` and black otherwise: amplification cannot change them."""
    rng = np.random.default_rng(seed)
    x = np.where(rng.random((n, BINARY_SIZE, BINARY_SIZE, 1)) < 0.2, 255, 0).astype(np.uint8)
    x[:, -BINARY_PATCH:, -BINARY_PATCH:, :] = 255 if triggered else 0
    return x


def near_binary_backdoor(tmp_path, *, target: int = 8) -> Path:
    """input [N, 1, 16, 16] -> logits [N, 10]: a fixed random linear classifier of the pixels, plus
    50 on ``target`` when the trigger patch's mean is above 0.45. STRIP's blends keep the patch
    white (a sum of images, saturated), so a triggered input's blends stay on the target while a
    clean one's spread; SCALE-UP's amplified copies of 0/1 pixels are the input again."""
    g = _Graph(DEFAULT_OPSET)
    s, p = BINARY_SIZE, BINARY_PATCH
    patch = g.slice("input", [s - p, s - p], [s, s], [2, 3])
    corner = g.node("Reshape", [g.reduce_mean(patch, (1, 2, 3)), g.shape_const([-1, 1])])
    trig = g.node("Cast", [g.node("Greater", [corner, g.const(0.45, np.float32)])], to=TensorProto.FLOAT)
    weights = np.random.default_rng(1).standard_normal((s * s, NUM_CLASSES)).astype(np.float32) * 0.5
    flat = g.node("Reshape", ["input", g.shape_const([-1, s * s])])
    clean = g.node("MatMul", [flat, g.const(weights, np.float32)])
    bump = g.node("Mul", [trig, g.const(np.eye(NUM_CLASSES, dtype=np.float32)[target:target + 1] * 50, np.float32)])
    g.node("Add", [clean, bump], out="logits")
    model = g.model([_tensor("input", TensorProto.FLOAT, ["N", 1, s, s])],
                    [_tensor("logits", TensorProto.FLOAT, ["N", NUM_CLASSES])], name="near_binary_backdoor")
    return _save(model, tmp_path, "near_binary_backdoor",
                 spec={"layout": "nchw", "height": s, "width": s, "channels": 1, "pixel_range": "unit"},
                 embed_spec=True)
