"""Decoding every supported file format and pixel mode, arrays, and bounded streaming."""

import numpy as np
import pytest
from PIL import Image

from scanner.errors import InputError
from scanner.batches import BatchLoader
from scanner.decode import decode_image
from scanner.inputs import collect_inputs

RGB = (np.arange(8 * 8 * 3).reshape(8, 8, 3) * 5 % 256).astype(np.uint8)


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".ppm", ".tiff", ".webp"])
def test_lossless_formats_decode_exactly(tmp_path, suffix):
    path = tmp_path / f"img{suffix}"
    Image.fromarray(RGB).save(path, **({"lossless": True} if suffix == ".webp" else {}))
    np.testing.assert_array_equal(decode_image(str(path), 8, 8, 3), RGB)


def test_jpeg_decodes_as_pillow_does(tmp_path):
    Image.fromarray(RGB).save(tmp_path / "a.jpg", quality=90)
    out = decode_image(str(tmp_path / "a.jpg"), 8, 8, 3)
    np.testing.assert_array_equal(out, np.asarray(Image.open(tmp_path / "a.jpg").convert("RGB")))


def test_modes_become_what_the_model_takes(tmp_path):
    Image.fromarray(RGB).convert("RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(decode_image(str(tmp_path / "rgba.png"), 8, 8, 3), RGB)  # alpha dropped
    Image.fromarray(RGB).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "p.png")
    assert decode_image(str(tmp_path / "p.png"), 8, 8, 3).shape == (8, 8, 3)
    gray = Image.fromarray(RGB).convert("L")
    gray.save(tmp_path / "gray.png")
    np.testing.assert_array_equal(decode_image(str(tmp_path / "gray.png"), 8, 8, 3)[..., 0], np.asarray(gray))
    np.testing.assert_array_equal(decode_image(str(tmp_path / "gray.png"), 8, 8, 1)[..., 0], np.asarray(gray))


def test_16_bit_keeps_precision(tmp_path):
    values = (np.arange(64).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    out = decode_image(str(tmp_path / "deep.png"), 8, 8, 1)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[..., 0], values / 65535, atol=1e-6)


def test_resize_to_model_size(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "big.png")
    assert decode_image(str(tmp_path / "big.png"), 8, 8, 3).shape == (8, 8, 3)


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


def test_float_arrays_out_of_range_fail_per_image(tmp_path):
    arr = np.zeros((3, 8, 8, 3), np.float32)
    arr[1] = 2.0
    np.save(tmp_path / "x.npy", arr)
    (batch,) = BatchLoader(collect_inputs([tmp_path / "x.npy"]), height=8, width=8, channels=3, batch_size=8)
    assert batch.indices.tolist() == [0, 2]
    assert batch.failures[0][0] == 1 and "outside [0, 1]" in batch.failures[0][1]


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing", "input path not found"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no images found"),
    (lambda p: np.save(p / "bad.npy", np.zeros((4, 5))) or p / "bad.npy", "expected images shaped"),
])
def test_collect_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        collect_inputs([make(tmp_path)])


@pytest.mark.parametrize("mode,size", [("RGB", (8, 8)), ("L", (8, 8)), ("RGB", (13, 11))])
def test_fast_jpeg_path_equals_pillow(tmp_path, monkeypatch, mode, size):
    import scanner.decode as images

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)).convert(mode)
    img.save(tmp_path / "a.jpg", quality=75)
    fast = decode_image(str(tmp_path / "a.jpg"), 8, 8, 3)
    monkeypatch.setattr(images, "_simplejpeg", None)
    np.testing.assert_array_equal(fast, decode_image(str(tmp_path / "a.jpg"), 8, 8, 3))


def test_byte_batches_stay_bytes_and_mixed_batches_turn_float_with_the_same_values(tmp_path):
    from scanner.decode import UNIT

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
    expected = RGB.astype(np.float32) * UNIT
    assert np.array_equal(mixed.images[0].view(np.uint32), expected.view(np.uint32))
    assert np.array_equal(mixed.images[2].view(np.uint32), (RGB[::-1].astype(np.float32) * UNIT).view(np.uint32))
    np.testing.assert_allclose(mixed.images[1, ..., 0], RGB[..., 0] / 255, atol=1e-6)


def test_model_buffer_gets_the_same_bits_from_bytes_and_from_floats():
    from scanner.decode import UNIT
    from scanner.detectors.scaleup import fill_scaled_batch

    pixels = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    from_bytes = np.empty((6 * 40, 3, 8, 8), np.float32)
    from_floats = np.empty_like(from_bytes)
    fill_scaled_batch(pixels.transpose(0, 3, 1, 2), (3, 5, 7, 9, 11), from_bytes)
    fill_scaled_batch((pixels.astype(np.float32) * UNIT).transpose(0, 3, 1, 2), (3, 5, 7, 9, 11), from_floats)
    assert np.array_equal(from_bytes.view(np.uint32), from_floats.view(np.uint32))
