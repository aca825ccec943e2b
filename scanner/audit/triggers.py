"""Trigger families the audit searches, as pure functions of unit-range HWC images.

A backdoor is a shortcut the model learned from a family of inputs: a small patch, a faint
pattern blended over the whole image, a smooth warp, a small universal additive perturbation.
Measured on the zoo (``bench/results/audit.md``), backdoored models respond to a *random member*
of their trigger's family almost as strongly as to the trigger itself: any noise patch in the
poisoned corner, any noise blend at the poisoned weight, any smooth warp of the poisoned strength.
So a search over seeded random members of each family finds a working trigger for those attacks
with about ten thousand queries in all. A trigger crafted against the model itself (a targeted
universal adversarial perturbation) has no such family and is not found this way.

Every trigger is a :class:`Trigger`: a family name, its parameters, a size (what the report calls
the trigger's size: patch area as a fraction of the image, blend weight, warp strength in pixels,
L-inf norm) and ``apply(images) -> images``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

FAMILIES = ("patch", "blend", "warp", "additive")


@dataclass
class Trigger:
    """One candidate trigger: ``apply`` maps (N, H, W, C) unit-range images to triggered ones."""

    family: str
    size: float
    params: dict = field(default_factory=dict)
    apply: Callable[[np.ndarray], np.ndarray] = field(repr=False, default=lambda x: x)
    pattern: np.ndarray | None = field(repr=False, default=None)
    mask: np.ndarray | None = field(repr=False, default=None)

    def describe(self) -> str:
        p = self.params
        if self.family == "patch":
            return f"{p['side']}x{p['side']} {p['content']} patch at {p['where']}"
        if self.family == "blend":
            return f"{p['content']} pattern blended at weight {p['alpha']:g}"
        if self.family == "warp":
            return f"smooth warp of {p['strength']:g} px ({p['grid']}x{p['grid']} control grid)"
        return f"universal additive perturbation, L-inf {p['eps'] * 255:.0f}/255 ({p.get('how', 'random')})"


# ------------------------------------------------------------------ patch

def patch_side(height: int, width: int) -> int:
    """About a tenth of the shorter side (3 px on 32x32, 22 px on 224x224), at least 2."""
    return max(2, round(min(height, width) / 10))


def _corners(height: int, width: int, side: int) -> dict[str, tuple[int, int]]:
    return {"bottom-right": (height - side, width - side), "bottom-left": (height - side, 0),
            "top-right": (0, width - side), "top-left": (0, 0),
            "centre": ((height - side) // 2, (width - side) // 2)}


def patch_trigger(content: np.ndarray, where: str, row: int, col: int, name: str,
                  height: int, width: int) -> Trigger:
    side = content.shape[0]

    def apply(x: np.ndarray) -> np.ndarray:
        out = x.copy()
        out[:, row:row + side, col:col + side, :] = content
        return out

    mask = np.zeros((height, width), np.float32)
    mask[row:row + side, col:col + side] = 1
    return Trigger("patch", side * side / (height * width),
                   {"side": side, "where": where, "row": row, "col": col, "content": name},
                   apply, pattern=content, mask=mask)


def patch_candidates(height: int, width: int, channels: int, rng: np.random.Generator, draws: int) -> list[Trigger]:
    side = patch_side(height, width)
    ii, jj = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    fixed = {"white": np.ones((side, side, channels), np.float32),
             "black": np.zeros((side, side, channels), np.float32),
             "checkerboard": np.repeat(((ii + jj) % 2 == 0).astype(np.float32)[..., None], channels, axis=2)}
    out = []
    for where, (r, c) in _corners(height, width, side).items():
        for name, content in fixed.items():
            out.append(patch_trigger(content, where, r, c, name, height, width))
        for _ in range(draws):
            out.append(patch_trigger(rng.random((side, side, channels), dtype=np.float32), where, r, c, "noise",
                                     height, width))
            out.append(patch_trigger(np.round(rng.random((side, side, channels), dtype=np.float32)), where, r, c,
                                     "binary noise", height, width))
    return out


# ------------------------------------------------------------------ blend

def blend_trigger(pattern: np.ndarray, alpha: float, name: str) -> Trigger:
    def apply(x: np.ndarray) -> np.ndarray:
        return ((1 - alpha) * x + alpha * pattern).astype(np.float32)

    return Trigger("blend", float(alpha), {"alpha": float(alpha), "content": name}, apply, pattern=pattern)


def blend_candidates(height: int, width: int, channels: int, rng: np.random.Generator, draws: int) -> list[Trigger]:
    return [blend_trigger(rng.random((height, width, channels), dtype=np.float32), alpha, "uniform noise")
            for alpha in (0.1, 0.2) for _ in range(draws)]


# ------------------------------------------------------------------ warp

def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (g, g) grid to (height, width), corners aligned."""
    g = grid.shape[0]
    ys, xs = np.linspace(0, g - 1, height), np.linspace(0, g - 1, width)
    y0, x0 = np.minimum(ys.astype(int), g - 2), np.minimum(xs.astype(int), g - 2)
    fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
    a, b = grid[y0][:, x0], grid[y0][:, x0 + 1]
    c, d = grid[y0 + 1][:, x0], grid[y0 + 1][:, x0 + 1]
    return (a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy


def warp_trigger(field_: np.ndarray, strength: float, height: int, width: int) -> Trigger:
    """Each pixel is read from ``strength`` pixels away (on average) along a smooth random field."""
    g = field_.shape[0]
    flow = field_ / max(float(np.abs(field_).mean()), 1e-8) * strength
    dy, dx = _upsample(flow[..., 0], height, width), _upsample(flow[..., 1], height, width)
    yy, xx = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    sy, sx = np.clip(yy + dy, 0, height - 1), np.clip(xx + dx, 0, width - 1)
    y0, x0 = np.floor(sy).astype(int), np.floor(sx).astype(int)
    y1, x1 = np.minimum(y0 + 1, height - 1), np.minimum(x0 + 1, width - 1)
    wy, wx = (sy - y0)[..., None].astype(np.float32), (sx - x0)[..., None].astype(np.float32)

    def apply(x: np.ndarray) -> np.ndarray:
        return (x[:, y0, x0] * (1 - wx) * (1 - wy) + x[:, y0, x1] * wx * (1 - wy)
                + x[:, y1, x0] * (1 - wx) * wy + x[:, y1, x1] * wx * wy).astype(np.float32)

    return Trigger("warp", float(strength), {"strength": float(strength), "grid": g}, apply)


def warp_candidates(height: int, width: int, rng: np.random.Generator, draws: int) -> list[Trigger]:
    scale = min(height, width) / 32  # strengths are stated for 32x32 images and scale with the side
    return [warp_trigger(rng.uniform(-1, 1, (4, 4, 2)), s * scale, height, width)
            for s in (0.5, 1.0) for _ in range(draws)]


# ------------------------------------------------------------------ additive

def additive_trigger(delta: np.ndarray, eps: float, how: str) -> Trigger:
    def apply(x: np.ndarray) -> np.ndarray:
        return np.clip(x + delta, 0.0, 1.0).astype(np.float32)

    return Trigger("additive", float(eps), {"eps": float(eps), "how": how}, apply, pattern=delta)


EPS = 8 / 255  # the usual L-inf budget of invisible universal triggers on 8-bit images


def additive_candidates(height: int, width: int, channels: int, rng: np.random.Generator, draws: int) -> list[Trigger]:
    return [additive_trigger(rng.choice(np.float32([-EPS, EPS]), (height, width, channels)), EPS, "random signs")
            for _ in range(draws)]


def candidates(height: int, width: int, channels: int, seed: int, draws: int = 4,
               families: tuple[str, ...] = FAMILIES) -> list[Trigger]:
    """Every random candidate of the given families, seeded. Every family is drawn, in a fixed
    order, whichever are kept: a family's candidates are the same whichever others run."""
    rng = np.random.default_rng(seed)
    out: list[Trigger] = []
    for family in FAMILIES:
        if family == "patch":
            part = patch_candidates(height, width, channels, rng, draws)
        elif family == "blend":
            part = blend_candidates(height, width, channels, rng, draws)
        elif family == "warp":
            part = warp_candidates(height, width, rng, draws)
        else:
            part = additive_candidates(height, width, channels, rng, draws)
        if family in families:
            out += part
    return out


def saturation(images: np.ndarray) -> float:
    """Share of pixel values at the ends of the range (within 0.02 of 0 or 1)."""
    return float(((images <= 0.02) | (images >= 0.98)).mean()) if images.size else 0.0


# above this share of saturated pixels (near-binary images: scanned text, MNIST digits) any
# texture is out of distribution: measured, a uniform-noise blend at 0.2 sends 99% of MNIST
# digits to class 8 on the clean MNIST model, so texture families cannot tell a learned trigger
# from the model's reaction to a kind of image it never saw (CIFAR-10 5%, GTSRB 4%, MNIST 89%)
MAX_SATURATION = 0.5
TEXTURE_FAMILIES = ("blend", "additive")
