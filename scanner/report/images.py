"""Pictures for the HTML report: an input decoded again as the model saw it, and a thumbnail as a
``data:`` URI (PNG for small images, JPEG for photographs)."""

from __future__ import annotations

import base64
import bisect
import io

import numpy as np

from ..results import ScanResult

THUMB = 96  # the longest side of a thumbnail, in pixels


def decode(result: ScanResult, index: int) -> np.ndarray | None:
    """Input ``index`` as the model saw it before amplification: (H, W, C) float in [0, 1]."""
    from ..inputs.stream import BatchLoader
    from ..inputs.decode import BYTE_MAX

    inputs, spec = result.inputs, result.settings.spec
    if not hasattr(inputs, "parts"):
        return None
    parts, offsets = inputs.parts(), inputs.offsets()
    p = bisect.bisect_right(offsets, index) - 1
    loader = BatchLoader(inputs, height=spec.height, width=spec.width, channels=spec.channels, batch_size=1, workers=1)
    try:
        batch = loader.load([(parts[p], index - offsets[p], 1, index)])
    except Exception:  # noqa: BLE001 - a file changed since the scan: no thumbnail, not a failed report
        return None
    if not len(batch.indices):
        return None
    image = batch.images[0]
    return image.astype(np.float32) / BYTE_MAX if image.dtype == np.uint8 else image.astype(np.float32)


def data_uri(image: np.ndarray) -> str:
    from PIL import Image

    pixels = np.rint(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
    if pixels.shape[-1] == 1:
        pixels = pixels[..., 0]
    picture = Image.fromarray(pixels)
    if max(picture.size) > THUMB:
        picture.thumbnail((THUMB, THUMB), Image.Resampling.BILINEAR)
    buffer = io.BytesIO()
    if max(picture.size) > 48:  # photographs: JPEG is several times smaller
        picture.convert("RGB").save(buffer, "JPEG", quality=85)
        kind = "jpeg"
    else:
        picture.save(buffer, "PNG", optimize=True)
        kind = "png"
    return f"data:image/{kind};base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
