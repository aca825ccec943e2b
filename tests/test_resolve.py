"""Spec resolution: precedence of the layers, output choice, specs that do not fit the model."""

import numpy as np
import pytest

import onnx_models as om
from helpers import SCALES
from scanner import Scanner
from scanner.errors import SpecError


def test_spec_from_metadata_is_used(tmp_path, images):
    fx = om.trigger_normalized_outside(tmp_path, embed_spec=True)
    scanner = Scanner(fx.path, device="cpu")
    assert scanner.resolved.sources["mean"] == "model metadata"
    np.testing.assert_array_equal(scanner.score_arrays(images).spc, om.known_spc(images, SCALES, fx.predict))


def test_flags_override_spec_file_override_metadata(tmp_path):
    fx = om.trigger_normalized_outside(tmp_path, embed_spec=True)
    spec_file = tmp_path / "spec.json"
    spec_file.write_text('{"schema_version": 1, "mean": [0.1, 0.1, 0.1], "bgr": true}')
    scanner = Scanner(fx.path, device="cpu", spec_file=spec_file, spec={"bgr": False})
    assert scanner.spec.mean == (0.1, 0.1, 0.1) and scanner.resolved.sources["mean"] == "spec file"
    assert scanner.spec.bgr is False and scanner.resolved.sources["bgr"] == "option"
    assert scanner.spec.std == tuple(om.NORM_STD) and scanner.resolved.sources["std"] == "model metadata"


def test_output_choice(tmp_path):
    fx = om.trigger_two_outputs(tmp_path)
    scanner = Scanner(fx.path, device="cpu")
    assert scanner.model.output.tensor.name == "logits"  # the hinted [N, K] output over "features"
    fx = om.trigger_labels_only(tmp_path)
    assert Scanner(fx.path, device="cpu").model.output_kind == "labels"
    with pytest.raises(SpecError, match="output 'nope' not found"):
        Scanner(fx.path, device="cpu", spec={"output_name": "nope"})


def test_wrong_layout_flag_is_a_clear_error(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    with pytest.raises(SpecError, match="model input is input float32 \\[N, 3, 8, 8\\]"):
        Scanner(fx.path, device="cpu", spec={"layout": "nhwc"})
