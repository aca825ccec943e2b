"""Finding, decoding and resizing inputs, streamed in bounded batches.

Inputs are image files (any format Pillow reads), folders of them (recursive), and ``.npy`` /
``.npz`` arrays of images shaped (N, H, W) or (N, H, W, C), uint8 or float in [0, 1]. Every
input is either delivered as a unit-range float32 image or reported as a failure with its
reason; nothing is dropped silently.
"""

from __future__ import annotations

import os
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import InputError
from .scaleup import UNIT

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .bmp .ppm .pgm .pbm .pnm .webp .tif .tiff .gif".split()
)
ARRAY_SUFFIXES = frozenset((".npy", ".npz"))


@dataclass(frozen=True)
class ArraySource:
    """One image array inside a .npy file or a .npz member."""

    path: str
    key: str | None  # npz member, None for .npy
    count: int

    def name(self, i: int) -> str:
        return f"{self.path}[{i}]" if self.key is None else f"{self.path}:{self.key}[{i}]"

    def load(self) -> np.ndarray:
        if self.key is None:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        with np.load(self.path, allow_pickle=False) as archive:
            return archive[self.key]


class InputSet:
    """An ordered list of inputs: image files and slices of image arrays.

    Stores one string per file and one record per array, so listing a folder of any size
    costs little memory; ``name(i)`` builds the display name of input ``i`` on demand.
    """

    def __init__(self) -> None:
        self._parts: list[str | ArraySource] = []
        self._offsets: list[int] = []  # first input index of each part
        self.count = 0

        self._offsets_array: np.ndarray | None = None

    def add_file(self, path: str) -> None:
        self._parts.append(path)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += 1

    def add_array(self, source: ArraySource) -> None:
        self._parts.append(source)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += source.count

    def __len__(self) -> int:
        return self.count

    def parts(self) -> list[str | ArraySource]:
        return self._parts

    def offsets(self) -> list[int]:
        return self._offsets

    def name(self, i: int) -> str:
        return next(self.names([i]))

    def names(self, indices) -> Iterator[str]:
        """Display names of the inputs ``indices``, in that order."""
        if self._offsets_array is None:
            self._offsets_array = np.asarray(self._offsets, dtype=np.int64)
        indices = np.asarray(indices, dtype=np.int64)
        parts = (np.searchsorted(self._offsets_array, indices, side="right") - 1).tolist()
        for i, part in zip(indices.tolist(), parts):
            item = self._parts[part]
            yield item if isinstance(item, str) else item.name(i - self._offsets[part])


def collect_inputs(paths: Sequence[str | Path]) -> InputSet:
    """Expand files, folders and arrays into an :class:`InputSet`, in the order given.

    Folders are searched recursively for image and array files, sorted by path. A missing
    path, an empty folder or an unreadable array header is an :class:`InputError`.
    """
    if not paths:
        raise InputError("no input paths given")
    inputs = InputSet()
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"input path not found: {path}")
        if path.is_dir():
            found = _walk(path)
            if not found:
                raise InputError(
                    f"no images found in folder {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES | ARRAY_SUFFIXES))})"
                )
            for item in found:
                if item.lower().endswith((".npy", ".npz")):
                    _add_path(inputs, Path(item))
                else:
                    inputs.add_file(item)
        else:
            _add_path(inputs, path)
    return inputs


def _walk(folder: Path) -> list[str]:
    """Image and array files below ``folder``, sorted the way paths sort (component-wise).

    Files that cannot be read (a broken link, say) are kept: they fail later with a reason.
    """
    wanted = IMAGE_SUFFIXES | ARRAY_SUFFIXES
    found = []
    for root, _dirs, files in os.walk(folder):
        prefix = os.path.join(root, "")
        found.extend(prefix + f for f in files if f.rfind(".") > 0 and f[f.rfind("."):].lower() in wanted)
    return sorted(found, key=lambda p: p.split(os.sep))


def _add_path(inputs: InputSet, path: Path) -> None:
    if path.suffix.lower() in ARRAY_SUFFIXES:
        for source in array_sources(path):
            inputs.add_array(source)
    else:
        inputs.add_file(str(path))


def array_sources(path: Path) -> list[ArraySource]:
    """Read only the headers of a .npy/.npz file and list its image arrays."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            _check_array_shape(arr.shape, arr.dtype, f"{path}")
            return [ArraySource(str(path), None, int(arr.shape[0]))]
        sources = []
        with zipfile.ZipFile(path) as archive:
            for member in archive.namelist():
                if not member.endswith(".npy"):
                    continue
                with archive.open(member) as fh:
                    fmt = np.lib.format
                    version = fmt.read_magic(fh)
                    reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = reader(fh)
                key = member[: -len(".npy")]
                if len(shape) in (3, 4) and dtype.kind in "uif":
                    _check_array_shape(shape, dtype, f"{path}:{key}")
                    sources.append(ArraySource(str(path), key, int(shape[0])))
        if not sources:
            raise InputError(f"{path}: no image array (N, H, W[, C]) in this .npz")
        return sources
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types for bad files
        raise InputError(f"cannot read array file {path}: {exc}") from None


def _check_array_shape(shape, dtype, name: str) -> None:
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        raise InputError(f"{name}: expected images shaped (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {tuple(shape)}")
    if dtype.kind not in "uif":
        raise InputError(f"{name}: expected uint8 or float images, got dtype {dtype}")


# -- decoding ----------------------------------------------------------------------------------

try:  # libjpeg-turbo without Pillow's per-file overhead: 3x faster on small JPEGs, same pixels
    import simplejpeg as _simplejpeg
except ImportError:  # pragma: no cover - optional speed-up
    _simplejpeg = None


def _decode_jpeg_fast(path: str) -> np.ndarray | None:
    """RGB pixels of a JPEG via simplejpeg, or None to let Pillow decode (and report) it."""
    try:
        return _simplejpeg.decode_jpeg(_read_bytes(path), colorspace="RGB")
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


def decode_image(path: str, height: int, width: int, channels: int) -> np.ndarray:
    """Decode one image file to (H, W, C) uint8, or float32 in [0, 1] for >8-bit images.

    Palette and RGBA images become RGB (alpha is dropped); 16-bit images keep their precision.
    Raises ValueError/OSError with a readable message on failure.
    """
    if channels == 3 and _simplejpeg is not None and path.lower().endswith((".jpg", ".jpeg")):
        arr = _decode_jpeg_fast(path)
        if arr is not None:
            if arr.shape[:2] != (height, width):
                from PIL import Image

                arr = np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR))
            return arr
    from PIL import Image  # imported here: a scan of JPEGs at model size never needs Pillow

    with Image.open(path) as img:
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
        x = arr.astype(np.float32) * UNIT
    elif arr.dtype.kind == "u" or arr.dtype.kind == "i":
        x = arr.astype(np.float32) * np.float32(1 / 65535 if arr.dtype.itemsize > 1 else 1 / 255)
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


@dataclass
class Batch:
    """Decoded images of one chunk: ``images[k]`` is input ``indices[k]``; failures listed."""

    indices: np.ndarray  # (b,) int64, input indices of the decoded rows
    # (b, H, W, C): uint8 pixels when every image of the chunk was 8-bit (the unit-range value
    # is pixel * UNIT, applied by the consumer in the same pass as its own copy), else float32
    # in [0, 1]
    images: np.ndarray
    failures: list[tuple[int, str]]
    size: int  # how many inputs this chunk covered (decoded + failed)


def _as_float(images: np.ndarray, filled: int) -> np.ndarray:
    """A float32 batch holding ``images[:filled]`` in unit range (a no-op for a float batch)."""
    if images.dtype == np.float32:
        return images
    out = np.empty(images.shape, dtype=np.float32)
    np.multiply(images[:filled], UNIT, out=out[:filled], casting="unsafe")
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
        self._arrays: dict[ArraySource, np.ndarray] = {}
        self._lock = threading.Lock()

    def _array(self, source: ArraySource) -> np.ndarray:
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
            if isinstance(part, str):
                try:
                    img = decode_image(part, h, w, c)
                except Exception as exc:  # noqa: BLE001 - any decode failure is reported per input
                    failures.append((start, _reason(exc)))
                    continue
                if img.dtype == np.uint8 and images.dtype == np.uint8:
                    images[row] = img
                elif img.dtype == np.uint8:
                    np.multiply(img, UNIT, out=images[row], casting="unsafe")
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
                    failures.extend((start + k, _reason(exc)) for k in range(count))
                    continue
                bad = ~np.isfinite(block).all(axis=(1, 2, 3)) | (block.min(axis=(1, 2, 3)) < 0) | (block.max(axis=(1, 2, 3)) > 1)
                for k in np.flatnonzero(bad):
                    failures.append((start + int(k), "float values outside [0, 1] (or NaN); scale the array to [0, 1] or store uint8"))
                good = np.flatnonzero(~bad)
                images = _as_float(images, row)
                images[row:row + len(good)] = block[good]
                indices[row:row + len(good)] = start + good
                row += len(good)
        return Batch(indices[:row], images[:row], failures, size)

    def __iter__(self) -> Iterator[Batch]:
        with ThreadPoolExecutor(self.workers, thread_name_prefix="scanner-decode") as pool:
            queue = []
            for pieces in self._chunks():
                queue.append(pool.submit(self._load, pieces))
                if len(queue) >= self.prefetch:
                    yield queue.pop(0).result()
            for future in queue:
                yield future.result()


def _reason(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if name == "UnidentifiedImageError":
        return "not an image Pillow can read"
    if "truncat" in text.lower():
        return f"truncated image file ({text})"
    return f"{name}: {text}" if text else name
