"""Streaming an :class:`~scanner.inputs.find.InputSet` as decoded batches of bounded size, decoding
ahead on worker threads. Every input comes out decoded or as a failure with its reason.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterator

import numpy as np

from .decode import BYTE_MAX, decode_image, failure_reason, fit_array_images
from .find import FailedInput, InputSet


@dataclass
class Batch:
    """Decoded images of one chunk: ``images[k]`` is input ``indices[k]``; failures listed."""

    indices: np.ndarray  # (b,) int64, input indices of the decoded rows
    # (b, H, W, C): uint8 pixels when every image of the chunk was 8-bit (the unit-range value
    # is pixel / BYTE_MAX, applied by the consumer in the same pass as its own copy), else float32
    # in [0, 1]
    images: np.ndarray
    failures: list[tuple[int, str]]
    size: int  # how many inputs this chunk covered (decoded + failed)


def _as_float(images: np.ndarray, filled: int) -> np.ndarray:
    """A float32 batch holding ``images[:filled]`` in unit range (a no-op for a float batch)."""
    if images.dtype == np.float32:
        return images
    out = np.empty(images.shape, dtype=np.float32)
    np.divide(images[:filled], BYTE_MAX, out=out[:filled], casting="unsafe")
    return out


class BatchLoader:
    """Stream an :class:`InputSet` as decoded batches, decoding ahead on worker threads.

    At most ``prefetch`` chunks are decoded or waiting at any time, so memory stays bounded
    whatever the number of inputs.
    """

    def __init__(self, inputs: InputSet, *, height: int, width: int, channels: int,
                 batch_size: int, workers: int = 2, prefetch: int | None = None) -> None:
        self.inputs = inputs
        self.shape = (height, width, channels)
        self.batch_size = max(1, int(batch_size))
        self.workers = max(1, int(workers))
        self.prefetch = prefetch or self.workers + 1
        self._arrays: dict[object, np.ndarray] = {}
        self._lock = threading.Lock()

    def _array(self, source) -> np.ndarray:
        # .npy files are memory-mapped; a .npz member is decompressed once, not once per chunk
        with self._lock:
            if source not in self._arrays:
                self._arrays.clear()
                self._arrays[source] = source.load()
            return self._arrays[source]

    def _chunks(self) -> Iterator[tuple[object, int, int]]:
        """(part, first local index, count) pieces of at most batch_size inputs, in order."""
        parts, offsets = self.inputs.parts(), self.inputs.offsets()
        pending: list[tuple[object, int, int, int]] = []  # part, local start, count, global start
        filled = 0
        for part, offset in zip(parts, offsets):
            total = 1 if isinstance(part, str) else part.count
            local = 0
            while local < total:
                take = min(total - local, self.batch_size - filled)
                pending.append((part, local, take, offset + local))
                filled += take
                local += take
                if filled == self.batch_size:
                    yield pending
                    pending, filled = [], 0
        if pending:
            yield pending

    def _load(self, pieces) -> Batch:
        h, w, c = self.shape
        size = sum(p[2] for p in pieces)
        # 8-bit images stay bytes; the batch turns float32 at its first other image
        images = np.empty((size, h, w, c), dtype=np.uint8)
        indices = np.empty(size, dtype=np.int64)
        failures: list[tuple[int, str]] = []
        row = 0
        for part, local, count, start in pieces:
            if isinstance(part, FailedInput):
                failures.append((start, part.reason))
            elif isinstance(part, str):
                try:
                    img = decode_image(part, h, w, c)
                except Exception as exc:  # noqa: BLE001 - any decode failure is reported per input
                    failures.append((start, failure_reason(exc)))
                    continue
                if img.dtype == np.uint8 and images.dtype == np.uint8:
                    images[row] = img
                elif img.dtype == np.uint8:
                    np.divide(img, BYTE_MAX, out=images[row], casting="unsafe")
                else:
                    images = _as_float(images, row)
                    images[row] = img
                indices[row] = start
                row += 1
            else:
                try:
                    raw = np.asarray(self._array(part)[local:local + count])
                    block = fit_array_images(raw, h, w, c)
                except Exception as exc:  # noqa: BLE001
                    failures.extend((start + k, failure_reason(exc)) for k in range(count))
                    continue
                bad = ~np.isfinite(block).all(axis=(1, 2, 3)) | (block.min(axis=(1, 2, 3)) < 0) | (block.max(axis=(1, 2, 3)) > 1)
                reason = (f"integer pixel values outside 0-255 in a {raw.dtype} array; store uint8 (0-255) or uint16 "
                          "(0-65535)" if raw.dtype.kind in "iu" else
                          "float values outside [0, 1] (or NaN); scale the array to [0, 1] or store uint8")
                for k in np.flatnonzero(bad):
                    failures.append((start + int(k), reason))
                good = np.flatnonzero(~bad)
                images = _as_float(images, row)
                images[row:row + len(good)] = block[good]
                indices[row:row + len(good)] = start + good
                row += len(good)
        return Batch(indices[:row], images[:row], failures, size)

    # -- for engines that decode elsewhere (scanner.engines.ray_data ships chunks to Ray tasks) --
    def chunks(self) -> Iterator[list[tuple[object, int, int, int]]]:
        """The chunks :meth:`__iter__` decodes, in input order: lists of (source, first local
        index, count, first input index) pieces, ``batch_size`` inputs each (the last fewer)."""
        return self._chunks()

    def load(self, pieces) -> Batch:
        """Decode one chunk from :meth:`chunks`, exactly as the local loop does."""
        return self._load(pieces)

    def __iter__(self) -> Iterator[Batch]:
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="scanner-decode")
        queue = []
        try:
            for pieces in self._chunks():
                queue.append(pool.submit(self._load, pieces))
                if len(queue) >= self.prefetch:
                    yield queue.pop(0).result()
            while queue:
                yield queue.pop(0).result()
        finally:  # a consumer that stops early (a closed pipe) does not wait for chunks it will not use
            pool.shutdown(wait=True, cancel_futures=True)
