"""Lay out CIFAR-10 as the ImageFolder of JPEGs the benchmarks read (``bench/cifar.py``).

    python -m bench.cifar_folder cifar-10-python.tar.gz DATA/cifar10

Reads the official Python version (``cifar-10-python.tar.gz`` from
https://www.cs.toronto.edu/~kriz/cifar.html: five training batches and a test batch, each a
pickle) and writes ``DATA/cifar10/{train,test}/<class>/NNNN.jpg``, the classes in label order,
images numbered per class in the batches' order, JPEG quality 95. The pickles are read with an
unpickler that accepts only the dicts, lists, strings and numpy arrays the batches hold, so a
tampered archive cannot run code.
"""

from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from .cifar import CLASSES

BATCHES = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}


class _BatchUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"unexpected object in a CIFAR-10 batch: {module}.{name}")
        return super().find_class(module, name)


def read_batch(data: bytes) -> tuple[np.ndarray, list[int]]:
    """(N, 32, 32, 3) uint8 images and their labels from one pickled batch."""
    batch = _BatchUnpickler(io.BytesIO(data), encoding="bytes").load()
    images = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, [int(y) for y in batch[b"labels"]]


def convert(archive: Path, out: Path) -> dict[str, int]:
    """Write the ImageFolder tree; the number of images per split."""
    written = {}
    with tarfile.open(archive, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        for split, names in BATCHES.items():
            counts = [0] * len(CLASSES)
            for name in names:
                if name not in members:
                    raise SystemExit(f"{archive}: no {name} (is this cifar-10-python.tar.gz?)")
                images, labels = read_batch(tar.extractfile(members[name]).read())
                for image, label in zip(images, labels):
                    folder = out / split / CLASSES[label]
                    folder.mkdir(parents=True, exist_ok=True)
                    Image.fromarray(image).save(folder / f"{counts[label]:04d}.jpg", quality=95)
                    counts[label] += 1
            written[split] = sum(counts)
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("archive", type=Path, help="cifar-10-python.tar.gz")
    ap.add_argument("out", type=Path, help="the data folder to write, e.g. DATA/cifar10")
    args = ap.parse_args(argv)
    written = convert(args.archive, args.out)
    print(f"wrote {written['train']:,} training and {written['test']:,} test images under {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
