"""Load CIFAR-10 from an ImageFolder tree of JPEGs and cache it as uint8 arrays.

The tree is ``DATA/{train,test}/<class>/NNNN.jpg`` with the ten classes in label order.
Decoding 60,000 JPEGs takes about a minute; the decoded arrays are cached in
``bench/.work/cifar10_<split>.npz`` (keyed by the data directory's absolute path) so
later runs load them in well under a second.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)

REPO_ROOT = Path(__file__).resolve().parent.parent
WORK_DIR = REPO_ROOT / "bench" / ".work"
DEFAULT_DATA = REPO_ROOT.parent / "shared" / "data" / "cifar10"


def _decode(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    if arr.shape != (32, 32, 3):
        raise ValueError(f"{path}: expected a 32x32 RGB image, got shape {arr.shape}")
    return arr


def _scan(data_dir: Path, split: str) -> tuple[list[Path], np.ndarray]:
    root = data_dir / split
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 split not found: {root} (pass --data)")
    paths: list[Path] = []
    labels: list[int] = []
    for label, name in enumerate(CLASSES):
        files = sorted((root / name).glob("*.jpg"))
        if not files:
            raise FileNotFoundError(f"no JPEGs under {root / name}")
        paths.extend(files)
        labels.extend([label] * len(files))
    return paths, np.asarray(labels, dtype=np.int64)


def load_split(data_dir: str | os.PathLike = DEFAULT_DATA, split: str = "train",
               *, cache: bool = True) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Return ``(x, y, names)``: uint8 images (N, 32, 32, 3), int64 labels (N,) and file stems.

    ``names`` are ``<class>_<stem>`` (e.g. ``cat_0001``), handy for writing samples.
    """
    data_dir = Path(data_dir).resolve()
    key = hashlib.sha1(str(data_dir).encode()).hexdigest()[:8]
    cache_path = WORK_DIR / f"cifar10_{split}_{key}.npz"
    if cache and cache_path.exists():
        z = np.load(cache_path)
        return z["x"], z["y"], list(z["names"])
    paths, y = _scan(data_dir, split)
    x = np.stack([_decode(p) for p in paths])
    names = [f"{p.parent.name}_{p.stem}" for p in paths]
    if cache:
        WORK_DIR.mkdir(parents=True, exist_ok=True)
        tmp = cache_path.with_suffix(".tmp.npz")
        np.savez(tmp, x=x, y=y, names=np.asarray(names))
        os.replace(tmp, cache_path)
    return x, y, names


def load(data_dir: str | os.PathLike = DEFAULT_DATA):
    """Return ``((x_train, y_train), (x_test, y_test))`` as uint8 HWC arrays and int64 labels."""
    xtr, ytr, _ = load_split(data_dir, "train")
    xte, yte, _ = load_split(data_dir, "test")
    return (xtr, ytr), (xte, yte)
