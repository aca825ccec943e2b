"""The one preprocessor: a :class:`~scanner.model.spec.Spec` compiled once into the function from
unit-range RGB images to the model's input tensor.

Every place that feeds a model goes through it: the scan's hot path (detectors write their
queries into a buffer laid out by :meth:`Preprocessor.to_layout` and finish each block with
:meth:`Preprocessor.normalize_`), the exporter's parity check and the reports that describe the
input. The mean/std broadcast is computed here once, not per block.

Order, from a unit-range image ``x`` (after any amplification in pixel space)::

    x = x[..., ::-1]                    if bgr
    arranged as layout: nchw (N, C, H, W), nhwc (N, H, W, C) or flat (N, H*W*C, channel fastest)
    x = x * 255                         if pixel_range == "byte"
    x = (x - mean) / std                if mean/std given (in the units of pixel_range)
"""

from __future__ import annotations

import numpy as np

from .spec import Spec


class Preprocessor:
    """Unit-range images (b, H, W, C) -> model input, for one resolved spec.

    Parameters
    ----------
    spec : Spec
        With ``height`` and ``width`` set.
    """

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        c, h, w = spec.channels, spec.height, spec.width
        self.model_shape: tuple[int, ...] = {
            "nchw": (c, h, w), "nhwc": (h, w, c)}.get(spec.layout, (h * w * c,))
        self._byte = spec.pixel_range == "byte"
        self._mean = self._broadcast(spec.mean)
        self._std = self._broadcast(spec.std)

    def _broadcast(self, values) -> np.ndarray | None:
        """Stats shaped to broadcast over a batch in the model's layout (computed once)."""
        if values is None:
            return None
        arr = np.asarray(values, dtype=np.float32)
        spec = self.spec
        if spec.layout == "flat":
            # flat = NHWC flattened: channel is the fastest-varying index
            per_pixel = arr if arr.size == spec.channels else np.repeat(arr, spec.channels)
            return np.tile(per_pixel, spec.height * spec.width)
        if spec.layout == "nchw":
            return arr.reshape((-1, 1, 1))
        return arr  # nhwc: channel is last

    @property
    def input_shape(self) -> tuple:
        """The model input this spec produces, batch dimension as ``"N"``."""
        return ("N",) + self.model_shape

    def describe_input(self, batch: str = "N") -> str:
        """``[N, 3, 32, 32]``-style text for reports."""
        return "[" + ", ".join([batch, *map(str, self.model_shape)]) + "]"

    def to_layout(self, images: np.ndarray) -> np.ndarray:
        """(b, H, W, C) images -> a view in the model's layout and channel order (no copy)."""
        if self.spec.bgr:
            images = images[..., ::-1]
        if self.spec.layout == "nchw":
            return images.transpose(0, 3, 1, 2)
        if self.spec.layout == "flat":
            return images.reshape(len(images), -1)
        return images

    def normalize_(self, batch: np.ndarray) -> np.ndarray:
        """Apply range scaling and mean/std in place to a float32 batch in model layout.

        ``batch`` holds unit-range values, already clipped, with channels already in model
        order. The operations and their order are part of the contract (tests recompute them
        independently and expect identical bits).
        """
        if self._byte:
            np.multiply(batch, np.float32(255.0), out=batch)
        if self._mean is not None:
            np.subtract(batch, self._mean, out=batch)
        if self._std is not None:
            np.divide(batch, self._std, out=batch)
        return batch

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """A new contiguous float32 model batch from unit-range (b, H, W, C) images."""
        out = np.array(self.to_layout(np.asarray(images, dtype=np.float32)), dtype=np.float32, order="C")
        return self.normalize_(out)
