"""Micro-benchmark: ways to build one model batch of amplified, normalized copies.

    python -m bench.amplify [--images 256] [--size 32] [--repeats 50]

For ``--images`` random 8-bit RGB images, each variant fills the same (6 * b, 3, H, W) float32
buffer with the unscaled copy and ``clip(n * x, 0, 1)`` for n in 3,5,7,9,11, normalized with
the CIFAR-10 mean/std, and must give the scanner's bits exactly:
  scanner     ``scanner.detectors.scaleup.fill_scaled_batch`` from bytes (what a scan does);
  unblocked   float conversion in the loader, then one pass per operation over each whole scale
              segment with ``np.clip`` (the scanner before blocking);
  lookup      a 256-entry table per channel and scale, filled with the same float32 operations,
              gathered with ``np.take`` (bit-identical, tried and dropped: the gather is slower).
Prints milliseconds per batch (median over ``--repeats``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from scanner.inputs.decode import BYTE_MAX
from scanner.detectors.scaleup import fill_scaled_batch

from . import cifar

SCALES = (3, 5, 7, 9, 11)
MEAN = np.array(cifar.MEAN, np.float32)
STD = np.array(cifar.STD, np.float32)


def normalize_(x: np.ndarray) -> np.ndarray:
    np.subtract(x, MEAN[:, None, None], out=x)
    np.divide(x, STD[:, None, None], out=x)
    return x


def scanner_variant(pixels: np.ndarray, buf: np.ndarray) -> None:
    fill_scaled_batch(pixels.transpose(0, 3, 1, 2), SCALES, buf, finish=normalize_)


def unblocked_variant(pixels: np.ndarray, buf: np.ndarray) -> None:
    b = len(pixels)
    x = np.empty(pixels.shape, np.float32)
    np.divide(pixels, BYTE_MAX, out=x, casting="unsafe")
    base = buf[:b]
    np.copyto(base, x.transpose(0, 3, 1, 2))
    for i, n in enumerate(SCALES, start=1):
        seg = buf[i * b:(i + 1) * b]
        np.multiply(base, np.float32(n), out=seg)
        np.clip(seg, np.float32(0), np.float32(1), out=seg)
        normalize_(seg)
    normalize_(base)


def lookup_tables() -> list[np.ndarray]:
    byte = np.arange(256, dtype=np.uint8)
    unit = np.empty(256, np.float32)
    np.divide(byte, BYTE_MAX, out=unit, casting="unsafe")
    tables = []
    for n in (1,) + SCALES:
        v = unit.copy() if n == 1 else np.clip(unit * np.float32(n), np.float32(0), np.float32(1))
        tables.append(((v[None, :] - MEAN[:, None]) / STD[:, None]).astype(np.float32).reshape(-1))
    return tables


def lookup_variant(pixels: np.ndarray, buf: np.ndarray, tables: list[np.ndarray]) -> None:
    b = len(pixels)
    index = pixels.transpose(0, 3, 1, 2).astype(np.intp)
    index += (np.arange(3) * 256)[:, None, None]
    for i, table in enumerate(tables):
        np.take(table, index, out=buf[i * b:(i + 1) * b])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=50)
    args = ap.parse_args(argv)
    pixels = np.random.default_rng(0).integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    tables = lookup_tables()
    variants = {"scanner": scanner_variant, "unblocked": unblocked_variant,
                "lookup": lambda p, b: lookup_variant(p, b, tables)}
    bufs = {k: np.empty((6 * args.images, 3, args.size, args.size), np.float32) for k in variants}
    for name, fn in variants.items():
        fn(pixels, bufs[name])
    for name in variants:
        if not np.array_equal(bufs[name].view(np.uint32), bufs["scanner"].view(np.uint32)):
            raise SystemExit(f"{name} does not give the scanner's bits")
    print(f"{args.images} images of {args.size}x{args.size}x3, scales {','.join(map(str, SCALES))}; "
          f"ms per batch, median of {args.repeats}:")
    for name, fn in variants.items():
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn(pixels, bufs[name])
            times.append(time.perf_counter() - start)
        print(f"  {name:<10} {1e3 * statistics.median(times):6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
