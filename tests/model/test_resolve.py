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


def test_output_whose_first_dim_is_the_batch_wins_over_a_fixed_intermediate(tmp_path, images):
    fx = om.trigger_with_intermediate(tmp_path)
    scanner = Scanner(fx.path, device="cpu")
    assert scanner.model.output.tensor.name == "output" and scanner.num_classes == 10
    assert "whose first dimension is the batch (19: fixed, skipped)" in scanner.model.output.reason
    np.testing.assert_array_equal(scanner.score_arrays(images).labels, fx.predict(images))
    with pytest.raises(SpecError, match=r"output 19 float32 \[128, 3200\] has a fixed first dimension"):
        Scanner(fx.path, device="cpu", spec={"output_name": "19"})


def test_output_of_unknown_shape_is_checked_on_a_real_run(tmp_path):
    import onnx

    from scanner.errors import ModelLoadError

    fx = om.trigger_with_intermediate(tmp_path)
    proto = onnx.load(str(fx.path))
    proto.graph.output.remove(proto.graph.output[0])
    proto.graph.output[0].type.tensor_type.ClearField("shape")  # "19", shape not declared
    path = tmp_path / "undeclared.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(ModelLoadError, match=r"output '19' has shape \[128, 3200\] for a batch of 8: its first "
                                             r"dimension is not the batch"):
        Scanner(path, device="cpu")


def test_detector_output_is_refused_in_one_line(tmp_path):
    from scanner.errors import ModelLoadError

    fx = om.detector_output(tmp_path)
    with pytest.raises(SpecError, match=r"output output float32 \[1, 12, 16\] is not class scores \[N, K\] or "
                                        r"labels \[N\]") as err:
        Scanner(fx.path, device="cpu", spec={"output_name": "output"})
    assert "\n" not in str(err.value)
    with pytest.raises(ModelLoadError, match="no output looks like class scores"):
        Scanner(fx.path, device="cpu")


def _tabular(tmp_path, features=28, shape=None):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = shape or ["N", features]
    w = numpy_helper.from_array(np.random.default_rng(0).standard_normal((features, 10)).astype(np.float32), "w")
    nodes = [helper.make_node("Reshape", ["x", "flat_shape"], ["flat"]), helper.make_node("MatMul", ["flat", "w"], ["logits"])]
    flat_shape = numpy_helper.from_array(np.array([-1, features], np.int64), "flat_shape")
    graph = helper.make_graph(nodes, "tabular", [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 10])], [w, flat_shape])
    path = tmp_path / f"tabular_{'x'.join(map(str, shape))}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_flat_input_with_a_given_size_takes_its_channels_from_the_flat_size(tmp_path):
    from scanner.model.loader import load_model

    path = _tabular(tmp_path, 16 * 8)
    model = load_model(path, device="cpu", options={"height": 16, "width": 8})
    assert (model.spec.layout, model.spec.channels) == ("flat", 1)
    assert model.resolved.sources["channels"] == "inferred from graph"
    assert load_model(_tabular(tmp_path, 16 * 8 * 3), device="cpu", options={"height": 16, "width": 8}).spec.channels == 3


@pytest.mark.parametrize("shape, options", [
    (["N", 28], {"height": 28, "width": 1}),                      # a row of 28 features read as 28x1
    (["N", 28], {"height": 1, "width": 28, "layout": "flat"}),
    (["N", 84], {"height": 28, "width": 1, "channels": 3}),
    (["N", 1, 28], {"height": 28, "width": 1}),                   # rank 3: no image layout
    (["N", 1, 28], {"height": 1, "width": 28, "layout": "nchw", "channels": 1}),
    (["N", 1, 28], {}),
    (["N", 1, 28, 1], {}),                                        # NCHW 28x1 from the graph alone
    (["N", 28, 1, 1], {"layout": "nhwc"}),
])
def test_an_input_that_is_no_image_is_refused_whatever_the_flags(tmp_path, shape, options):
    """Issue 27, point 7: tabular decoys are refused, never scanned as 28x1 images."""
    features = int(np.prod([d for d in shape if isinstance(d, int)]))
    with pytest.raises(SpecError, match="is not an image"):
        Scanner(_tabular(tmp_path, features, shape), device="cpu", spec=options)


def test_cli_refuses_a_tabular_model_given_a_size_with_one_line_and_exit_2(tmp_path):
    from typer.testing import CliRunner

    from scanner.cli.app import app

    np.save(tmp_path / "rows.npy", np.zeros((4, 28, 1), np.uint8))
    for shape in (["N", 28], ["N", 1, 28]):
        result = CliRunner().invoke(app, ["scan", str(_tabular(tmp_path, 28, shape)), str(tmp_path / "rows.npy"),
                                          "--size", "28x1"])
        assert result.exit_code == 2, result.output
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "is not an image" in lines[0], result.stderr


def test_tabular_input_gets_no_size_hint(tmp_path):
    with pytest.raises(SpecError, match="does not look like an image") as err:
        Scanner(_tabular(tmp_path), device="cpu")
    assert "--size" not in str(err.value)
