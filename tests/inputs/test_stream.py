"""Streaming decoded batches: byte batches stay bytes, bad array rows fail one by one."""

import numpy as np
from PIL import Image

from helpers import RGB
from scanner.inputs.stream import BatchLoader
from scanner.inputs.find import collect_inputs


def test_float_arrays_out_of_range_fail_per_image(tmp_path):
    arr = np.zeros((3, 8, 8, 3), np.float32)
    arr[1] = 2.0
    np.save(tmp_path / "x.npy", arr)
    (batch,) = BatchLoader(collect_inputs([tmp_path / "x.npy"]), height=8, width=8, channels=3, batch_size=8)
    assert batch.indices.tolist() == [0, 2]
    assert batch.failures[0][0] == 1 and "outside [0, 1]" in batch.failures[0][1]


def test_byte_batches_stay_bytes_and_mixed_batches_turn_float_with_the_same_values(tmp_path):
    from scanner.inputs.decode import BYTE_MAX

    Image.fromarray(RGB).save(tmp_path / "a.png")
    Image.fromarray(RGB[::-1].copy()).save(tmp_path / "b.png")
    Image.fromarray(RGB[..., 0].astype(np.uint16) * 257).save(tmp_path / "c.png")
    (only_bytes,) = BatchLoader(collect_inputs([tmp_path / "a.png", tmp_path / "b.png"]),
                                height=8, width=8, channels=3, batch_size=8)
    assert only_bytes.images.dtype == np.uint8
    np.testing.assert_array_equal(only_bytes.images, np.stack([RGB, RGB[::-1]]))
    (mixed,) = BatchLoader(collect_inputs([tmp_path / "a.png", tmp_path / "c.png", tmp_path / "b.png"]),
                           height=8, width=8, channels=3, batch_size=8)
    assert mixed.images.dtype == np.float32
    expected = RGB.astype(np.float32) / BYTE_MAX
    assert np.array_equal(mixed.images[0].view(np.uint32), expected.view(np.uint32))
    assert np.array_equal(mixed.images[2].view(np.uint32), (RGB[::-1].astype(np.float32) / BYTE_MAX).view(np.uint32))
    np.testing.assert_allclose(mixed.images[1, ..., 0], RGB[..., 0] / 255, atol=1e-6)
