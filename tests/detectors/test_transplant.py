"""The region-transplant detector: its regions, its queries, its score (by hand) and its held images."""

from __future__ import annotations

import math

import numpy as np
import pytest

import onnx_models as om
from helpers import assert_bytes_and_floats_give_the_same_queries
from scanner import Scanner
from scanner.detectors import from_settings, make_detector
from scanner.detectors.transplant import Transplant, regions, transplant_score
from scanner.errors import ScannerError
from scanner.inputs.decode import BYTE_MAX

SIZE = 8


def _log_p0(m: float, a: float, k: int) -> float:
    """log p(class 0) of softmax([a m, 0, .., 0]): a m - log(e^{a m} + k - 1)."""
    return a * m - math.log(math.exp(a * m) + k - 1)


def _const(v):
    return np.full((SIZE, SIZE, 3), v, np.float32)


# -- regions --------------------------------------------------------------------------------------
@pytest.mark.parametrize("h,w,grid", [(8, 8, 2), (32, 32, 3), (224, 224, 3), (7, 11, 4), (5, 5, 5)])
def test_regions_cover_the_image_once(h, w, grid):
    seen = np.zeros((h, w), int)
    for rows, cols in regions(h, w, grid):
        assert rows.stop > rows.start and cols.stop > cols.start
        seen[rows, cols] += 1
    assert (seen == 1).all() and len(regions(h, w, grid)) == grid * grid


# -- the score, by hand ---------------------------------------------------------------------------
def test_score_is_the_strongest_regions_weakest_pull():
    # 2 inputs, 2 regions, 2 backgrounds, 3 classes; rows: input, then region-major, background-minor
    own = np.array([0, 2])
    p = np.full((1 + 4, 2, 3), 1 / 3)
    p[0] = [[0.8, 0.1, 0.1], [0.1, 0.1, 0.8]]
    # input 0: region 0 pulls to class 0 with 0.9 and 0.2 (weakest 0.2); region 1 with 0.5 and 0.6 (0.5)
    p[1, 0], p[2, 0], p[3, 0], p[4, 0] = [0.9, 0.05, 0.05], [0.2, 0.4, 0.4], [0.5, 0.25, 0.25], [0.6, 0.2, 0.2]
    # input 1 (class 2): only region 1 with background 0 moves anything to class 2
    p[1, 1], p[2, 1], p[3, 1], p[4, 1] = [0.5, 0.4, 0.1], [0.5, 0.4, 0.1], [0.1, 0.1, 0.8], [0.7, 0.2, 0.1]
    labels = np.concatenate([own, np.zeros(8, int)])
    score = transplant_score(labels, p.reshape(10, 3), 2, n_regions=2, n_backgrounds=2)
    np.testing.assert_allclose(score, [math.log(0.5), math.log(0.1)], rtol=0, atol=1e-12)
    # label-only: 1 when some region moves every background to the input's class
    q_labels = np.array([0, 2, 0, 0, 0, 1, 2, 2, 0, 2])  # input 0: region 0 both -> 0; input 1: region 1 both -> 2
    np.testing.assert_array_equal(transplant_score(q_labels, None, 2, 2, 2), [1.0, 1.0])
    q_labels[9] = 0  # input 1, region 1, background 1 now lands in class 0
    np.testing.assert_array_equal(transplant_score(q_labels, None, 2, 2, 2), [1.0, 0.0])


def test_scanner_scores_equal_the_hand_computed_pull(tmp_path):
    a, k = 4.0, 5
    det = Transplant(grid=2, n_backgrounds=2)
    det.fit(np.stack([_const(0.0), _const(0.5)]))
    halves = _const(0.25)
    halves[:, : SIZE // 2] = 0.75
    x = np.stack([_const(1.0), halves])
    s = Scanner(om.mean_softmax_model(tmp_path, a=a, k=k), device="cpu", spec={"height": SIZE, "width": SIZE},
                detector=det).score_arrays(x)
    # a region is a quarter of the image: query mean = 0.25 * region + 0.75 * background.
    # input 0: every region 1.0 -> means 0.25 (bg 0) and 0.625 (bg 0.5): weakest 0.25.
    # input 1: left regions 0.75 -> 0.1875 and 0.5625; right 0.25 -> 0.0625 and 0.4375: max of mins 0.1875
    np.testing.assert_allclose(s.transplant, [_log_p0(0.25, a, k), _log_p0(0.1875, a, k)], rtol=0, atol=1e-6)
    np.testing.assert_array_equal(s.labels, [0, 0])
    assert det.queries_per_input == 9


# -- the queries ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["trigger_nchw", "trigger_nhwc", "trigger_flat", "trigger_byte", "trigger_bgr"])
def test_query_of_region_r_background_m_is_row_1_plus_rM_plus_m(tmp_path, images, name):
    fx = getattr(om, name)(tmp_path)
    pre = Scanner(fx.path, device="cpu", spec=fx.spec).model.preprocessor
    clean = om.make_images(3, seed=8, triggered_fraction=0.0)
    det = Transplant(grid=3, n_backgrounds=3)
    det.fit(clean)
    x = images[:5]
    b = len(x)
    out = np.full((det.queries_per_input * b,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(x, out, pre)
    for kk in range(b):
        assert np.array_equal(out[kk].view(np.uint32), pre(x[kk:kk + 1])[0].view(np.uint32))
        for r, (rows, cols) in enumerate(regions(SIZE, SIZE, 3)):
            for m in range(3):
                query = np.array(clean[m])
                query[rows, cols] = x[kk][rows, cols]
                got = out[(1 + r * 3 + m) * b + kk]
                assert np.array_equal(got.view(np.uint32), pre(query[None])[0].view(np.uint32))


def test_bytes_and_unit_floats_give_the_same_bits(tmp_path):
    fx = om.trigger_normalized_outside(tmp_path)
    pre = Scanner(fx.path, device="cpu", spec=fx.spec).model.preprocessor
    pixels = np.random.default_rng(0).integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    det = Transplant(grid=2, n_backgrounds=1)
    det.fit(np.random.default_rng(1).integers(0, 256, (1, SIZE, SIZE, 3), dtype=np.uint8))
    assert_bytes_and_floats_give_the_same_queries(det, pre, pixels)


def test_a_patch_trigger_is_caught_and_scores_do_not_depend_on_the_batch(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    det = Transplant()
    det.fit(om.make_images(6, seed=4, triggered_fraction=0.0))
    whole = Scanner(fx.path, device="cpu", detector=det, batch_size=len(images)).score_arrays(images)
    triggered = om.is_triggered(images)
    # the corner region carries the patch, and the patch alone sends any background to class 0
    assert whole.transplant[triggered].min() > whole.transplant[~triggered].max()
    for batch_size in (1, 5):
        part = Scanner(fx.path, device="cpu", detector=det, batch_size=batch_size).score_arrays(images)
        np.testing.assert_array_equal(part.transplant, whole.transplant)


# -- the held images ------------------------------------------------------------------------------
def test_fit_keeps_exactly_as_many_in_order_and_else_a_seeded_choice():
    pool = np.random.default_rng(0).integers(0, 256, (10, SIZE, SIZE, 3), dtype=np.uint8)
    det = Transplant(n_backgrounds=2, seed=3)
    det.fit(pool[:2])
    assert np.array_equal(det.held_images, pool[:2].astype(np.float32) / BYTE_MAX)
    assert not det.held_images.flags.writeable
    det.fit(pool)
    chosen = np.sort(np.random.default_rng(3).choice(10, 2, replace=False))
    assert np.array_equal(det.held_images, pool[chosen].astype(np.float32) / BYTE_MAX)
    with pytest.raises(ValueError, match="needs at least 2 clean images"):
        det.fit(pool[:1])


def test_a_calibrations_images_rebuild_the_same_detectors(tmp_path, images):
    """STRIP and the transplant detector take the same images back from the calibration's stored
    set (exactly as many: in order; more: the same seeded choice)."""
    fx = om.trigger_nchw(tmp_path)
    held = np.rint(om.make_images(16, seed=4, triggered_fraction=0.0) * 255).astype(np.uint8)
    settings = [{"name": "strip", "n_blends": 16, "mode": "add", "seed": 0},
                {"name": "transplant", "grid": 3, "n_backgrounds": 2, "seed": 0}]
    made = make_detector("strip", n_blends=16), make_detector("transplant")
    for d in made:
        d.fit(held)
    back = from_settings(settings, held)
    for original, rebuilt in zip(made, back.parts):
        assert np.array_equal(original.held_images, rebuilt.held_images)
    a = Scanner(fx.path, device="cpu", detector=back).score_arrays(images)
    assert np.isfinite(a.transplant).all()


def test_without_fit_or_at_another_size_the_queries_are_refused(tmp_path, images):
    fx = om.trigger_nchw(tmp_path)
    with pytest.raises(ScannerError, match="holds no clean images"):
        Scanner(fx.path, device="cpu", detector=Transplant()).score_arrays(images)
    det = Transplant(n_backgrounds=1)
    det.fit(np.zeros((1, 4, 4, 3), np.uint8))
    with pytest.raises(ScannerError, match="holds clean images of 4x4x3"):
        Scanner(fx.path, device="cpu", detector=det).score_arrays(images)


@pytest.mark.parametrize("kwargs,match", [({"grid": 0}, "grid"), ({"grid": 9}, "grid"), ({"grid": True}, "grid"),
                                          ({"n_backgrounds": 0}, "n_backgrounds"), ({"n_backgrounds": 2.5}, "n_backgrounds"),
                                          ({"seed": -1}, "seed")])
def test_invalid_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Transplant(**kwargs)
    with pytest.raises(ScannerError, match=f"detector transplant: {match}"):
        make_detector("transplant", **kwargs)


def test_the_interface_values():
    det = Transplant()
    assert det.queries_per_input == 19 and det.clean_images_needed == 2
    assert det.settings() == {"grid": 3, "n_backgrounds": 2, "seed": 0}
    assert det.describe() == "3x3 regions onto 2 clean images"


def test_preview_is_each_region_on_the_first_background_as_the_model_is_given(tmp_path, images):
    fx = om.trigger_normalized_outside(tmp_path)
    pre = Scanner(fx.path, device="cpu", spec=fx.spec).model.preprocessor
    clean = om.make_images(2, seed=8, triggered_fraction=0.0)
    det = Transplant()
    det.fit(clean)
    x = images[:3]
    b = len(x)
    out = np.full((det.queries_per_input * b,) + pre.model_shape, np.nan, np.float32)
    det.build_queries(x, out, pre)
    assert Transplant().preview(x[0]) == []  # nothing held, nothing to show
    for kk in range(b):
        shown = det.preview(x[kk])
        assert [p.caption for p in shown] == [f"region {i},{j}" for i in (1, 2, 3) for j in (1, 2, 3)]
        for r, ((rows, cols), p) in enumerate(zip(regions(SIZE, SIZE, 3), shown)):
            query = np.array(clean[0])  # an independent construction, in pixel space
            query[rows, cols] = x[kk][rows, cols]
            np.testing.assert_array_equal(p.image, query)
            # region r on background 0 is query 1 + r * M, bit for bit
            assert np.array_equal(pre(p.image[None])[0].view(np.uint32), out[(1 + r * 2) * b + kk].view(np.uint32))
