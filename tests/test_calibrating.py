"""``calibrate`` as a library call (scanner/calibrating.py)."""

import numpy as np

import onnx_models as om
from scanner.calibrating import calibrate


def test_one_path_given_as_a_string_or_a_path_is_one_path(tmp_path, monkeypatch):
    """Issue 28: ``calibrate(model, "dir")`` iterated the string's characters (input path not
    found: "c"); a single str or Path is one path, as in ``Scanner.scan``."""
    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    (tmp_path / "clean").mkdir()
    np.save(tmp_path / "clean" / "x.npy", np.rint(om.make_images(24, seed=9, triggered_fraction=0.0) * 255)
            .astype(np.uint8))
    monkeypatch.chdir(tmp_path)  # a relative name: the old code looked for "c", "l"... (never "/", the root)
    as_list, _ = calibrate(fx.path, ["clean"], detectors="scaleup")
    for one in ("clean", tmp_path / "clean"):
        cal, result = calibrate(fx.path, one, detectors="scaleup")
        assert result.n_found == 24 and cal.to_dict() == as_list.to_dict()
