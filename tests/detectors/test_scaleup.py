"""SCALE-UP's own arithmetic: SPC, scale sets, amplified copies in pixel space, n = 1 reuse."""

import numpy as np
import pytest

import onnx_models as om
from scanner import Scanner
from scanner.detectors.scaleup import fill_scaled_batch, parse_scales, spc_score


def test_scale_one_is_counted_and_reuses_the_unscaled_label(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    scales = tuple(range(1, 12))
    s = Scanner(fx.path, device="cpu", scales=scales).score_arrays(images)
    np.testing.assert_array_equal(s.scaled_labels[:, 0], s.labels)
    np.testing.assert_array_equal(s.spc, om.known_spc(images, scales))


def test_spc_counts_agreeing_scales():
    labels = np.array([0, 1, 2])
    scaled = np.array([[0, 0, 0, 0, 0], [1, 2, 1, 2, 2], [3, 3, 3, 3, 3]])
    assert spc_score(labels, scaled).tolist() == [1.0, 0.4, 0.0]


@pytest.mark.parametrize("text,expected", [
    ("3,5,7,9,11", (3, 5, 7, 9, 11)), ("1-11", tuple(range(1, 12))), ("11,3, 5", (3, 5, 11)), ("1.5,2", (1.5, 2)),
])
def test_parse_scales(text, expected):
    assert parse_scales(text) == expected


@pytest.mark.parametrize("text", ["", "a", "0,3", "5-3", "-2"])
def test_parse_scales_rejects(text):
    with pytest.raises(ValueError):
        parse_scales(text)


def test_amplify_clips_in_pixel_space_and_stays_float32():
    base = np.array([[0.0, 0.1, 0.25, 0.5]], dtype=np.float32)
    out = np.empty((3, 4), dtype=np.float32)
    fill_scaled_batch(base, (3, 5), out)
    assert out.dtype == np.float32
    expected = np.clip(np.array([[0, 0.1, 0.25, 0.5], [0, 0.3, 0.75, 1.5], [0, 0.5, 1.25, 2.5]], dtype=np.float32), 0, 1)
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("rows", [1, 5, 300])
def test_scaled_batch_in_blocks_equals_clip_then_normalize(rows):
    # 300 rows of 3x16x16 span several cache blocks; the finish step sees every piece once
    rng = np.random.default_rng(rows)
    base = rng.random((rows, 16, 16, 3), dtype=np.float32).transpose(0, 3, 1, 2)  # a strided view
    scales = (3, 5.5, 11)
    mean, std = np.float32(0.25), np.float32(0.5)
    calls = []

    def finish(piece):
        calls.append(piece.shape[0])
        np.subtract(piece, mean, out=piece)
        np.divide(piece, std, out=piece)

    out = np.empty((4 * rows, 3, 16, 16), dtype=np.float32)
    fill_scaled_batch(base, scales, out, finish=finish)
    copies = [base] + [np.clip(base * np.float32(n), np.float32(0), np.float32(1)) for n in scales]
    expected = (np.concatenate(copies) - mean) / std
    assert np.array_equal(out.view(np.uint32), expected.astype(np.float32).view(np.uint32))
    assert sum(calls) == 4 * rows


def test_model_buffer_gets_the_same_bits_from_bytes_and_from_floats():
    from scanner.inputs.decode import BYTE_MAX
    from scanner.detectors.scaleup import fill_scaled_batch

    pixels = np.random.default_rng(0).integers(0, 256, (40, 8, 8, 3), dtype=np.uint8)
    from_bytes = np.empty((6 * 40, 3, 8, 8), np.float32)
    from_floats = np.empty_like(from_bytes)
    fill_scaled_batch(pixels.transpose(0, 3, 1, 2), (3, 5, 7, 9, 11), from_bytes)
    fill_scaled_batch((pixels.astype(np.float32) / BYTE_MAX).transpose(0, 3, 1, 2), (3, 5, 7, 9, 11), from_floats)
    assert np.array_equal(from_bytes.view(np.uint32), from_floats.view(np.uint32))


def test_amplification_change_by_hand_and_undecidable_inputs():
    from scanner.detectors.scaleup import ScaleUp, amplification_change

    # 10 pixel values: 0 (never moves), 1 (never moves), 0.02 (moves 0.04 at n=3: not > 0.1; 0.2 at
    # n=11: moves), 0.5 (saturates: moves 0.5 at every n)
    x = np.array([[0.0] * 4 + [1.0] * 4 + [0.02, 0.5]], dtype=np.float32).reshape(1, 10, 1, 1)
    # per scale: n=3: only 0.5 moves (0.02 -> 0.06 moves 0.04) -> 1/10; n=11: 0.02 -> 0.22 moves 0.2 -> 2/10
    got = amplification_change(x, (3, 11))
    assert got[0] == pytest.approx((0.1 + 0.2) / 2)
    assert amplification_change(x, (1,)) is None
    digits = np.zeros((2, 8, 8, 1), np.uint8)
    digits[0, 2:6, 2:6] = 255  # a binary "digit": nothing moves
    digits[1] = 100            # a mid-grey image: every value moves
    mask, reason = ScaleUp().undecidable(digits)
    assert mask.tolist() == [True, False] and "SCALE-UP cannot judge" in reason


def test_undecidable_inputs_are_scored_never_flagged_and_reported(tmp_path):
    fx = om.trigger_nchw(tmp_path, size=8)
    x = np.zeros((3, 8, 8, 3), np.float32)
    x[1] = 0.4
    result = Scanner(fx.path, spec=fx.spec).scan(_as_input(tmp_path, x))  # black, grey, black
    s = result.scores
    assert s.undecidable.tolist() == [True, False, True] and not s.flagged[[0, 2]].any()
    records = list(result.records())
    assert records[0]["undecidable"].startswith("amplification barely changes it") and records[1]["undecidable"] is None
    assert result.summary().undecidable == 2


def _as_input(tmp_path, x):
    path = tmp_path / "x.npy"
    np.save(path, np.rint(x * 255).astype(np.uint8))
    return [path]


def test_preview_is_every_amplified_copy_named_by_its_reported_label(images):
    from scanner.detectors.scaleup import ScaleUp

    det = ScaleUp(scales=(1, 3, 5))
    x = images[0]
    shown = det.preview(x)
    assert [(p.caption, p.query) for p in shown] == [("x1", "1"), ("x3", "3"), ("x5", "5")]
    assert [p.query for p in shown] == det.query_names()
    unit = x  # unit-range float32 pixels
    for n, p in zip((1, 3, 5), shown):
        np.testing.assert_array_equal(p.image, np.minimum(unit * np.float32(n), np.float32(1)))
