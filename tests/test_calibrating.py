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
    run = calibrate(fx.path, ["clean"], detectors="scaleup")
    as_list = run.calibration
    for one in ("clean", tmp_path / "clean"):
        run = calibrate(fx.path, one, detectors="scaleup")
        cal, result = run.calibration, run.scan
        assert result.n_found == 24 and cal.to_dict() == as_list.to_dict()


def test_calibrate_returns_one_documented_object(tmp_path):
    """Issue 29, point 5: a CalibrationRun (calibration + the clean scan) that prints what
    `scanner calibrate` prints, saves the file, and still unpacks as the old pair."""
    import json

    from scanner import CalibrationRun, calibrate

    fx = om.trigger_nchw(tmp_path / "m", embed_spec=True)
    np.save(tmp_path / "clean.npy", np.rint(om.make_images(30, seed=4, triggered_fraction=0.0) * 255).astype(np.uint8))
    run = calibrate(fx.path, tmp_path / "clean.npy", detectors="scaleup")
    assert isinstance(run, CalibrationRun) and run.scan.n_found == 30
    cal, scan = run  # code written for the 2-tuple
    assert cal is run.calibration and scan is run.scan
    assert str(run).splitlines()[-1].startswith("calibrated scaleup on 30 benign inputs")
    assert str(run).splitlines() == run.lines()
    assert repr(run).startswith("<CalibrationRun of ") and "30 clean inputs" in repr(run)
    run.save(tmp_path / "cal.json")
    assert json.loads((tmp_path / "cal.json").read_text()) == json.loads(json.dumps(cal.to_dict()))
