"""The zoo's data sets behind one interface: CIFAR-10, the GTSRB subset and the MNIST test set.

    ds = datasets.load("gtsrb")        # ds.x_train, ds.y_train, ds.x_test, ds.y_test (uint8 HWC)

CIFAR-10 has its own train / test split (``bench/cifar.py``). The GTSRB subset (7,949 images of
the official test set) and MNIST (the 10,000 test digits) have none, so they are split here:
seeded and stratified by class, ``TEST_FRACTION`` of every class to the test split (at least one
image), the rest to training. ``split_seed`` 0 is the zoo's split; the indices into the source
arrays are recorded by :func:`split_record` in every manifest.

Normalization constants of GTSRB and MNIST are the per-channel mean / std of their training
split, rounded to 4 digits (CIFAR-10 keeps the usual constants).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import cifar

SHARED = cifar.REPO_ROOT.parent / "shared" / "data"
TEST_FRACTION = 0.2
NAMES = ("cifar10", "gtsrb", "mnist")

GTSRB_CLASSES = (
    "speed limit 20", "speed limit 30", "speed limit 50", "speed limit 60", "speed limit 70",
    "speed limit 80", "end of speed limit 80", "speed limit 100", "speed limit 120", "no passing",
    "no passing over 3.5t", "right-of-way at next intersection", "priority road", "yield", "stop",
    "no vehicles", "over 3.5t prohibited", "no entry", "general caution", "dangerous curve left",
    "dangerous curve right", "double curve", "bumpy road", "slippery road", "road narrows on the right",
    "road work", "traffic signals", "pedestrians", "children crossing", "bicycles crossing",
    "beware of ice/snow", "wild animals crossing", "end of all limits", "turn right ahead",
    "turn left ahead", "ahead only", "go straight or right", "go straight or left", "keep right",
    "keep left", "roundabout mandatory", "end of no passing", "end of no passing over 3.5t",
)
MNIST_CLASSES = tuple(str(d) for d in range(10))


@dataclass
class Dataset:
    name: str
    classes: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    x_train: np.ndarray  # uint8 (N, H, W, C)
    y_train: np.ndarray  # int64
    x_test: np.ndarray
    y_test: np.ndarray
    source: str
    split: dict = field(default_factory=dict)
    flip: bool = True     # horizontal-flip augmentation (off where mirroring changes the class)
    pad: int = 4          # random-crop padding (reflect)
    default_arch: str = "resnet8-xs"
    train_index: np.ndarray | None = None  # into the source arrays (split data sets only)
    test_index: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the model input."""
        _, h, w, c = self.x_train.shape
        return c, h, w


def stratified_split(y: np.ndarray, seed: int, test_fraction: float = TEST_FRACTION) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train_index, test_index): per class, a seeded permutation; the first
    ``max(1, round(test_fraction * n_class))`` go to the test split."""
    rng = np.random.default_rng(seed)
    tr, te = [], []
    for k in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == k))
        n_te = max(1, int(round(test_fraction * len(idx))))
        te.append(idx[:n_te])
        tr.append(idx[n_te:])
    return np.sort(np.concatenate(tr)), np.sort(np.concatenate(te))


def _stats(x: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    xf = x.reshape(-1, x.shape[-1]).astype(np.float64) / 255.0
    return tuple(round(float(v), 4) for v in xf.mean(0)), tuple(round(float(v), 4) for v in xf.std(0))


def _split_set(name, path, classes, x, y, seed, **kw) -> Dataset:
    tr, te = stratified_split(y, seed)
    mean, std = _stats(x[tr])
    split = {"method": f"stratified by class, seeded (numpy default_rng({seed}) permutation per class in "
                       f"class order), {TEST_FRACTION:.0%} of each class (at least 1) to test",
             "seed": seed, "n_train": int(len(tr)), "n_test": int(len(te)),
             "code": "bench.datasets.stratified_split"}
    return Dataset(name, classes, mean, std, x[tr], y[tr], x[te], y[te], str(path), split,
                   train_index=tr, test_index=te, **kw)


def load(name: str, data: str | Path | None = None, split_seed: int = 0) -> Dataset:
    if name == "cifar10":
        root = Path(data) if data else cifar.DEFAULT_DATA
        (xtr, ytr), (xte, yte) = cifar.load(root)
        return Dataset("cifar10", cifar.CLASSES, cifar.MEAN, cifar.STD, xtr, ytr, xte, yte, str(root),
                       {"method": "the official CIFAR-10 train / test split", "n_train": len(ytr), "n_test": len(yte)})
    if name == "gtsrb":
        path = Path(data) if data else SHARED / "gtsrb-subset" / "gtsrb_subset_32.npz"
        with np.load(path) as z:
            x, y = z["x"], z["y"].astype(np.int64)
        # no flip: mirroring turns "turn left" into "turn right" and "keep left" into "keep right"
        return _split_set("gtsrb", path, GTSRB_CLASSES, x, y, split_seed, flip=False)
    if name == "mnist":
        path = Path(data) if data else SHARED / "mnist-test" / "mnist_test.npz"
        with np.load(path) as z:
            x, y = z["x"][..., None], z["y"].astype(np.int64)
        return _split_set("mnist", path, MNIST_CLASSES, x, y, split_seed, flip=False, pad=2,
                          default_arch="vgg-mnist")
    raise ValueError(f"unknown data set {name!r}; expected one of {NAMES}")


def split_record(ds: Dataset) -> dict:
    """The split as written into manifests (with the test indices for split data sets)."""
    rec = dict(ds.split)
    if ds.test_index is not None:
        rec["test_index"] = ds.test_index.astype(int).tolist()
    return rec
