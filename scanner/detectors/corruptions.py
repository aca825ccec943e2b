"""Twelve image corruptions after CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), for TeCo.

Every corruption takes a batch ``(b, H, W, C)`` of float32 pixels in [0, 1] (C is 1 or 3) and a
severity 1..5, and returns a new float32 batch clipped to [0, 1]. The parameters per severity
are CIFAR-10-C's (made for 32x32 images); where a corruption is spatial its lengths in pixels
(blur sigma and radii) are multiplied by ``k = sqrt(H * W) / 32``, so a 224x224 image gets the
same blur relative to its size as a 32x32 one. Pixelate works with a relative factor already.

==================  ======================================================  =====================================
corruption          parameter (severity 1, 2, 3, 4, 5)                      what it does
==================  ======================================================  =====================================
gaussian_noise      sigma = .04, .06, .08, .09, .10                         ``x + sigma * z``
shot_noise          photons c = 500, 250, 100, 75, 50                       ``x + sqrt(x / c) * z`` (1)
impulse_noise       amount = .01, .02, .03, .05, .07                        that fraction of values set to 0 or 1
speckle_noise       sigma = .06, .10, .12, .16, .20                         ``x * (1 + sigma * z)``
gaussian_blur       sigma = (.4, .6, .7, .8, 1.0) * k                       taps within 3 sigma (2)
defocus_blur        (radius, alias sigma) = (.3, .4), (.4, .5), (.5, .6),   disk of that radius on the pixel
                    (1, .2), (1.5, .1), both * k                            grid, then a Gaussian (2, 3)
motion_blur         (radius, sigma) = (10, 1), (10, 1.5), (10, 2),          one-sided Gaussian line
                    (10, 2.5), (12, 3), both * k                            (2, 4)
contrast            c = .75, .5, .4, .3, .15                                ``(x - m) * c + m``, m the channel mean
brightness          dv = .05, .1, .15, .2, .3                               HSV value ``v + dv`` (5)
saturate            (scale, shift) = (.3, 0), (.1, 0), (1.5, 0),            HSV saturation ``s * scale + shift``
                    (2, .1), (2.5, .2)                                      (6)
pixelate            factor = .95, .9, .85, .75, .65                         area-average to ``int(factor * side)``,
                                                                            back up by pixel replication
jpeg_compression    quality = 80, 65, 58, 50, 40                            libjpeg, 4:4:4 chroma (7)
==================  ======================================================  =====================================

Notes

1. Shot noise uses the Gaussian approximation of Poisson noise ``Poisson(c x) / c`` (mean x,
   variance x / c), so that it can be driven by a fixed noise field. Impulse noise replaces
   each value (pixel and channel) independently, half of them by 0 and half by 1.
2. Blurs are 2D correlations of the image, its edge pixels repeated beyond the border.
   Gaussian taps reach 3 sigma (floor), none when sigma < 1/3.
3. The disk holds the grid offsets with ``dx^2 + dy^2 <= radius^2`` (radius < 1: the pixel
   alone), equally weighted; it is convolved with the anti-aliasing Gaussian, as in CIFAR-10-C.
4. Taps ``i = 0 .. min(floor(radius), ceil(3 sigma))`` at offset ``(round(i sin a), round(i cos
   a))`` weighted ``exp(-i^2 / (2 sigma^2))``, normalized; the angle ``a`` in [-45, 45] degrees
   is drawn once per (severity, H, W) (see Determinism).
5. In RGB the value (max channel) moves to ``min(v + dv, 1)`` with hue and saturation kept, i.e.
   the pixel is scaled by ``v' / v`` (black becomes gray ``dv``). Gray (C=1): ``min(x + dv, 1)``.
6. In RGB the channels move away from (or towards) the max channel so that the HSV saturation
   becomes ``clip(s * scale + shift, 0, 1)`` with hue and value kept. Pixels with no saturation
   (R = G = B) have no hue; they are left unchanged (CIFAR-10-C's HSV conversion gives them hue
   0, a red tint, when shift > 0). Hence a gray image (C = 1, or an RGB image with R = G = B) is
   left unchanged by ``saturate`` at every severity: for a gray model that corruption never
   changes a label. Severities 1-2 desaturate, 3-5 saturate, so the change grows from 3 to 5
   but is not monotone over 1..5.
7. Pixels are rounded to bytes, encoded with chroma at full resolution (4:4:4, where CIFAR-10-C
   used Pillow's default 4:2:0) and decoded. 4:4:4 keeps every 8x8 block independent, so a batch
   is encoded as one mosaic of tiles (each padded to whole blocks by repeating its edge, as the
   encoder does for a single image) and gives the pixels of one image at a time. simplejpeg (a
   dependency) does it; without it Pillow does, whose encoder rounds a little differently (a
   few levels on some pixels).

Determinism
-----------
The same image always gets the same corrupted image, whatever batch it is in: the noise field
(and the motion angle) is drawn from a generator seeded by (:data:`SEED`, the corruption's name,
the severity, the image shape (H, W, C); the motion angle: (H, W)), is the same for every image
of a batch and is cached per shape. All arithmetic is numpy on each image separately, in a
fixed order; no BLAS call, whose blocking could depend on the batch size.

Layout and cost
---------------
:func:`corrupt` takes and returns (b, H, W, C). Inside, images are planar (b, C, H, W)
(:func:`to_planar`, :func:`apply_corruption`), so a corruption can write straight into an NCHW
model buffer. No Python loop runs over pixels: a noise or color corruption is a few whole-array
operations; a blur or pixelate is a few shifted multiply-adds of the whole padded stack of image
planes per tap; JPEG is one encode and one decode of a mosaic per batch. TeCo's 60 corrupted
copies of 256 CIFAR-10 images take about 0.15 s on one core.
"""

from __future__ import annotations

import math
import zlib
from functools import lru_cache
from numbers import Integral

import numpy as np

from ..inputs.decode import BYTE_MAX
from .jpeg import jpeg_into, jpeg_mosaics
from .linear_filters import (gaussian_kernel, grouped, kernel_pass, matrix_pass, pixelate_matrix,
                             readonly, apply_plan)

CORRUPTIONS: tuple[str, ...] = (
    "gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise",
    "gaussian_blur", "defocus_blur", "motion_blur",
    "contrast", "brightness", "saturate", "pixelate", "jpeg_compression",
)
SEVERITIES = 5
#: seeds every noise field and motion angle (with the corruption, the severity and the shape)
SEED = 20230618
#: the image side CIFAR-10-C's spatial parameters were made for
REFERENCE_SIDE = 32

# CIFAR-10-C parameters per severity 1..5 (spatial lengths in pixels of a 32x32 image)
PARAMETERS: dict[str, tuple] = {
    "gaussian_noise": (0.04, 0.06, 0.08, 0.09, 0.10),
    "shot_noise": (500, 250, 100, 75, 50),
    "impulse_noise": (0.01, 0.02, 0.03, 0.05, 0.07),
    "speckle_noise": (0.06, 0.10, 0.12, 0.16, 0.20),
    "gaussian_blur": (0.4, 0.6, 0.7, 0.8, 1.0),
    "defocus_blur": ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1.0, 0.2), (1.5, 0.1)),
    "motion_blur": ((10, 1.0), (10, 1.5), (10, 2.0), (10, 2.5), (12, 3.0)),
    "contrast": (0.75, 0.5, 0.4, 0.3, 0.15),
    "brightness": (0.05, 0.1, 0.15, 0.2, 0.3),
    "saturate": ((0.3, 0.0), (0.1, 0.0), (1.5, 0.0), (2.0, 0.1), (2.5, 0.2)),
    "pixelate": (0.95, 0.9, 0.85, 0.75, 0.65),
    "jpeg_compression": (80, 65, 58, 50, 40),
}

_ZERO, _ONE = np.float32(0.0), np.float32(1.0)


def corrupt(images: np.ndarray, name: str, severity: int) -> np.ndarray:
    """The corruption ``name`` at ``severity`` of every image of a batch (see the module notes).

    Parameters
    ----------
    images : ndarray of shape (b, H, W, C), C in {1, 3}
        float32 pixels in [0, 1] (other floats are converted; uint8 pixels p become
        ``float32(p) / 255``).
    name : str
        One of :data:`CORRUPTIONS`.
    severity : int
        1 (mildest) to 5.

    Returns
    -------
    ndarray of shape (b, H, W, C), float32 in [0, 1], a new array.

    Raises
    ------
    ValueError
        For an unknown name or severity, or images of another shape or type.

    Examples
    --------
    >>> x = np.full((2, 32, 32, 3), 0.5, np.float32)
    >>> corrupt(x, "brightness", 2)[0, 0, 0]
    array([0.6, 0.6, 0.6], dtype=float32)
    """
    check_corruption(name, severity)
    planar = to_planar(images)
    return np.ascontiguousarray(apply_corruption(planar, name, int(severity)).transpose(0, 2, 3, 1))


def check_corruption(name: str, severity: int) -> None:
    """ValueError unless ``name`` is one of :data:`CORRUPTIONS` and ``severity`` an int in 1..5."""
    if not isinstance(name, str) or name not in PARAMETERS:
        raise ValueError(f"unknown corruption {name!r}; available: {', '.join(CORRUPTIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, Integral) or not 1 <= severity <= SEVERITIES:
        raise ValueError(f"severity: expected an integer from 1 to {SEVERITIES}, got {severity!r}")


def to_planar(images: np.ndarray) -> np.ndarray:
    """(b, H, W, C) uint8 or float images -> a new C-contiguous float32 (b, C, H, W) array, the
    layout :func:`apply_corruption` works in (ValueError if ``images`` are not such images)."""
    arr = np.asarray(images)
    if arr.ndim != 4 or arr.shape[-1] not in (1, 3) or arr.dtype.kind not in "uf":
        raise ValueError(f"images: expected an array shaped (b, H, W, C) with C = 1 or 3, uint8 or float "
                         f"in [0, 1], got {arr.shape} {arr.dtype}")
    if arr.dtype.kind == "u" and arr.dtype != np.uint8:
        raise ValueError(f"images: integer pixels must be uint8, got {arr.dtype}")
    out = np.empty((arr.shape[0], arr.shape[3], arr.shape[1], arr.shape[2]), np.float32)
    src = arr.transpose(0, 3, 1, 2)
    if arr.dtype == np.uint8:
        np.divide(src, BYTE_MAX, out=out, casting="unsafe")
    else:
        np.copyto(out, src, casting="unsafe")
    return out


def prepare(x: np.ndarray, name: str):
    """What every severity of corruption ``name`` of planar images ``x`` shares (the channel
    means, value and saturation, JPEG mosaics), for :func:`apply_corruption`'s ``prep``; None
    when there is nothing to share."""
    if name == "contrast":
        b, c = x.shape[:2]
        return x.reshape(b, c, -1).mean(axis=2, dtype=np.float64).astype(np.float32).reshape(b, c, 1, 1)
    if name in ("brightness", "saturate") and x.shape[1] == 3:
        return _hsv_parts(x)
    if name == "jpeg_compression":
        return jpeg_mosaics(x)
    return None


def apply_corruption(x: np.ndarray, name: str, severity: int, out: np.ndarray | None = None,
                     prep=None) -> np.ndarray:
    """:func:`corrupt` on planar images, without the checks.

    Parameters
    ----------
    x : ndarray of shape (b, C, H, W), C-contiguous float32 in [0, 1] (see :func:`to_planar`)
    name, severity : valid (see :func:`check_corruption`)
    out : ndarray of shape (b, C, H, W), float32, optional
        Receives the result (any strides, for example a transposed view of a model's input
        buffer); must not overlap ``x``. Default: a new array.
    prep : optional
        ``prepare(x, name)``, when several severities of one corruption are applied to ``x``.

    Returns
    -------
    ``out`` (or the new array), clipped to [0, 1].
    """
    dst = np.empty_like(x) if out is None else out
    if not len(x):
        return dst
    param = PARAMETERS[name][severity - 1]
    if prep is None:
        prep = prepare(x, name)
    if name == "gaussian_noise":
        np.add(x, _noise_field(name, severity, x.shape[1:]), out=dst)
    elif name == "shot_noise":
        t = np.maximum(x, _ZERO)
        np.sqrt(t, out=t)
        t *= _noise_field(name, severity, x.shape[1:])
        np.add(t, x, out=dst)
    elif name == "speckle_noise":
        np.multiply(x, _noise_field(name, severity, x.shape[1:]), out=dst)
    elif name == "impulse_noise":
        keep, salt = _impulse_masks(severity, x.shape[1:])
        np.multiply(x, keep, out=dst)
        dst += salt
    elif name in _SPATIAL:
        np.clip(apply_plan(x, _spatial_plan(name, severity, x.shape[2], x.shape[3])), _ZERO, _ONE, out=dst)
        return dst
    elif name == "contrast":
        factor = np.float32(param)
        np.multiply(x, factor, out=dst)
        dst += prep * (_ONE - factor)
    elif name == "brightness":
        _brightness(x, np.float32(param), dst, prep)
    elif name == "saturate":
        _saturate(x, np.float32(param[0]), np.float32(param[1]), dst, prep)
    else:  # jpeg_compression: decoded bytes, in range
        return jpeg_into(prep, int(param), dst)
    np.clip(dst, _ZERO, _ONE, out=dst)
    return dst


# -- noise ----------------------------------------------------------------------------------------
def _rng(name: str, severity: int, shape: tuple[int, ...]) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([SEED, zlib.crc32(name.encode()), severity, *shape]))


def _draw(name: str, severity: int, planar_shape: tuple[int, ...], kind: str) -> np.ndarray:
    """A field drawn in (H, W, C) order (the seed names the image shape (H, W, C)), planar."""
    c, h, w = planar_shape
    rng = _rng(name, severity, (h, w, c))
    field = rng.standard_normal((h, w, c), dtype=np.float32) if kind == "normal" else \
        rng.random((h, w, c), dtype=np.float32)
    return np.ascontiguousarray(field.transpose(2, 0, 1))


@lru_cache(maxsize=64)
def _noise_field(name: str, severity: int, planar_shape: tuple[int, ...]) -> np.ndarray:
    """The (C, H, W) field every image of that shape gets: sigma z, z / sqrt(c) or 1 + sigma z."""
    z = _draw(name, severity, planar_shape, "normal")
    c = PARAMETERS[name][severity - 1]
    if name == "gaussian_noise":
        field = z * np.float32(c)
    elif name == "shot_noise":
        field = z / np.float32(math.sqrt(c))
    else:  # speckle_noise
        field = z * np.float32(c) + _ONE
    return readonly(field)


@lru_cache(maxsize=16)
def _impulse_masks(severity: int, planar_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``keep`` (1 where the value stays) and ``salt`` (1 where it becomes 1): a fraction
    ``amount`` of the values is replaced, half by 0 (pepper) and half by 1 (salt)."""
    u = _draw("impulse_noise", severity, planar_shape, "uniform")
    amount = np.float32(PARAMETERS["impulse_noise"][severity - 1])
    keep = (u >= amount).astype(np.float32)
    salt = (u < amount / np.float32(2)).astype(np.float32)
    return readonly(keep), readonly(salt)


# -- color ----------------------------------------------------------------------------------------
def _hsv_parts(x: np.ndarray) -> tuple:
    """Of planar RGB, each (b, 1, H, W): value v (max channel), v with 1 where v = 0, a mask of
    the pixels with saturation, delta = v - min (1 where 0), saturation s = delta / v."""
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    v = np.maximum(np.maximum(r, g), b)
    delta = v - np.minimum(np.minimum(r, g), b)
    colored = delta > _ZERO
    safe_v = np.where(v > _ZERO, v, _ONE)
    safe_delta = np.where(colored, delta, _ONE)
    return v, safe_v, colored, safe_delta, delta / safe_v


def _brightness(x: np.ndarray, dv: np.float32, dst: np.ndarray, parts) -> None:
    if x.shape[1] == 1:
        np.add(x, dv, out=dst)
        return
    v, safe_v = parts[:2]
    new_v = np.minimum(v + dv, _ONE)
    np.multiply(x, new_v / safe_v, out=dst)  # hue and saturation kept: scale by v' / v
    black = v == _ZERO
    if black.any():
        dst += np.where(black, new_v, _ZERO)  # black has no hue: it becomes gray v'


def _saturate(x: np.ndarray, scale: np.float32, shift: np.float32, dst: np.ndarray, parts) -> None:
    if x.shape[1] == 1:
        np.copyto(dst, x)  # gray: no saturation to change (module note 5)
        return
    v, safe_v, colored, safe_delta, sat = parts
    # channel = v - (v - channel) * s' / s with s = delta / v; gray pixels (delta = 0) stay
    factor = sat * scale
    factor += shift
    np.clip(factor, _ZERO, _ONE, out=factor)
    factor *= safe_v
    factor /= safe_delta
    factor *= colored
    np.subtract(v, x, out=dst)
    dst *= factor
    np.subtract(v, dst, out=dst)


# -- spatial ----------------------------------------------------------------------------------------
# Blurs and pixelate are linear operators, planned here from their parameters and applied by
# scanner.detectors.linear_filters.
_SPATIAL = ("gaussian_blur", "defocus_blur", "motion_blur", "pixelate")


@lru_cache(maxsize=256)
def _spatial_plan(name: str, severity: int, h: int, w: int) -> tuple:
    """``(ph, pw, terms)``: the padding and the operator as a sum of terms, each a sequence of
    passes (see :func:`~scanner.detectors.linear_filters.shift_pass`) over planes padded to (h + 2 ph, w + 2 pw)."""
    param = PARAMETERS[name][severity - 1]
    k = math.sqrt(h * w) / REFERENCE_SIDE
    if name == "gaussian_blur":
        g = gaussian_kernel(param * k)
        r = len(g) // 2
        return r, r, ((kernel_pass(g, 1), kernel_pass(g, w + 2 * r)),)
    if name == "pixelate":
        mh, mw = pixelate_matrix(h, param), pixelate_matrix(w, param)
        ph = int(max((abs(i - j) for i, j in zip(*np.nonzero(mh))), default=0))
        pw = int(max((abs(i - j) for i, j in zip(*np.nonzero(mw))), default=0))
        hp, wp = h + 2 * ph, w + 2 * pw
        return ph, pw, ((matrix_pass(mw, "w", hp, wp, ph, pw), matrix_pass(mh, "h", hp, wp, ph, pw)),)
    if name == "defocus_blur":
        # the disk row by row (rows of equal half-width share a term), each row's box and the
        # rows' vertical profile convolved with the anti-aliasing Gaussian
        radius, alias = param[0] * k, param[1] * k
        reach = int(math.floor(radius + 1e-9))
        dys = np.arange(-reach, reach + 1)
        half = np.floor(np.sqrt(np.maximum(radius ** 2 - dys ** 2, 0.0)) + 1e-9).astype(int)
        count = float(np.sum(2 * half + 1))
        g = gaussian_kernel(alias)
        p = reach + len(g) // 2
        pieces = []
        for width in np.unique(half):
            box = np.convolve(g, np.ones(2 * width + 1))
            rows = np.convolve(g, np.where(half == width, 1.0 / count, 0.0))
            pieces.append((box, rows))
        return p, p, tuple((kernel_pass(box, 1), kernel_pass(rows, w + 2 * p)) for box, rows in pieces)
    # motion_blur: taps along one direction, a single 2D pass
    radius, sigma = param[0] * k, param[1] * k
    angle = math.radians(_rng(name, severity, (h, w)).uniform(-45.0, 45.0))
    steps = np.arange(1 + min(int(math.floor(radius)), int(math.ceil(3.0 * sigma))))
    weights = np.exp(-0.5 * (steps / sigma) ** 2)
    weights /= weights.sum()
    taps: dict[tuple[int, int], float] = {}
    for step, wt in zip(steps, weights):
        key = (int(round(step * math.sin(angle))), int(round(step * math.cos(angle))))
        taps[key] = taps.get(key, 0.0) + float(wt)
    ph = max(abs(dy) for dy, _ in taps)
    pw = max(abs(dx) for _, dx in taps)
    wp = w + 2 * pw
    return ph, pw, ((grouped({dy * wp + dx: wt for (dy, dx), wt in taps.items()}),),)
