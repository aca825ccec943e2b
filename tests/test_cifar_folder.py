"""bench.cifar_folder: the official CIFAR-10 archive laid out as the ImageFolder the bench reads."""

import io
import pickle
import tarfile

import numpy as np
import pytest
from PIL import Image

from bench.cifar_folder import convert


def _archive(path, batches):
    with tarfile.open(path, "w:gz") as tar:
        for name, payload in batches.items():
            data = pickle.dumps(payload)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_batches_become_class_folders_of_jpegs(tmp_path):
    rng = np.random.default_rng(0)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        labels = [int(y) for y in rng.integers(0, 10, 4)]
        data = np.zeros((4, 3072), np.uint8)
        data[:, :1024] = 200  # a red image: channels first in the file, last in the JPEG
        batches[name] = {b"data": data, b"labels": labels}
    _archive(tmp_path / "c.tar.gz", batches)
    written = convert(tmp_path / "c.tar.gz", tmp_path / "out")
    assert written == {"train": 20, "test": 4}
    files = sorted((tmp_path / "out").rglob("*.jpg"))
    assert len(files) == 24
    first = batches["test_batch"][b"labels"][0]
    classes = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    pixel = np.asarray(Image.open(tmp_path / "out" / "test" / classes[first] / "0000.jpg"))[16, 16]
    assert pixel[0] > 150 and pixel[1] < 60 and pixel[2] < 60


def test_a_pickle_that_would_run_code_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    _archive(tmp_path / "c.tar.gz", {"data_batch_1": Evil()})
    with pytest.raises(pickle.UnpicklingError, match="unexpected object"):
        convert(tmp_path / "c.tar.gz", tmp_path / "out")
