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
