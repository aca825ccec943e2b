"""Reading ONNX files: broken, truncated, missing external data, several data inputs."""

import pytest

import onnx_models as om
from scanner import Scanner
from scanner.errors import ModelLoadError


@pytest.mark.parametrize("builder,match", [
    (om.trigger_external_data_missing, "external file .* is missing"),
    (om.two_data_inputs, "2 data inputs"),
])
def test_unusable_models(tmp_path, builder, match):
    fx = builder(tmp_path)
    with pytest.raises(ModelLoadError, match=match):
        Scanner(fx.path, device="cpu")


def test_broken_files(tmp_path):
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|not an ONNX model"):
        Scanner(om.write_truncated_model(tmp_path), device="cpu")
    with pytest.raises(ModelLoadError, match="not a readable ONNX model|not an ONNX model"):
        Scanner(om.write_not_onnx(tmp_path), device="cpu")


# -- external data stays inside the model's folder (issue 12, cases 1 and 8) ------------------
def _with_location(tmp_path, location, offset="0"):
    import onnx

    fx = om.trigger_external_data(tmp_path)
    model = onnx.load(str(fx.path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
            if entry.key == "offset":
                entry.value = offset
    bad = fx.path.parent / "bad.onnx"
    onnx.save(model, str(bad))
    return bad


@pytest.mark.parametrize("location", ["../../../etc/shadow", "/etc/shadow", "sub/../../x.data"])
def test_external_data_outside_the_folder_is_refused_without_touching_it(tmp_path, location, monkeypatch):
    import os

    bad = _with_location(tmp_path, location)
    touched = []
    real_stat = os.stat

    def watching_stat(p, *args, **kwargs):
        touched.append(str(p))
        return real_stat(p, *args, **kwargs)

    monkeypatch.setattr(os, "stat", watching_stat)
    with pytest.raises(ModelLoadError, match="is not a file name inside the model's folder; refused"):
        Scanner(bad, device="cpu")
    assert not any("shadow" in p or p.endswith("x.data") for p in touched)


def test_a_link_pointing_out_of_the_folder_is_refused(tmp_path):
    import os

    outside = tmp_path / "outside.data"
    outside.write_bytes(b"\0" * 4096)
    (tmp_path / "m").mkdir()
    os.symlink(outside, tmp_path / "m" / "link.data")
    bad = _with_location(tmp_path / "m", "link.data")
    with pytest.raises(ModelLoadError, match="leads outside the model's folder; refused"):
        Scanner(bad, device="cpu")


def test_a_non_numeric_offset_is_one_error(tmp_path):
    fx_dir = tmp_path
    bad = _with_location(fx_dir, "placeholder", offset="twelve")
    with pytest.raises(ModelLoadError, match="external-data offset or length that is not a number"):
        Scanner(bad, device="cpu")
