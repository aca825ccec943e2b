"""Decoding image files: every format, mode and bit depth, at the model's size."""

import numpy as np
import pytest
from PIL import Image

from helpers import RGB
from scanner.inputs.decode import decode_image


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


@pytest.mark.parametrize("mode,size", [("RGB", (8, 8)), ("L", (8, 8)), ("RGB", (13, 11))])
def test_fast_jpeg_path_equals_pillow(tmp_path, monkeypatch, mode, size):
    import scanner.inputs.decode as images

    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size[0], size[1], 3), dtype=np.uint8)).convert(mode)
    img.save(tmp_path / "a.jpg", quality=75)
    fast = decode_image(str(tmp_path / "a.jpg"), 8, 8, 3)
    monkeypatch.setattr(images, "_simplejpeg", None)
    np.testing.assert_array_equal(fast, decode_image(str(tmp_path / "a.jpg"), 8, 8, 3))


def test_nan_float_images_fail(tmp_path):
    Image.fromarray(np.full((8, 8), np.nan, np.float32), mode="F").save(tmp_path / "nan.tiff")
    with pytest.raises(ValueError, match="NaN or infinite"):
        decode_image(str(tmp_path / "nan.tiff"), 8, 8, 3)


def test_animated_gif_gives_its_first_frame(tmp_path):
    frames = [Image.fromarray(np.full((8, 8, 3), v, np.uint8)) for v in (10, 200)]
    frames[0].save(tmp_path / "a.gif", save_all=True, append_images=frames[1:])
    assert Image.open(tmp_path / "a.gif").n_frames == 2
    got = decode_image(str(tmp_path / "a.gif"), 8, 8, 3)
    assert abs(int(got.mean()) - 10) <= 2


def test_exif_orientation_is_not_applied(tmp_path):
    img = Image.fromarray(RGB)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    img.save(tmp_path / "o.jpg", exif=exif, quality=100)
    got = decode_image(str(tmp_path / "o.jpg"), 8, 8, 3)
    assert got.shape == (8, 8, 3)
    np.testing.assert_array_equal(got, decode_image(str(tmp_path / "o.jpg"), 8, 8, 3))
    assert np.abs(got.astype(int) - RGB).mean() < 12  # stored orientation, not rotated


def test_huge_declared_sizes_are_refused_before_decoding(tmp_path, monkeypatch):
    import scanner.inputs.decode as decode

    Image.fromarray(RGB).save(tmp_path / "a.png")
    Image.fromarray(RGB).save(tmp_path / "a.jpg")
    monkeypatch.setattr(decode, "MAX_DECODE_PIXELS", 63)  # the 8x8 images now count as too large
    for name in ("a.png", "a.jpg"):
        with pytest.raises(ValueError, match="declares 8x8 pixels, above the limit of 63"):
            decode_image(str(tmp_path / name), 8, 8, 3)


def test_every_byte_becomes_exactly_what_division_by_255_gives(tmp_path):
    """Issue 27, point 5: unit-range pixels are ``p / 255`` to the last bit, on every path a byte
    image takes (array files, decoded image files, the batch loader, SCALE-UP's query buffer);
    the old product with float32(1 / 255) differed on 126 of the 256 values."""
    from scanner.detectors.scaleup import fill_scaled_batch
    from scanner.detectors.held import unit_images
    from scanner.inputs.decode import fit_array_images
    from scanner.inputs.find import collect_inputs
    from scanner.inputs.stream import BatchLoader

    every = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    want = (np.arange(256, dtype=np.uint8).astype(np.float32) / 255).reshape(1, 16, 16, 1)
    assert np.array_equal(want.ravel().view(np.uint32), (np.arange(256) / 255).astype(np.float32).view(np.uint32))

    def same(got):
        assert np.array_equal(np.asarray(got, np.float32).reshape(want.shape).view(np.uint32), want.view(np.uint32))

    same(fit_array_images(every, 16, 16, 1))
    same(unit_images(every, "images"))
    out = np.empty((2, 1, 16, 16), np.float32)
    fill_scaled_batch(every.transpose(0, 3, 1, 2), (3,), out)
    same(out[:1].transpose(0, 2, 3, 1))
    Image.fromarray(every[0, :, :, 0], mode="L").save(tmp_path / "all.png")
    np.save(tmp_path / "all.npy", every[..., 0])
    for name in ("all.png", "all.npy"):
        batch = next(iter(BatchLoader(collect_inputs([tmp_path / name]), height=16, width=16, channels=1,
                                      batch_size=1)))
        images = batch.images
        same(images / np.float32(255) if images.dtype == np.uint8 else images)


def corrupt_tiff(path, *, samples_per_pixel=None):
    """A TIFF whose XResolution and Software tags point past the end of the file: Pillow decodes
    its pixels and warns 'Truncated File Read' (a UserWarning naming its own source file). With
    ``samples_per_pixel`` (190), Pillow logs 'More samples per pixel than can be decoded' at
    ERROR level (printed to stderr when logging is not configured) and refuses the file."""
    import io
    import struct

    buf = io.BytesIO()
    Image.fromarray(RGB).save(buf, "TIFF", dpi=(72, 72), software="x" * 40)
    data = bytearray(buf.getvalue())
    ifd = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[ifd:ifd + 2])[0]):
        entry = ifd + 2 + 12 * i
        tag = struct.unpack("<H", data[entry:entry + 2])[0]
        if tag in (282, 305):
            data[entry + 8:entry + 12] = struct.pack("<I", len(data) + 1000)
        if tag == 277 and samples_per_pixel is not None:
            data[entry + 8:entry + 10] = struct.pack("<H", samples_per_pixel)
    path.write_bytes(bytes(data))
    return path


def test_pillow_warnings_on_a_corrupt_tiff_become_one_line_of_ours(tmp_path, caplog):
    import logging
    import warnings

    path = corrupt_tiff(tmp_path / "bad-tags.tif")
    with warnings.catch_warnings(record=True) as shown, caplog.at_level(logging.WARNING, logger="scanner"):
        warnings.simplefilter("always")
        np.testing.assert_array_equal(decode_image(str(path), 8, 8, 3), RGB)  # the pixels are intact
        warnings.warn("not from a decode", UserWarning)  # warnings outside decoding still go where they went
    assert [str(w.message) for w in shown] == ["not from a decode"]
    assert [r.getMessage() for r in caplog.records if "bad-tags.tif" in r.getMessage()] == [
        f"{path}: corrupt image metadata ignored, the pixels were read (Pillow: Truncated File Read); "
        "other inputs with this message are not named"]


def test_a_scan_of_a_corrupt_tiff_prints_no_pillow_warning(tmp_path):
    """The command line, as its own process: stderr has the scanner's line, not Pillow's
    'UserWarning' with a site-packages path."""
    import subprocess
    import sys

    import onnx_models as om

    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    path = corrupt_tiff(tmp_path / "bad-tags.tif")
    spp = corrupt_tiff(tmp_path / "spp.tif", samples_per_pixel=190)
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", fx.path, str(path), str(spp), "-f", "csv"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "UserWarning" not in proc.stderr and "site-packages" not in proc.stderr and "warnings.warn" not in proc.stderr
    assert "More samples per pixel" not in proc.stderr  # Pillow's log record, found by bench.fuzz
    assert "bad-tags.tif: corrupt image metadata ignored" in proc.stderr
    assert f"{path},scored," in proc.stdout
    assert (f"{spp},failed,,,,,,,,,,,,not an image Pillow can read (Pillow: More samples per pixel than can be "
            "decoded: 190)") in proc.stdout


def test_pillow_messages_differing_only_in_numbers_are_one_warning_line(caplog):
    """A folder of TIFFs with the same quirk ('tag 257 had too many entries: 86', ': 203', as
    bench.fuzz made) is one line, not one per file."""
    import logging

    from scanner.inputs import decode

    with caplog.at_level(logging.WARNING, logger="scanner"):
        decode._report_caught("a.tif", ["Metadata Warning, tag 257 had too many entries: 86, expected 1"])
        decode._report_caught("b.tif", ["Metadata Warning, tag 257 had too many entries: 203, expected 1"])
    assert [r.getMessage().split(":")[0] for r in caplog.records if "tag 257" in r.getMessage()] == ["a.tif"]
