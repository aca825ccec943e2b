"""The one preprocessor: channel order, layout, range and per-channel normalization."""

import numpy as np
import pytest



@pytest.mark.parametrize("layout", ["nchw", "nhwc", "flat"])
def test_normalization_broadcasts_per_channel_in_every_layout(layout):
    from scanner.model.preprocess import Preprocessor
    from scanner.model.spec import Spec

    spec = Spec(layout=layout, height=2, width=3, channels=3, pixel_range="byte",
                mean=(10.0, 20.0, 30.0), std=(2.0, 4.0, 5.0))
    x = np.random.default_rng(0).random((4, 2, 3, 3), dtype=np.float32)  # NHWC
    expected = (x * np.float32(255) - np.float32([10, 20, 30])) / np.float32([2, 4, 5])
    arranged = {"nchw": x.transpose(0, 3, 1, 2), "nhwc": x, "flat": x.reshape(4, -1)}[layout].copy()
    got = Preprocessor(spec).normalize_(arranged)
    back = {"nchw": lambda g: g.transpose(0, 2, 3, 1), "nhwc": lambda g: g,
            "flat": lambda g: g.reshape(4, 2, 3, 3)}[layout](got)
    np.testing.assert_array_equal(back, expected)
