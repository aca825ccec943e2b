"""Finding inputs: files, folders, arrays, their order, and the errors for unusable paths."""

import numpy as np
import pytest
from PIL import Image

from helpers import RGB
from scanner.batches import BatchLoader
from scanner.errors import InputError
from scanner.inputs import collect_inputs


def test_arrays_folders_and_order(tmp_path):
    (tmp_path / "d" / "sub").mkdir(parents=True)
    Image.fromarray(RGB).save(tmp_path / "d" / "b.png")
    Image.fromarray(RGB).save(tmp_path / "d" / "sub" / "a.png")
    (tmp_path / "d" / "notes.txt").write_text("ignored in folders")
    np.save(tmp_path / "x.npy", np.zeros((3, 8, 8, 3), np.uint8))
    np.savez(tmp_path / "y.npz", images=np.ones((2, 8, 8), np.float32), labels=np.arange(2))
    inputs = collect_inputs([tmp_path / "d", tmp_path / "x.npy", tmp_path / "y.npz"])
    names = [inputs.name(i) for i in range(len(inputs))]
    assert names == [str(tmp_path / "d" / "b.png"), str(tmp_path / "d" / "sub" / "a.png")] + \
        [f"{tmp_path / 'x.npy'}[{i}]" for i in range(3)] + [f"{tmp_path / 'y.npz'}:images[{i}]" for i in range(2)]
    batches = list(BatchLoader(inputs, height=8, width=8, channels=3, batch_size=3, workers=2))
    assert [b.size for b in batches] == [3, 3, 1]
    got = np.concatenate([b.images for b in batches])
    np.testing.assert_allclose(got[0], RGB / 255, atol=1e-7)
    assert (got[2:5] == 0).all() and (got[5:] == 1).all()


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing", "input path not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
    (lambda p: np.save(p / "bad.npy", np.zeros((4, 5))) or p / "bad.npy", "expected images shaped"),
])
def test_collect_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        collect_inputs([make(tmp_path)])
