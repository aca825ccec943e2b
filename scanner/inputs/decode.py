"""Decoding one input to pixels: image files to (H, W, C) uint8 (float32 for >8-bit images),
array slices to unit-range float32, both at the model's size and channel count.

8-bit pixels become unit-range values as ``float32(p) / BYTE_MAX`` (a float32 division by 255,
bit for bit what ``x / 255`` gives; not a product with ``float32(1 / 255)``, which differs in the
last bit for about half of the 256 values) wherever the conversion happens (here, the batch
loader, the detectors' query buffers), so every path gives the same bits.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import warnings

import numpy as np

log = logging.getLogger("scanner")

BYTE_MAX = np.float32(255)  # unit-range pixels are float32(p) / BYTE_MAX
# Pixels an image file may declare before it is decoded (8192 x 8192): a few bytes of a broken or
# hostile header can claim gigapixels, and decoding happens before resizing to the model's size.
MAX_DECODE_PIXELS = 1 << 26

try:  # libjpeg-turbo without Pillow's per-file overhead: 3x faster on small JPEGs, same pixels
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - optional speed-up
    _simplejpeg = None


def _decode_jpeg_fast(path: str) -> np.ndarray | None:
    """RGB pixels of a JPEG via simplejpeg, or None to let Pillow decode (and report) it."""
    try:
        data = _read_bytes(path)
        height, width, _, _ = _simplejpeg.decode_jpeg_header(data)
        if height * width > MAX_DECODE_PIXELS:
            return None  # Pillow reads the header again and reports it
        return _simplejpeg.decode_jpeg(data, colorspace="RGB")
    except Exception:  # noqa: BLE001 - CMYK, progressive oddities, truncation: Pillow decides
        return None


def _read_bytes(path: str, first: int = 1 << 16) -> bytes:
    # os.read skips the buffered file object open() builds: about half the cost per small file
    fd = os.open(path, os.O_RDONLY)
    try:
        data = os.read(fd, first)
        if len(data) < first:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


# Pillow reports corrupt TIFF tags and EXIF data with warnings.warn (a UserWarning with its own
# file path, printed to stderr). Decoding runs on worker threads, where warnings.catch_warnings
# is not safe (it swaps process-wide state), so one process-wide hook sends the warnings raised
# on a thread that is decoding to that thread's list, and every other warning where it went.
_capturing = threading.local()
_shown_before = warnings.showwarning
_reported: set[str] = set()
_reported_lock = threading.Lock()


def _show(message, category, filename, lineno, file=None, line=None):
    sink = getattr(_capturing, "sink", None)
    if sink is not None:
        sink.append(" ".join(str(message).split())[:200])
        return
    _shown_before(message, category, filename, lineno, file, line)


def _capture_warnings() -> None:
    """Install the hooks (again, if something replaced ``warnings.showwarning`` since)."""
    global _shown_before
    current = warnings.showwarning
    if current is not _show:
        _shown_before = current
        warnings.showwarning = _show


_loggers_seen = -1


def _filter_pillow_logs(image_module) -> None:
    """Every Pillow logger gets :func:`_pil_records` (a logger's filters see only its own records,
    not its children's, so each one: the format plugins, all imported by ``Image.init``)."""
    global _loggers_seen
    loggers = logging.Logger.manager.loggerDict
    if len(loggers) == _loggers_seen:
        return
    image_module.init()
    for name, logger in list(loggers.items()):
        if (name == "PIL" or name.startswith("PIL.")) and isinstance(logger, logging.Logger) \
                and _pil_records not in logger.filters:
            logger.addFilter(_pil_records)
    _loggers_seen = len(loggers)


def _pil_records(record: logging.LogRecord) -> bool:
    """Pillow also logs what it finds wrong with a file ('More samples per pixel than can be
    decoded', at ERROR, which Python prints to stderr when nothing is configured): on a decoding
    thread the record goes to that thread's list like a warning; elsewhere it passes."""
    sink = getattr(_capturing, "sink", None)
    if sink is None or record.levelno < logging.WARNING:
        return True
    sink.append(" ".join(record.getMessage().split())[:200])
    return False


def _report_caught(path: str, caught: list[str]) -> None:
    """One warning line per distinct Pillow message, numbers aside (the first file that gave it); the others
    at debug level, so that a folder of photos with the same EXIF quirk is not a page of lines."""
    text = "; ".join(dict.fromkeys(caught))
    key = re.sub(r"\d+", "#", text)  # 'tag 257 had too many entries: 86' and ': 203' are one message
    with _reported_lock:
        first = key not in _reported
        _reported.add(key)
    if first:
        log.warning("%s: corrupt image metadata ignored, the pixels were read (Pillow: %s); other inputs with this "
                    "message are not named", path, text)
    else:
        log.debug("%s: corrupt image metadata ignored (Pillow: %s)", path, text)


def decode_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
    """Decode one image file to (H, W, C) uint8, or float32 in [0, 1] for >8-bit images.

    Palette and RGBA images become RGB (alpha is dropped); 16-bit images keep their precision.
    Animated GIFs and multi-page TIFFs give their first frame. EXIF orientation is not applied
    (the pixels are read as stored, as PIL-based training loaders such as torchvision's do).
    Raises ValueError/OSError with a readable message on failure. Pillow's warnings about the
    file (corrupt TIFF tags or EXIF data, a decompression bomb) never reach stderr: the image,
    if its pixels decode, is read and one warning line of the scanner's names the file.
    """
    _capture_warnings()
    caught: list[str] = []
    _capturing.sink = caught
    try:
        arr = _decode(path, height, width, channels)
    except Exception as exc:
        if not caught:
            raise
        raise UndecodableImage(f"{failure_reason(exc)} (Pillow: {'; '.join(dict.fromkeys(caught))})") from None
    finally:
        _capturing.sink = None
    if caught:
        _report_caught(path, caught)
    return arr


def _decode(path: str, height: int, width: int, channels: int) -> np.ndarray:
    if channels == 3 and _simplejpeg is not None and path.lower().endswith((".jpg", ".jpeg")):
        arr = _decode_jpeg_fast(path)
        if arr is not None:
            if arr.shape[:2] != (height, width):
                from PIL import Image

                arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))
            return arr
    from PIL import Image  # imported here: a scan of JPEGs at model size never needs Pillow

    _filter_pillow_logs(Image)

    with Image.open(path) as img:
        if img.width * img.height > MAX_DECODE_PIXELS:  # checked on the header, before decoding
            raise ValueError(f"the image declares {img.width}x{img.height} pixels, above the limit of "
                             f"{MAX_DECODE_PIXELS} pixels for one image")
        img.load()
        if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
            return _resize_float(_high_depth(img), height, width, channels)
        img = img.convert("RGB" if channels == 3 else "L")
        if img.size != (width, height):
            img = img.resize((width, height), Image.BILINEAR)
        arr = np.asarray(img)
    return arr.reshape(height, width, channels)


def _high_depth(img) -> np.ndarray:
    arr = np.asarray(img, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError("the image has NaN or infinite pixel values")
    if img.mode == "F":
        top = 1.0 if arr.max(initial=0.0) <= 1.0 else 255.0
    else:
        top = 65535.0
    return np.clip(arr / top, 0.0, 1.0)


def _resize_float(gray: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    from PIL import Image

    if gray.shape != (height, width):
        gray = np.asarray(Image.fromarray(gray, mode="F").resize((width, height), Image.BILINEAR))
    out = gray[:, :, None].astype(np.float32)
    return np.repeat(out, channels, axis=2) if channels == 3 else out


def fit_array_images(arr: np.ndarray, height: int, width: int, channels: int) -> np.ndarray:
    """(b, H', W'[, C']) raw array slice -> (b, H, W, C) float32 unit range (values checked by caller)."""
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / BYTE_MAX
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / np.float32(65535)
    elif arr.dtype.kind in "ui":
        # other integer types are read as 8-bit pixels; values outside 0-255 fail per image
        x = arr.astype(np.float32) / BYTE_MAX
    else:
        x = arr.astype(np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.shape[3] == 4:
        x = x[..., :3]
    if channels == 1 and x.shape[3] == 3:
        # the same luma weights Pillow uses for convert("L")
        x = (x @ np.array([0.299, 0.587, 0.114], dtype=np.float32))[..., None]
    elif channels == 3 and x.shape[3] == 1:
        x = np.repeat(x, 3, axis=3)
    if x.shape[1:3] != (height, width):
        from PIL import Image

        x = np.stack([
            np.stack([
                np.asarray(Image.fromarray(img[:, :, c], mode="F").resize((width, height), Image.BILINEAR))
                for c in range(img.shape[2])
            ], axis=2)
            for img in x
        ]).astype(np.float32)
    return x


class UndecodableImage(ValueError):
    """An image that failed to decode, with what Pillow said about it on the way (its reason as is)."""


def failure_reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if isinstance(exc, UndecodableImage):
        return text
    if name == "UnidentifiedImageError":
        return "not an image Pillow can read"
    if "truncat" in text.lower():
        return f"truncated image file ({text})"
    return f"{name}: {text}" if text else name
