"""Linear image filters as shifted multiply-adds: how the spatial corruptions run fast.

A filter (a blur kernel, the pixelate operator) is planned as passes of weighted taps. The
images are laid out as a stack of planes (one per image and channel), each padded by repeating
its edge pixels, with one zero plane before and after the stack; every tap is then one shift of
the whole flat stack and one multiply-add on contiguous memory, whatever the axis. Results in
the padding are not used. Work buffers are per thread and reused.
"""

from __future__ import annotations

import math
import threading

import numpy as np


def readonly(arr: np.ndarray) -> np.ndarray:
    """The array itself, made read-only (cached planes and noise fields are shared)."""
    arr.flags.writeable = False
    return arr


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalized Gaussian taps within 3 sigma (odd length; [1] when sigma < 1/3)."""
    radius = int(math.floor(3.0 * sigma)) if sigma > 0 else 0
    t = np.arange(-radius, radius + 1)
    w = np.exp(-0.5 * (t / sigma) ** 2) if radius else np.ones(1)
    return w / w.sum()


def pixelate_matrix(n: int, factor: float) -> np.ndarray:
    """(n, n): area-average down to ``m = int(factor * n)`` pixels, then replicate back up."""
    m = max(1, int(factor * n))
    if m >= n:
        return np.eye(n)
    # down (m, n): output pixel i covers [i n / m, (i + 1) n / m) of the input
    edges = np.arange(m + 1) * (n / m)
    lo, hi = edges[:-1, None], edges[1:, None]
    cols = np.arange(n)[None, :]
    down = np.clip(np.minimum(hi, cols + 1) - np.maximum(lo, cols), 0, None) / (n / m)
    # up (n, m): nearest, the source pixel under each output pixel's center
    up = np.zeros((n, m))
    up[np.arange(n), np.minimum(((np.arange(n) + 0.5) * m / n).astype(int), m - 1)] = 1.0
    return up @ down


def kernel_pass(kernel: np.ndarray, stride: int) -> tuple:
    """A centered 1D kernel along the axis of that flat stride, as a pass (see :func:`shift_pass`)."""
    r = len(kernel) // 2
    return grouped({int(t - r) * stride: float(v) for t, v in enumerate(kernel) if v != 0})


def grouped(taps: dict[int, float]) -> tuple:
    """Taps {flat shift: weight} -> ``((weight, shifts), ...)``: taps of equal float32 weight
    (the two sides of a symmetric kernel, a box) are summed before one multiply."""
    groups: dict[np.float32, list[int]] = {}
    for shift, wt in sorted(taps.items()):
        groups.setdefault(np.float32(wt), []).append(shift)
    return tuple((wt, tuple(shifts)) for wt, shifts in groups.items())


def matrix_pass(mat: np.ndarray, axis: str, hp: int, wp: int, ph: int, pw: int) -> tuple:
    """An (n, n) operator along ``axis`` ("h" or "w"), ``y[i] = sum_k mat[i, i + k] x[i + k]``,
    as a pass whose weights vary with the position in the padded plane."""
    n = len(mat)
    taps = []
    for k in range(-n + 1, n):
        d = np.diagonal(mat, k)  # d[j] = mat[i, i + k] with i = j + max(0, -k)
        if not d.any():
            continue
        along = np.zeros(n)
        along[max(0, -k):max(0, -k) + len(d)] = d
        plane = np.zeros((hp, wp), np.float32)
        if axis == "w":
            plane[ph:ph + (hp - 2 * ph), pw:pw + n] = along[None, :]
            taps.append((readonly(plane.reshape(-1)), (k,)))
        else:
            plane[ph:ph + n, pw:pw + (wp - 2 * pw)] = along[:, None]
            taps.append((readonly(plane.reshape(-1)), (k * wp,)))
    return tuple(taps)


class _Scratch(threading.local):
    """Per-thread float32 work buffers, grown as needed and reused: the spatial corruptions'
    intermediate stacks (fresh large allocations each time cost page faults)."""

    def __init__(self) -> None:
        self.buffers: dict[str, np.ndarray] = {}

    def get(self, slot: str, shape: tuple[int, ...]) -> np.ndarray:
        size = math.prod(shape)
        buf = self.buffers.get(slot)
        if buf is None or buf.size < size:
            buf = self.buffers[slot] = np.empty(size, np.float32)
        return buf[:size].reshape(shape)


_scratch = _Scratch()


def padded_stack(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Planar images (b, C, H, W) -> (b C + 2, H + 2 ph, W + 2 pw): each plane edge-padded,
    one zero plane before and after (a scratch buffer)."""
    b, c, h, w = x.shape
    src = x.reshape(b * c, h, w)
    out = _scratch.get("stack", (b * c + 2, h + 2 * ph, w + 2 * pw))
    out[0] = 0
    out[-1] = 0
    core = out[1:-1]
    core[:, ph:ph + h, pw:pw + w] = src
    if pw:
        core[:, ph:ph + h, :pw] = src[:, :, :1]
        core[:, ph:ph + h, pw + w:] = src[:, :, -1:]
    if ph:
        core[:, :ph] = core[:, ph:ph + 1]
        core[:, ph + h:] = core[:, ph + h - 1:ph + h]
    return out


def shift_pass(stack: np.ndarray, groups: tuple, out: np.ndarray) -> np.ndarray:
    """``out[p] = sum_groups weight * sum_shifts stack[p + shift]`` at every position of the
    inner planes (the two outer planes of ``out`` are set to zero). A weight is a float32 or
    an array over the positions of one padded plane."""
    planes, hp, wp = stack.shape
    n = hp * wp
    size = (planes - 2) * n
    flat = stack.reshape(-1)
    out[0] = 0
    out[-1] = 0
    core = out[1:-1].reshape(planes - 2, n)
    for i, (wt, shifts) in enumerate(groups):
        acc = core if i == 0 else _scratch.get("tmp", core.shape)
        srcs = [flat[n + shift:n + shift + size].reshape(planes - 2, n) for shift in shifts]
        if len(srcs) == 1:
            np.multiply(srcs[0], wt, out=acc)
        else:
            np.add(srcs[0], srcs[1], out=acc)
            for src in srcs[2:]:
                acc += src
            acc *= wt
        if i:
            core += acc
    return out


def apply_plan(x: np.ndarray, plan: tuple) -> np.ndarray:
    """The operator applied to planar images: a (b, C, H, W) view into a padded result (a
    scratch buffer, valid until the next call)."""
    ph, pw, terms = plan
    b, c, h, w = x.shape
    stack = padded_stack(x, ph, pw)
    total, total_slot = None, None
    for passes in terms:
        y, y_slot = stack, "stack"
        for groups in passes:  # ping-pong between two buffers, the sum kept in a third
            y_slot = next(s for s in ("a", "b", "c") if s not in (y_slot, total_slot))
            y = shift_pass(y, groups, _scratch.get(y_slot, stack.shape))
        if total is None:
            total, total_slot = y, y_slot
        else:
            total += y
    return total[1:-1].reshape(b, c, h + 2 * ph, w + 2 * pw)[:, :, ph:ph + h, pw:pw + w]
