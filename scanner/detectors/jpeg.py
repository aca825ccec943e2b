"""JPEG compression of a batch for TeCo's ``jpeg_compression`` corruption (see the notes of
:mod:`scanner.detectors.corruptions`): the batch becomes byte mosaics of 8x8-block-aligned tiles,
each mosaic is encoded (4:4:4 chroma) and decoded once, and the tiles are cut back out. With
4:4:4 every block is independent, so this gives each image exactly its own JPEG round trip."""

from __future__ import annotations

import math

import numpy as np

from ..inputs.decode import BYTE_MAX

try:  # a declared dependency; Pillow (same libjpeg) is the fallback
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - exercised only without simplejpeg
    _simplejpeg = None

_ZERO = np.float32(0.0)
_JPEG_BLOCK = 8
# JPEG mosaics are at most this many pixels a side (libjpeg's limit is 65500)
_MOSAIC_SIDE = 8192


def jpeg_mosaics(x: np.ndarray) -> tuple:
    """Planar images as byte mosaics of tiles padded to whole 8x8 blocks by repeating the
    last row / column (what the encoder does to a single image), each mosaic at most
    _MOSAIC_SIDE pixels a side: ``(shape, tile shape, [(first image, count, rows, cols, mosaic)])``."""
    b, c, h, w = x.shape
    t = x * np.float32(255)
    np.clip(t, _ZERO, np.float32(255), out=t)
    pixels = np.rint(t, out=t).astype(np.uint8)
    th, tw = -(-h // _JPEG_BLOCK) * _JPEG_BLOCK, -(-w // _JPEG_BLOCK) * _JPEG_BLOCK
    if th != h or tw != w:
        pixels = np.pad(pixels, ((0, 0), (0, 0), (0, th - h), (0, tw - w)), mode="edge")
    cols = max(1, min(_MOSAIC_SIDE // tw, math.ceil(math.sqrt(b))))
    per_mosaic = cols * max(1, _MOSAIC_SIDE // th)
    mosaics = []
    for start in range(0, b, per_mosaic):
        chunk = pixels[start:start + per_mosaic]
        n = len(chunk)
        rows = -(-n // cols)
        grid = np.empty((rows * cols, c, th, tw), np.uint8)
        grid[:n] = chunk
        grid[n:] = chunk[-1]  # filler tiles: any content, they are cut off
        mosaic = grid.reshape(rows, cols, c, th, tw).transpose(0, 3, 1, 4, 2).reshape(rows * th, cols * tw, c)
        mosaics.append((start, n, rows, cols, np.ascontiguousarray(mosaic)))
    return (b, c, h, w), (th, tw), mosaics


def jpeg_into(prep: tuple, quality: int, dst: np.ndarray) -> np.ndarray:
    """The mosaics of :func:`jpeg_mosaics` encoded at ``quality`` and decoded into ``dst``
    (planar float32, unit range)."""
    (b, c, h, w), (th, tw), mosaics = prep
    for start, n, rows, cols, mosaic in mosaics:
        decoded = jpeg_roundtrip(mosaic, quality)
        tiles = decoded.reshape(rows, th, cols, tw, c).transpose(0, 2, 4, 1, 3).reshape(rows * cols, c, th, tw)
        np.divide(tiles[:n, :, :h, :w], BYTE_MAX, out=dst[start:start + n], casting="unsafe")
    return dst


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """Encode (quality, 4:4:4) and decode an (H, W, C) uint8 image; the same shape back."""
    if _simplejpeg is None:
        return pillowjpeg_roundtrip(image, quality)
    if image.shape[-1] == 1:
        data = _simplejpeg.encode_jpeg(image, quality=quality, colorspace="GRAY", colorsubsampling="Gray")
        return _simplejpeg.decode_jpeg(data, colorspace="GRAY").reshape(image.shape)
    data = _simplejpeg.encode_jpeg(image, quality=quality, colorspace="RGB", colorsubsampling="444")
    return _simplejpeg.decode_jpeg(data, colorspace="RGB")


def pillowjpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    """:func:`jpeg_roundtrip` with Pillow (the fallback without simplejpeg; a cross-check)."""
    import io

    from PIL import Image

    gray = image.shape[-1] == 1
    pil = Image.fromarray(np.ascontiguousarray(image[..., 0] if gray else image), "L" if gray else "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality, **({} if gray else {"subsampling": 0}))
    buf.seek(0)
    with Image.open(buf) as decoded:
        arr = np.asarray(decoded.convert("L" if gray else "RGB"), dtype=np.uint8)
    return arr.reshape(image.shape)
