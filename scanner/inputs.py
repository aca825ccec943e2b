"""Finding inputs: image files, folders of them (recursive), ``.npy`` / ``.npz`` arrays of images
shaped (N, H, W) or (N, H, W, C), and arrays already in memory. All of them are input sources
of one :class:`InputSet`; nothing is decoded here (see :mod:`scanner.decode` and
:mod:`scanner.batches`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .errors import InputError

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


class MemoryArray:
    """Images already in memory, (N, H, W[, C]): an input source like a file (``Scanner.score_arrays``)."""

    def __init__(self, images: np.ndarray, label: str = "array") -> None:
        self.images = images
        self.label = label
        self.count = int(len(images))

    def name(self, i: int) -> str:
        return f"{self.label}[{i}]"

    def load(self) -> np.ndarray:
        return self.images


class InputSet:
    """An ordered list of inputs: image files and slices of image arrays.

    Stores one string per file and one record per array, so listing a folder of any size
    costs little memory; ``name(i)`` builds the display name of input ``i`` on demand.
    """

    def __init__(self) -> None:
        self._parts: list[str | ArraySource | MemoryArray] = []
        self._offsets: list[int] = []  # first input index of each part
        self.count = 0

        self._offsets_array: np.ndarray | None = None

    def add_file(self, path: str) -> None:
        self._parts.append(path)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += 1

    def add_array(self, source: ArraySource | MemoryArray) -> None:
        self._parts.append(source)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += source.count

    def __len__(self) -> int:
        return self.count

    def parts(self) -> list[str | ArraySource | MemoryArray]:
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
