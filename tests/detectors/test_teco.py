"""TeCo and its corruptions: each corruption's contract (shape, range, determinism, severity),
flip severities and their spread computed by hand on models whose labels are known in closed
form, and the scanner's vectorized queries against one image, one corruption, one severity at
a time through ONNX Runtime."""

import colorsys
import io
import math

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper
from PIL import Image

import onnx_models as om
from scanner import Scanner
from scanner.inputs.decode import BYTE_MAX
from scanner.detectors import corruptions as cm
from scanner.detectors import jpeg as jpeg_module
from scanner.detectors.corruptions import CORRUPTIONS, corrupt
from scanner.detectors.teco import DEFAULT_THRESHOLD, TeCo, flip_severities, teco_score
from scanner.model.preprocess import Preprocessor
from scanner.model.spec import Spec

SIZE = 32
SPATIAL = ("gaussian_blur", "defocus_blur", "motion_blur", "pixelate")
COLOR = ("contrast", "brightness", "saturate")


def _images(n=5, size=SIZE, channels=3, seed=0, lo=0.0, hi=1.0):
    """Unit-range float32 images on the byte grid, smooth enough to look like images."""
    rng = np.random.default_rng(seed)
    coarse = rng.uniform(lo, hi, (n, size // 4 + 1, size // 4 + 1, channels))
    fine = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2)[:, :size, :size]
    fine = fine + rng.normal(0, 0.03, fine.shape)
    return (np.rint(np.clip(fine, lo, hi) * 255) / 255).astype(np.float32)


def _constant(rgb_bytes, n=1, size=SIZE):
    """Constant images of the given byte value(s), float32 (n, size, size, len(rgb_bytes))."""
    pixel = np.asarray(rgb_bytes, dtype=np.float32) / BYTE_MAX
    return np.broadcast_to(pixel, (n, size, size, len(rgb_bytes))).astype(np.float32)


def _spec(size=SIZE, channels=3, layout="nchw", **kw):
    return {"layout": layout, "height": size, "width": size, "channels": channels, "pixel_range": "unit",
            "mean": None, "std": None, "bgr": False, **kw}


# -- corruptions: the contract ------------------------------------------------------------------
@pytest.mark.parametrize("name", CORRUPTIONS)
@pytest.mark.parametrize("shape", [(3, 32, 32, 3), (2, 28, 28, 1), (2, 20, 13, 3)])
def test_every_severity_gives_float32_images_in_range(name, shape):
    x = _images(shape[0], max(shape[1:3]), shape[3])[:, :shape[1], :shape[2]]
    for severity in range(1, 6):
        y = corrupt(x, name, severity)
        assert y.shape == x.shape and y.dtype == np.float32 and y.flags.c_contiguous
        assert np.isfinite(y).all() and y.min() >= 0 and y.max() <= 1
        assert not np.shares_memory(y, x)


@pytest.mark.parametrize("name", SPATIAL)
def test_large_images_work(name):
    x = _images(1, 224, 3)
    y = corrupt(x, name, 5)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert np.abs(y - x).mean() > 1e-3  # the blur is scaled with the image: it still shows


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_same_image_same_result_whatever_the_batch(name):
    x = _images(6, seed=1)
    for severity in range(1, 6):
        whole = corrupt(x, name, severity)
        np.testing.assert_array_equal(corrupt(x, name, severity), whole)  # call after call
        np.testing.assert_array_equal(corrupt(x[2:3], name, severity), whole[2:3])  # alone
        order = np.array([4, 0, 5, 2])
        np.testing.assert_array_equal(corrupt(x[order], name, severity), whole[order])  # in another batch
        np.testing.assert_array_equal(corrupt(np.concatenate([x, x[:1]]), name, severity)[-1], whole[0])


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_bytes_and_floats_give_the_same_result(name):
    x = _images(3, seed=2)
    as_bytes = np.rint(x * 255).astype(np.uint8)
    np.testing.assert_array_equal(corrupt(as_bytes, name, 3), corrupt(as_bytes.astype(np.float32) / BYTE_MAX, name, 3))


@pytest.mark.parametrize("name", ["fog", "", None, "Gaussian_Noise"])
def test_unknown_corruption_is_refused(name):
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt(_images(1), name, 1)


@pytest.mark.parametrize("severity", [0, 6, -1, 2.0, True, "3", None])
def test_bad_severity_is_refused(severity):
    with pytest.raises(ValueError, match="severity"):
        corrupt(_images(1), "contrast", severity)


@pytest.mark.parametrize("images", [np.zeros((2, 8, 8, 2), np.float32), np.zeros((8, 8, 3), np.float32),
                                    np.zeros((1, 8, 8, 3), np.int16), np.zeros((1, 8, 8, 3), bool)])
def test_non_images_are_refused(images):
    with pytest.raises(ValueError, match="images"):
        corrupt(images, "contrast", 1)


def _noise_images():
    """Independent mid-range pixels (little clipping, no block structure pixelate could align with)."""
    rng = np.random.default_rng(3)
    return (np.rint(rng.uniform(0.2, 0.8, (4, SIZE, SIZE, 3)) * 255) / 255).astype(np.float32)


def _change(x, name):
    return [float(np.abs(corrupt(x, name, s).astype(np.float64) - x).mean()) for s in range(1, 6)]


@pytest.mark.parametrize("name", ["gaussian_noise", "shot_noise", "impulse_noise", "speckle_noise", "gaussian_blur",
                                  "defocus_blur", "contrast", "brightness", "pixelate", "jpeg_compression"])
def test_the_change_grows_with_severity(name):
    x = _noise_images()
    change = _change(x, name)
    assert all(a < b for a, b in zip(change, change[1:])), change


def test_saturate_desaturates_then_saturates_more_and_more():
    change = _change(_noise_images(), "saturate")
    assert change[1] > change[0] and change[2] < change[3] < change[4]  # documented: not monotone over 1..5


# -- corruptions: values by hand --------------------------------------------------------------
def test_noise_fields_have_the_stated_spread():
    x = _constant([128, 128, 128], n=2, size=64)
    a = x[0, 0, 0, 0]
    for s, sigma in enumerate((0.04, 0.06, 0.08, 0.09, 0.10), start=1):
        d = corrupt(x, "gaussian_noise", s) - a
        np.testing.assert_array_equal(d[0], d[1])  # the same field for every image of a batch
        assert abs(d.std() / sigma - 1) < 0.03
    for s, photons in enumerate((500, 250, 100, 75, 50), start=1):
        d = corrupt(x, "shot_noise", s) - a
        assert abs(d.std() / math.sqrt(a / photons) - 1) < 0.03
    for s, amount in enumerate((0.01, 0.02, 0.03, 0.05, 0.07), start=1):
        y = corrupt(x, "impulse_noise", s)[0]
        assert set(np.unique(y)) <= {0.0, a, 1.0}
        assert abs((y != a).mean() / amount - 1) < 0.15
        assert abs((y == 1).mean() / (y == 0).mean() - 1) < 0.3


def test_contrast_pulls_each_channel_towards_its_mean():
    x = _images(2, seed=4)
    for s, c in enumerate((0.75, 0.5, 0.4, 0.3, 0.15), start=1):
        mean = x.astype(np.float64).mean(axis=(1, 2), keepdims=True)
        np.testing.assert_allclose(corrupt(x, "contrast", s), (x - mean) * c + mean, atol=2e-6)


@pytest.mark.parametrize("rgb", [(0.6, 0.3, 0.2), (0.1, 0.5, 0.9), (0.8, 0.8, 0.2), (0.35, 0.3, 0.3), (1.0, 0.2, 0.6)])
def test_brightness_and_saturate_move_value_and_saturation_in_hsv(rgb):
    x = np.broadcast_to(np.float32(rgb), (1, 4, 4, 3)).astype(np.float32)
    h, s, v = colorsys.rgb_to_hsv(*x[0, 0, 0].astype(np.float64))
    for sev, dv in enumerate((0.05, 0.1, 0.15, 0.2, 0.3), start=1):
        want = colorsys.hsv_to_rgb(h, s, min(v + dv, 1.0))
        np.testing.assert_allclose(corrupt(x, "brightness", sev)[0, 0, 0], want, atol=1e-6)
    for sev, (scale, shift) in enumerate(((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), start=1):
        want = colorsys.hsv_to_rgb(h, min(max(s * scale + shift, 0.0), 1.0), v)
        np.testing.assert_allclose(corrupt(x, "saturate", sev)[0, 0, 0], want, atol=1e-6)


def test_black_gets_brighter_and_gray_stays_gray():
    x = np.zeros((1, 4, 4, 3), np.float32)
    x[0, 1] = 0.4
    y = corrupt(x, "brightness", 3)
    np.testing.assert_allclose(y[0, 0], 0.15, atol=1e-7)
    np.testing.assert_allclose(y[0, 1], 0.55, atol=1e-6)
    for sev in range(1, 6):  # no hue: saturate leaves gray pixels alone
        np.testing.assert_array_equal(corrupt(x, "saturate", sev), x)


def test_gray_images():
    x = _images(3, channels=1, seed=5)
    for sev, dv in enumerate((0.05, 0.1, 0.15, 0.2, 0.3), start=1):
        np.testing.assert_array_equal(corrupt(x, "brightness", sev), np.minimum(x + np.float32(dv), 1))
        np.testing.assert_array_equal(corrupt(x, "saturate", sev), x)  # no saturation to change
    # a gray image in RGB gets what the one-channel image gets, in every channel
    rgb = np.repeat(x, 3, axis=3)
    for name in ("contrast", "brightness", "saturate", "gaussian_blur", "pixelate", "defocus_blur"):
        y = corrupt(rgb, name, 4)
        np.testing.assert_array_equal(y[..., 0], y[..., 2])
        np.testing.assert_allclose(y[..., :1], corrupt(x, name, 4), atol=1e-6)


@pytest.mark.parametrize("name", SPATIAL)
def test_blurs_and_pixelate_keep_a_constant_image(name):
    x = _constant([200, 90, 30], n=2)
    for sev in range(1, 6):
        np.testing.assert_allclose(corrupt(x, name, sev), x, atol=1e-6)


def test_gaussian_blur_is_a_separable_gaussian_with_repeated_edges():
    x = _images(2, seed=6)
    sigma = 1.0  # severity 5 at 32x32: taps -3..3
    t = np.arange(-3, 4)
    g = np.exp(-t ** 2 / (2 * sigma ** 2))
    g /= g.sum()
    padded = np.pad(x.astype(np.float64), ((0, 0), (3, 3), (3, 3), (0, 0)), mode="edge")
    rows = sum(g[i] * padded[:, i:i + SIZE] for i in range(7))
    want = sum(g[j] * rows[:, :, j:j + SIZE] for j in range(7))
    np.testing.assert_allclose(corrupt(x, "gaussian_blur", 5), want, atol=2e-6)


def test_pixelate_is_an_area_average_down_then_replication_up():
    # 20x20 at factor 0.65 (severity 5): down to 13x13, each pixel the area-weighted mean of the
    # 20/13 x 20/13 square it covers, then each output pixel takes the one its center falls in
    x = _images(1, 20, 3, seed=7)
    n, m = 20, 13
    down = np.zeros((m, n))
    for i in range(m):
        lo, hi = i * n / m, (i + 1) * n / m
        for j in range(n):
            down[i, j] = max(0.0, min(hi, j + 1) - max(lo, j)) / (n / m)
    up = np.zeros((n, m))
    up[np.arange(n), np.minimum(((np.arange(n) + 0.5) * m / n).astype(int), m - 1)] = 1
    op = up @ down
    want = np.einsum("ij,bjkc,lk->bilc", op, x.astype(np.float64), op)
    np.testing.assert_allclose(corrupt(x, "pixelate", 5), want, atol=2e-6)


@pytest.mark.parametrize("shape", [(5, 32, 32, 3), (3, 20, 13, 3), (4, 28, 28, 1)])
def test_jpeg_of_a_batch_is_jpeg_of_each_image(shape):
    simplejpeg = pytest.importorskip("simplejpeg")
    x = _images(shape[0], 32, shape[3], seed=8)[:, :shape[1], :shape[2]]
    pixels = np.rint(x * 255).astype(np.uint8)
    for sev, quality in enumerate((80, 65, 58, 50, 40), start=1):
        want = []
        for img in pixels:
            if img.shape[-1] == 1:
                data = simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality, colorspace="GRAY",
                                              colorsubsampling="Gray")
                want.append(simplejpeg.decode_jpeg(data, colorspace="GRAY").reshape(img.shape))
            else:
                data = simplejpeg.encode_jpeg(np.ascontiguousarray(img), quality=quality, colorspace="RGB",
                                              colorsubsampling="444")
                want.append(simplejpeg.decode_jpeg(data, colorspace="RGB"))
        np.testing.assert_array_equal(corrupt(x, "jpeg_compression", sev), np.stack(want).astype(np.float32) / BYTE_MAX)


def test_jpeg_without_simplejpeg_uses_pillow_per_image_semantics(monkeypatch):
    monkeypatch.setattr(jpeg_module, "_simplejpeg", None)
    x = _images(4, seed=9)[:, :, :21]
    pixels = np.rint(x * 255).astype(np.uint8)
    want = []
    for img in pixels:
        buf = io.BytesIO()
        Image.fromarray(img, "RGB").save(buf, format="JPEG", quality=58, subsampling=0)
        want.append(np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")))
    np.testing.assert_array_equal(corrupt(x, "jpeg_compression", 3), np.stack(want).astype(np.float32) / BYTE_MAX)


# -- the score ------------------------------------------------------------------------------------
def test_flip_severity_is_the_first_severity_that_changes_the_label():
    labels = np.array([3, 3])
    corrupted = np.array([[[3, 3, 1, 3, 1], [1, 1, 1, 1, 1], [3, 3, 3, 3, 3]],
                          [[3, 3, 3, 3, 2], [3, 3, 3, 3, 3], [3, 3, 3, 3, 3]]])
    np.testing.assert_array_equal(flip_severities(labels, corrupted), [[3, 1, 6], [5, 6, 6]])
    np.testing.assert_allclose(teco_score(labels, corrupted), [np.std([3, 1, 6]), np.std([5, 6, 6])])
    with pytest.raises(ValueError, match="corrupted_labels"):
        flip_severities(labels, corrupted[:, :, 0])


def test_score_reads_the_query_major_rows():
    det = TeCo(corruptions=("contrast", "brightness"), severities=3)
    b = 2
    # query 0: labels 7, 8; contrast flips input 0 at severity 2, brightness flips input 1 at 1
    rows = {0: [7, 8], 1: [7, 8], 2: [0, 8], 3: [0, 8], 4: [7, 0], 5: [7, 0], 6: [7, 8]}
    labels = np.concatenate([rows[q] for q in range(det.queries_per_input)])
    out = det.score(labels, None, b)
    np.testing.assert_array_equal(out.labels, [7, 8])
    assert out.query_labels.shape == (2, 0)
    np.testing.assert_allclose(out.scores["teco"], [np.std([2, 4]), np.std([4, 1])])


def test_detector_interface():
    det = TeCo()
    assert det.name == "teco" and det.score_names == ("teco",) and not det.probability_scores
    assert det.query_labels_key == "corruption_labels" and det.query_names() == []
    assert det.default_threshold == DEFAULT_THRESHOLD == 1.0
    assert det.queries_per_input == 61 and det.describe() == "12 corruptions x 5 severities"
    assert det.settings() == {"corruptions": list(CORRUPTIONS), "severities": 5}
    again = TeCo(**TeCo(corruptions="contrast, pixelate", severities=3).settings())
    assert again.corruptions == ("contrast", "pixelate") and again.queries_per_input == 7


@pytest.mark.parametrize("kwargs,match", [
    ({"corruptions": ("contrast", "fog")}, "unknown 'fog'"),
    ({"corruptions": ("contrast", "contrast")}, "once"),
    ({"corruptions": ("contrast",)}, "at least 2"),
    ({"corruptions": ()}, "at least 2"),
    ({"corruptions": 3}, "sequence"),
    ({"severities": 0}, "severities"),
    ({"severities": 6}, "severities"),
    ({"severities": 2.0}, "severities"),
    ({"severities": True}, "severities"),
])
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        TeCo(**kwargs)


@pytest.mark.parametrize("spec", [
    _spec(), _spec(layout="nhwc"), _spec(layout="flat"), _spec(bgr=True),
    _spec(pixel_range="byte", mean=[120.0, 115.0, 100.0], std=[60.0, 61.0, 62.0]),
    _spec(layout="nhwc", bgr=True, mean=[0.5, 0.4, 0.3], std=[0.2, 0.25, 0.3]),
])
def test_queries_are_the_preprocessed_corrupted_images(spec):
    pre = Preprocessor(Spec(**{k: tuple(v) if isinstance(v, list) else v for k, v in spec.items()}))
    det = TeCo(corruptions=("gaussian_noise", "saturate", "motion_blur", "jpeg_compression"), severities=2)
    pixels = np.rint(_images(5, seed=10) * 255).astype(np.uint8)
    x = pixels.astype(np.float32) / BYTE_MAX  # the loader's rule for bytes
    out = np.full((det.queries_per_input * 5,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(pixels, out, pre)
    want = [x] + [corrupt(x, name, s) for name in det.corruptions for s in (1, 2)]
    np.testing.assert_array_equal(out, np.concatenate([pre(q) for q in want]))


# -- hand-computed scores on closed-form models ---------------------------------------------------
def _save(graph, tmp_path, name):
    path = tmp_path / f"{name}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def _head(nodes, d, labels_only):
    """Logits [0 * d, d] (class 1 exactly when d > 0), or their argmax."""
    nodes += [helper.make_node("Mul", [d, "zero"], ["z"]), helper.make_node("Concat", ["z", d], ["logits"], axis=1)]
    if labels_only:
        nodes.append(helper.make_node("ArgMax", ["logits"], ["label"], axis=1, keepdims=0))
        return [helper.make_tensor_value_info("label", TensorProto.INT64, ["N"])]
    return [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])]


def _mean_model(tmp_path, channels=3, labels_only=False):
    """Class 1 exactly when the mean pixel is above 0.5."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Sub", ["m1", "half"], ["d"])]
    outputs = _head(nodes, "d", labels_only)
    image = helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", channels, SIZE, SIZE])
    graph = helper.make_graph(
        nodes, "mean_above_half", [image], outputs, initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                              helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
                              helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    return _save(graph, tmp_path, f"mean_{channels}_{labels_only}")


def _color_model(tmp_path):
    """Class 1 exactly when mean(R) - mean(G) > 0.1 and the mean pixel is below 0.5."""
    nodes = [helper.make_node("ReduceMean", ["input"], ["c"], axes=[2, 3], keepdims=0),  # (N, 3)
             helper.make_node("MatMul", ["c", "r_minus_g"], ["f"]),
             helper.make_node("MatMul", ["c", "thirds"], ["m"]),
             helper.make_node("Sub", ["f", "tenth"], ["a"]),
             helper.make_node("Sub", ["half", "m"], ["b"]),
             helper.make_node("Min", ["a", "b"], ["d"])]
    outputs = _head(nodes, "d", False)
    graph = helper.make_graph(
        nodes, "red_not_bright", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        outputs, initializer=[helper.make_tensor("r_minus_g", TensorProto.FLOAT, [3, 1], [1.0, -1.0, 0.0]),
                              helper.make_tensor("thirds", TensorProto.FLOAT, [3, 1], [1 / 3] * 3),
                              helper.make_tensor("tenth", TensorProto.FLOAT, [], [0.1]),
                              helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
                              helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0])])
    return _save(graph, tmp_path, "red_not_bright")


def _constant_model(tmp_path):
    nodes = [helper.make_node("ReduceMean", ["input"], ["m"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Unsqueeze", ["m", "one"], ["m1"]),
             helper.make_node("Mul", ["m1", "zero"], ["z"]),
             helper.make_node("Add", ["z", "bias"], ["logits"])]
    graph = helper.make_graph(
        nodes, "constant", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[helper.make_tensor("one", TensorProto.INT64, [1], [1]),
                     helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
                     helper.make_tensor("bias", TensorProto.FLOAT, [1, 2], [1.0, 0.0])])
    return _save(graph, tmp_path, "constant")


def _std_one_apart(n_types, flip):
    """std of n_types - 1 entries 6 (never flips) and one entry ``flip``: |6 - flip| sqrt(n - 1) / n."""
    return abs(6 - flip) * math.sqrt(n_types - 1) / n_types


# Gray constant images a (bytes) under "mean > 0.5": only brightness moves the mean across 0.5,
# to a + dv (dv = .05, .1, .15, .2, .3). Noise moves it by well under 0.02 (the field's mean over
# 1024+ values), impulse noise towards 0.5 but never past it, contrast (per-channel mean),
# saturate (gray: no hue), the blurs and pixelate keep a constant image, JPEG moves a flat
# block by at most ~1 level. So the flip severities are 6 except brightness's.
GRAY_CASES = [  # (byte, brightness flip severity)
    (117, 1),   # .459 -> .509
    (107, 2),   # .420 -> .470 -> .520
    (92, 3),    # .361 -> .461 -> .511
    (82, 4),    # .322 -> .472 -> .522
    (64, 5),    # .251 -> .451 -> .551
    (38, 6),    # .149 -> .449: never
]


@pytest.mark.parametrize("channels", [3, 1])
@pytest.mark.parametrize("labels_only", [False, True])
def test_hand_computed_scores_of_gray_images_under_a_mean_threshold(tmp_path, channels, labels_only):
    path = _mean_model(tmp_path, channels, labels_only)
    images = np.concatenate([_constant([a] * channels) for a, _ in GRAY_CASES])
    det = TeCo()
    scores = Scanner(path, device="cpu", spec=_spec(channels=channels), detector=det).score_arrays(images)
    np.testing.assert_array_equal(scores.labels, 0)
    # the reasoning above, checked flip by flip (brightness is the 9th corruption)
    _, flips, _ = _direct_scores(path, _spec(channels=channels), images, det)
    np.testing.assert_array_equal(flips, [[6] * 8 + [flip] + [6] * 3 for _, flip in GRAY_CASES])
    want = [_std_one_apart(12, flip) for _, flip in GRAY_CASES]
    np.testing.assert_allclose(scores.teco, want, rtol=1e-12)
    assert scores.score_name == "teco"
    np.testing.assert_array_equal(scores.flagged, np.asarray(want) >= DEFAULT_THRESHOLD)


def test_hand_computed_scores_of_colored_images(tmp_path):
    """Under "R - G > 0.1 and mean < 0.5", constant images:

    A = (153, 76, 51): R - G = .302, mean .366 -> class 1. brightness scales the pixel by
      (v + dv) / v with v = .6: the mean reaches .397, .427, .458, .488, .549 -> flips at 5.
      saturate 1 keeps s' / s = 0.3 of the channels' distance to R: R - G = .091 -> flips at 1.
      Flip severities: ten 6, one 5, one 1: mean 5.5, std sqrt(23 / 12).
    B = (89, 76, 76): R - G = .051 -> class 0. saturate 3 multiplies it by 1.5 (.076), saturate 4
      by (2 s + .1) / s = 2.685 with s = 13 / 89 (.137 > .1, mean .258) -> flips at 4. brightness
      multiplies it by at most .649 / .349 (.095): never. std = 2 sqrt(11) / 12.
    C = (115, 115, 115): R - G = 0 whatever brightness or saturate (gray) do: std 0.
    Other corruptions move R - G and the mean by ~0.01 at most (see GRAY_CASES).
    """
    images = np.concatenate([_constant(c) for c in [(153, 76, 51), (89, 76, 76), (115, 115, 115)]])
    path, det = _color_model(tmp_path), TeCo()
    scores = Scanner(path, device="cpu", spec=_spec(), detector=det).score_arrays(images)
    np.testing.assert_array_equal(scores.labels, [1, 0, 0])
    _, flips, _ = _direct_scores(path, _spec(), images, det)  # brightness 9th, saturate 10th
    np.testing.assert_array_equal(flips, [[6] * 8 + [5, 1, 6, 6], [6] * 9 + [4, 6, 6], [6] * 12])
    np.testing.assert_allclose(scores.teco, [math.sqrt(23 / 12), _std_one_apart(12, 4), 0.0], rtol=1e-12)


def test_constant_model_scores_zero(tmp_path):
    det = TeCo()
    scores = Scanner(_constant_model(tmp_path), device="cpu", spec=_spec(), detector=det).score_arrays(_images(7))
    np.testing.assert_array_equal(scores.labels, 0)
    np.testing.assert_array_equal(scores.teco, 0.0)
    assert not scores.flagged.any()


# -- end to end: the scanner's batches against one query at a time -------------------------------
def _direct_scores(path, spec, images, det):
    """One image, one corruption, one severity, one session call at a time; preprocessing by the
    fixture's own code."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def label(img):
        out = np.asarray(session.run(None, {name: om.to_model_input(img[None], spec)})[0])
        return int(out.reshape(-1)[0]) if out.dtype.kind == "i" else int(out.reshape(1, -1)[0].argmax())

    labels = np.array([label(img) for img in images])
    corrupted = np.array([[[label(corrupt(img[None], c, s)[0]) for s in range(1, det.severities + 1)]
                           for c in det.corruptions] for img in images])
    flips = flip_severities(labels, corrupted)
    return labels, flips, flips.std(axis=1)


@pytest.mark.parametrize("fixture", ["trigger_nchw", "trigger_nhwc", "trigger_bgr", "trigger_normalized_outside"])
def test_scan_equals_one_query_at_a_time(tmp_path, fixture):
    fx = getattr(om, fixture)(tmp_path)
    images = om.make_images(5, seed=11, triggered_fraction=0.4)
    det = TeCo(corruptions=("gaussian_noise", "impulse_noise", "gaussian_blur", "contrast", "brightness",
                            "saturate", "pixelate", "jpeg_compression"), severities=5)
    scanner = Scanner(fx.path, device="cpu", spec=fx.spec, detector=det, batch_size=3)  # batches of 3 and 2
    scores = scanner.score_arrays(images)
    labels, _, want = _direct_scores(fx.path, fx.spec, images, det)
    np.testing.assert_array_equal(scores.labels, labels)
    np.testing.assert_array_equal(scores.teco, want)
    assert scores.teco.max() > 0  # the fixture's classes do change under these corruptions
    # the same inputs in other batches: the same scores
    again = Scanner(fx.path, device="cpu", spec=fx.spec, detector=det, batch_size=5).score_arrays(images[::-1])
    np.testing.assert_array_equal(again.teco, scores.teco[::-1])


def test_scan_of_files_equals_score_arrays(tmp_path):
    from helpers import write_pngs

    fx = om.trigger_nchw(tmp_path)
    images = om.make_images(4, seed=12)
    folder = write_pngs(tmp_path / "imgs", images)
    det = TeCo()
    result = Scanner(fx.path, device="cpu", spec=fx.spec, detector=det).scan([folder])
    assert result.n_scored == 4 and not result.failures
    _, _, want = _direct_scores(fx.path, fx.spec, images, det)
    np.testing.assert_array_equal(result.scores.teco, want)


@pytest.mark.parametrize("severities", [5, 2])
def test_preview_is_each_corruption_at_the_highest_severity_the_model_is_given(tmp_path, images, severities):
    fx = om.trigger_normalized_outside(tmp_path)
    pre = Scanner(fx.path, device="cpu", spec=fx.spec).model.preprocessor
    det = TeCo(severities=severities)
    x = images[:3]
    b = len(x)
    out = np.full((det.queries_per_input * b,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(x, out, pre)
    for k in range(b):
        shown = det.preview(x[k])
        assert [p.caption for p in shown] == [f"{name.replace('_', ' ')} {severities}" for name in CORRUPTIONS]
        for ci, (name, p) in enumerate(zip(CORRUPTIONS, shown)):
            assert p.image.dtype == np.float32 and p.image.shape == x[k].shape and p.query is None
            # an independent construction: the public corruption of the input alone
            np.testing.assert_allclose(p.image, corrupt(x[k:k + 1], name, severities)[0], atol=1e-6)
            row = (1 + ci * severities + severities - 1) * b + k
            assert np.array_equal(pre(p.image[None])[0].view(np.uint32), out[row].view(np.uint32)), name
