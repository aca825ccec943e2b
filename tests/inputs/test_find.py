"""Finding inputs: files, folders, arrays, their order, and the errors for unusable paths."""

import numpy as np
import pytest
from PIL import Image

from helpers import RGB
from scanner.inputs.stream import BatchLoader
from scanner.errors import InputError
from scanner.inputs.find import collect_inputs


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
])
def test_collect_errors(tmp_path, make, message):
    with pytest.raises(InputError, match=message):
        collect_inputs([make(tmp_path)])


# -- bad inputs are one failed input each, never a whole run (issue 12, cases 1, 3, 4, 5) -----
def failures_of(inputs):
    from scanner.inputs.stream import BatchLoader

    out = []
    for batch in BatchLoader(inputs, height=8, width=8, channels=3, batch_size=4):
        out.extend(batch.failures)
        assert len(batch.indices) + len(batch.failures) == batch.size
    return {inputs.name(i): reason for i, reason in out}


def test_a_bad_array_file_fails_alone_in_a_folder(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    np.save(tmp_path / "bad.npy", np.zeros((4, 5)))
    (tmp_path / "broken.npz").write_bytes(b"PK\x03\x04 not really a zip")
    np.save(tmp_path / "empty.npy", np.zeros((0, 8, 8, 3), np.uint8))
    np.save(tmp_path / "flat.npy", np.zeros((2, 0, 8, 3), np.uint8))
    inputs = collect_inputs([tmp_path])
    assert len(inputs) == 5
    failed = failures_of(inputs)
    assert set(failed) == {str(tmp_path / n) for n in ("bad.npy", "broken.npz", "empty.npy", "flat.npy")}
    assert "expected images shaped" in failed[str(tmp_path / "bad.npy")]
    assert "cannot read this array file (BadZipFile" in failed[str(tmp_path / "broken.npz")]
    assert failed[str(tmp_path / "empty.npy")] == "holds no images (its first dimension is 0)"
    assert "zero height or width" in failed[str(tmp_path / "flat.npy")]


def test_a_fifo_is_listed_not_opened(tmp_path):
    import os

    os.mkfifo(tmp_path / "x.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "link.png")
    failed = failures_of(collect_inputs([tmp_path]))
    assert failed == {str(tmp_path / "link.png"): "broken link (the file it points to does not exist)",
                      str(tmp_path / "x.png"): "not a regular file (a FIFO); skipped"}
    assert failures_of(collect_inputs([tmp_path / "x.png"])) == {str(tmp_path / "x.png"): "not a regular file (a FIFO); skipped"}


def test_a_symlink_loop_named_like_an_image_is_one_failed_input(tmp_path):
    """Issue 28: ``ln -s x.png x.png`` in a scanned folder aborted the whole run (ELOOP from the
    folder walk, exit 3); it is one failed input with its reason, in a folder or named directly."""
    import os

    Image.fromarray(RGB).save(tmp_path / "a.png")
    os.symlink("x.png", tmp_path / "x.png")
    loop = "cannot read this file (Too many levels of symbolic links)"
    inputs = collect_inputs([tmp_path])
    assert [inputs.name(i) for i in range(len(inputs))] == [str(tmp_path / "a.png"), str(tmp_path / "x.png")]
    assert failures_of(inputs) == {str(tmp_path / "x.png"): loop}
    assert failures_of(collect_inputs([tmp_path / "x.png", tmp_path / "a.png"])) == {str(tmp_path / "x.png"): loop}


def test_npz_members_are_size_checked_before_inflating(tmp_path, monkeypatch):
    import scanner.inputs.find as inputs_module

    np.savez_compressed(tmp_path / "big.npz", x=np.zeros((64, 8, 8, 3), np.uint8))
    monkeypatch.setattr(inputs_module, "MAX_NPZ_MEMBER_BYTES", 1000)
    failed = failures_of(collect_inputs([tmp_path / "big.npz"]))
    assert "member 'x.npy' is 0 MiB uncompressed, above the 0 MiB limit" in failed[str(tmp_path / "big.npz")]


def test_integer_arrays_are_8_bit_unless_uint16(tmp_path):
    from scanner.inputs.stream import BatchLoader

    ints = np.full((3, 8, 8, 3), 200, np.int64)
    ints[1, 0, 0, 0] = 3000
    np.save(tmp_path / "i.npy", ints)
    np.save(tmp_path / "u16.npy", np.full((1, 8, 8, 3), 65535, np.uint16))
    inputs = collect_inputs([tmp_path / "i.npy", tmp_path / "u16.npy"])
    (batch,) = BatchLoader(inputs, height=8, width=8, channels=3, batch_size=8)
    assert batch.indices.tolist() == [0, 2, 3]
    np.testing.assert_allclose(batch.images[0], 200 / 255, rtol=1e-6)
    np.testing.assert_allclose(batch.images[2], 1.0, rtol=1e-6)
    assert batch.failures == [(1, "integer pixel values outside 0-255 in a int64 array; store uint8 (0-255) or uint16 (0-65535)")]
