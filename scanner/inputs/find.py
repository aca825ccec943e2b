"""Finding inputs: image files, folders of them (recursive), ``.npy`` / ``.npz`` arrays of images
shaped (N, H, W) or (N, H, W, C), and arrays already in memory. All of them are input sources
of one :class:`InputSet`; nothing is decoded here (see :mod:`scanner.inputs.decode` and
:mod:`scanner.inputs.stream`).
"""

from __future__ import annotations

import os
import stat
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .._validation import MAX_SIDE, check_path, file_kind
from ..errors import InputError
from .decode import MAX_DECODE_PIXELS  # image files' limit, before decoding: arrays get the same

IMAGE_SUFFIXES = frozenset(
    ".png .jpg .jpeg .bmp .ppm .pgm .pbm .pnm .webp .tif .tiff .gif".split()
)
ARRAY_SUFFIXES = frozenset((".npy", ".npz"))
# A .npz member is decompressed whole when read: larger ones are refused before inflating
# (a few MB of zip can hold GBs). .npy files are memory-mapped and need no limit.
MAX_NPZ_MEMBER_BYTES = 512 << 20


@dataclass(frozen=True)
class FailedInput:
    """An input that failed before decoding (an unreadable array file, a FIFO...): one failure."""

    path: str
    reason: str
    count: int = 1

    def name(self, i: int) -> str:
        return self.path


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
        self._parts: list[str | ArraySource | MemoryArray | FailedInput] = []
        self._offsets: list[int] = []  # first input index of each part
        self.count = 0

        self._offsets_array: np.ndarray | None = None

    def add_file(self, path: str) -> None:
        self._parts.append(path)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += 1

    def add_failed(self, path: str, reason: str) -> None:
        """An input that cannot be read at all, listed as failed with its reason."""
        self.add_array(FailedInput(path, reason))

    def add_array(self, source: ArraySource | MemoryArray | FailedInput) -> None:
        self._parts.append(source)
        self._offsets.append(self.count)
        self._offsets_array = None
        self.count += source.count

    def __len__(self) -> int:
        return self.count

    def parts(self) -> list[str | ArraySource | MemoryArray | FailedInput]:
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


def as_inputs(paths) -> InputSet:
    """What ``Scanner.scan`` and ``calibrate`` take, as an :class:`InputSet`: an InputSet; one
    path (``str``, ``bytes``, ``os.PathLike``: that file or folder, not its characters); an image
    array in memory shaped (N, H, W[, C]) (input ``array[i]``); or a sequence of paths."""
    if isinstance(paths, InputSet):
        return paths
    if isinstance(paths, np.ndarray):
        check_memory_images(paths)
        inputs = InputSet()
        inputs.add_array(MemoryArray(paths))
        return inputs
    if isinstance(paths, (str, bytes, os.PathLike)):
        return collect_inputs([paths])
    if paths is not None and not isinstance(paths, (list, tuple)):
        try:
            paths = list(paths)
        except TypeError:
            raise InputError(f"inputs: expected a path, a sequence of paths or an image array, got "
                             f"{type(paths).__name__}") from None
    return collect_inputs(paths)


def check_memory_images(images, name: str = "images") -> np.ndarray:
    """Images in memory as :meth:`Scanner.score_arrays` and :meth:`Scanner.scan` take them, as an
    array: the shapes, channel counts, element types and size a ``.npy`` file may hold."""
    if not isinstance(images, np.ndarray):
        try:
            images = np.asarray(images)
        except (ValueError, TypeError) as exc:  # ragged nested lists
            raise InputError(f"{name}: expected an array shaped (N, H, W[, C]), got {type(images).__name__} "
                             f"({' '.join(str(exc).split())[:100]})") from None
    _check_array_shape(images.shape, images.dtype, name)
    return images


def collect_inputs(paths: Sequence[str | Path]) -> InputSet:
    """Expand files, folders and arrays into an :class:`InputSet`, in the order given.

    Folders are searched recursively for image and array files, sorted by path. A missing
    path or an empty folder is an :class:`InputError`; an unreadable array file, a file that is
    not a regular file (a FIFO, a device) or a folder that cannot be listed is one failed input.
    """
    if paths is None or len(paths) == 0:
        raise InputError("no input paths given")
    checked = [check_path(raw, "input path", error=InputError) for raw in paths]
    inputs = InputSet()
    for path in checked:
        if not path.exists():
            if os.path.lexists(path):  # the link itself is there: a broken link or a link loop
                inputs.add_failed(str(path), _not_regular(str(path)) or "cannot read this file")
                continue
            raise InputError(f"input path not found: {path}")
        if path.is_dir():
            found = _walk(path)
            if not found:
                raise InputError(
                    f"no images found in folder {path} (looked for {', '.join(sorted(IMAGE_SUFFIXES | ARRAY_SUFFIXES))})"
                )
            for item, problem in found:
                if problem:
                    inputs.add_failed(item, problem)
                elif item.lower().endswith((".npy", ".npz")):
                    _add_arrays(inputs, Path(item))
                else:
                    inputs.add_file(item)
        else:
            problem = _not_regular(str(path))
            if problem:
                inputs.add_failed(str(path), problem)
            elif path.suffix.lower() in ARRAY_SUFFIXES:
                _add_arrays(inputs, path)
            else:
                inputs.add_file(str(path))
    return inputs


def _walk(folder: Path) -> list[tuple[str, str | None]]:
    """``(path, problem)`` for the image and array files below ``folder``, sorted the way paths
    sort (component-wise). ``problem`` is None for a regular file, else why it cannot be read
    (a FIFO would block the decoder forever; a folder that cannot be listed is reported too).
    Symbolic links to folders are not followed.
    """
    wanted = IMAGE_SUFFIXES | ARRAY_SUFFIXES
    found: list[tuple[str, str | None]] = []
    pending = [str(folder)]
    while pending:
        current = pending.pop()
        try:
            with os.scandir(current) as entries:
                listed = list(entries)
        except OSError as exc:
            found.append((current, f"cannot list this folder ({exc.strerror or exc})"))
            continue
        for entry in listed:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                    continue
            except OSError as exc:  # a stat that fails: listed with its reason like any unreadable file
                found.append((entry.path, f"cannot read this file ({exc.strerror or exc})"))
                continue
            dot = entry.name.rfind(".")
            if dot > 0 and entry.name[dot:].lower() in wanted:
                # d_type answers is_file() without a stat for a regular file; a link loop
                # (x.png -> x.png) raises there, and _not_regular gives its reason
                try:
                    regular = entry.is_file()
                except OSError:
                    regular = False
                found.append((entry.path, None if regular else _not_regular(entry.path)))
    return sorted(found, key=lambda item: item[0].split(os.sep))


def _not_regular(path: str) -> str | None:
    """Why ``path`` is not a readable regular file, or None if it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "broken link (the file it points to does not exist)"
    except OSError as exc:
        return f"cannot read this file ({exc.strerror or exc})"
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file ({file_kind(mode)}); skipped"


def _add_arrays(inputs: InputSet, path: Path) -> None:
    """The image arrays of one .npy/.npz file, or the file as one failed input."""
    try:
        sources = array_sources(path)
    except InputError as exc:
        inputs.add_failed(str(path), str(exc))
        return
    for source in sources:
        if source.count == 0:
            inputs.add_failed(source.name(0).rsplit("[", 1)[0], "holds no images (its first dimension is 0)")
        else:
            inputs.add_array(source)


def array_sources(path: Path) -> list[ArraySource]:
    """Read only the headers of a .npy/.npz file and list its image arrays."""
    try:
        if path.suffix.lower() == ".npy":
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
            _check_array_shape(arr.shape, arr.dtype, f"{path}")
            return [ArraySource(str(path), None, int(arr.shape[0]))]
        sources = []
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                member = info.filename
                if not member.endswith(".npy"):
                    continue
                if info.file_size > MAX_NPZ_MEMBER_BYTES:
                    raise InputError(
                        f"member {member!r} is {info.file_size / 2**20:.0f} MiB uncompressed, above the "
                        f"{MAX_NPZ_MEMBER_BYTES >> 20} MiB limit for .npz members (they are inflated whole); "
                        "save large arrays as .npy, which is memory-mapped")
                with archive.open(member) as fh:
                    fmt = np.lib.format
                    version = fmt.read_magic(fh)
                    reader = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
                    shape, _, dtype = reader(fh)
                key = member[: -len(".npy")]
                if len(shape) in (3, 4) and dtype.kind in "uif":
                    _check_array_shape(shape, dtype, f"{path}:{key}")
                    if int(np.prod(shape)) * dtype.itemsize > info.file_size:
                        raise InputError(f"member {member!r} is truncated (its header declares {tuple(shape)} {dtype})")
                    sources.append(ArraySource(str(path), key, int(shape[0])))
        if not sources:
            raise InputError(f"{path}: no image array (N, H, W[, C]) in this .npz")
        return sources
    except InputError as exc:
        raise InputError(str(exc).removeprefix(f"{path}: ")) from None
    except Exception as exc:  # noqa: BLE001 - numpy/zipfile raise many types for bad files
        text = " ".join(str(exc).split())[:200]
        raise InputError(f"cannot read this array file ({type(exc).__name__}{': ' + text if text else ''})") from None


def _check_array_shape(shape, dtype, name: str) -> None:
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3, 4)):
        raise InputError(f"{name}: expected images shaped (N, H, W) or (N, H, W, C) with C in 1, 3, 4; got {tuple(shape)}")
    if shape[0] and (shape[1] == 0 or shape[2] == 0):
        raise InputError(f"{name}: images of zero height or width {tuple(shape)}")
    if dtype.kind not in "uif":
        raise InputError(f"{name}: expected uint8 or float images, got dtype {dtype}")
    if shape[0] and (max(shape[1], shape[2]) > MAX_SIDE or shape[1] * shape[2] > MAX_DECODE_PIXELS):
        raise InputError(f"{name}: images of {shape[1]} x {shape[2]} pixels; at most {MAX_SIDE} a side and "
                         f"{MAX_DECODE_PIXELS} pixels (8192 x 8192), as for image files")


class InputWindow:
    """Inputs ``first`` .. ``first + size - 1`` of an :class:`InputSet`, indexed from 0 (what
    :class:`ScanResult` reads of its inputs: ``len``, ``name``, ``names``)."""

    def __init__(self, inputs: InputSet, first: int, size: int) -> None:
        self._inputs, self._first, self._size = inputs, first, size

    def __len__(self) -> int:
        return self._size

    def name(self, i: int) -> str:
        return self._inputs.name(self._first + i)

    def names(self, indices):
        return self._inputs.names(np.asarray(indices) + self._first)
