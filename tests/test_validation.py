"""Values from flags, spec files, metadata, calibration files and callers are checked before use:
NaN, infinities, wrong types and absurd sizes give one ScannerError naming the source (issue 12,
cases 1, 2, 4 and 10)."""

import copy
import json

import numpy as np
import pytest

import onnx_models as om
from scanner import Scanner
from scanner.decide.calibration import Calibration, fit_calibration
from scanner.decide.verdict import check_gate, summarize
from scanner.detectors.scaleup import parse_scales
from scanner.errors import CalibrationError, ScannerError, SpecError
from scanner.model.spec import METADATA_KEY, spec_from_metadata, validate_spec_dict

SAMPLE_CAL = json.loads(open(__file__.replace("tests/test_validation.py", "samples/calibration.json")).read())


@pytest.mark.parametrize("key,value,message", [
    ("per_class", [], "field 'per_class' must be an object keyed by class label"),
    ("scales", ["a"], "field 'scales': expected a finite number, got 'a'"),
    ("model_sha256", 12345, "field 'model_sha256' must be 64 hex digits, got 12345"),
    ("n_samples", "many", "field 'n_samples': expected an integer, got 'many'"),
    ("n_samples", -2, "field 'n_samples': expected a value of at least 2, got -2"),
    ("threshold", float("nan"), "field 'threshold': expected a finite number, got nan"),
    ("target_fpr", 1.5, "field 'target_fpr': expected a value of at most 1"),
])
def test_malformed_calibration_files(tmp_path, key, value, message):
    data = copy.deepcopy(SAMPLE_CAL)
    data[key] = value
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))  # json writes NaN as the (non-standard) token NaN, as an editor might
    with pytest.raises(CalibrationError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Calibration.load(path)


def test_calibration_per_class_entries_are_checked(tmp_path):
    data = copy.deepcopy(SAMPLE_CAL)
    data["per_class"]["3"]["std"] = -1
    path = tmp_path / "cal.json"
    path.write_text(json.dumps(data))
    with pytest.raises(CalibrationError, match=r"per_class\[3\].std: expected a value of at least 0"):
        Calibration.load(path)


@pytest.mark.parametrize("layer,message", [
    ({"height": float("inf")}, "field 'height': expected a positive integer, got inf"),
    ({"mean": [float("nan")]}, "field 'mean': expected finite numbers"),
    ({"std": [float("inf")] * 3}, "field 'std': expected finite numbers"),
    ({"width": 99999999999}, "field 'width': expected at most 8192 pixels"),
])
def test_spec_values_must_be_finite_and_sane(layer, message):
    with pytest.raises(SpecError, match=message):
        validate_spec_dict(layer, origin="test")


def test_infinity_in_model_metadata():
    with pytest.raises(SpecError, match="model metadata 'scanner.spec': field 'height'"):
        spec_from_metadata({METADATA_KEY: '{"schema_version": 1, "height": Infinity}'})


@pytest.mark.parametrize("text,message", [
    ("1-1000000", "at most 64 are allowed"), ("nan", "finite"), ("inf", "finite"), ("5000", "at most 1000"),
])
def test_scale_sets_are_bounded(text, message):
    with pytest.raises(ValueError, match=message):
        parse_scales(text)


@pytest.fixture
def fx(tmp_path):
    return om.trigger_nchw(tmp_path, embed_spec=True)


@pytest.mark.parametrize("kwargs,message", [
    ({"threshold": float("nan")}, "threshold: expected a finite number, got nan"),
    ({"batch_size": 0}, "batch_size: expected a value of at least 1, got 0"),
    ({"batch_size": -3}, "batch_size: expected a value of at least 1"),
    ({"workers": 1.5}, "workers: expected an integer"),
    ({"scales": (3, float("inf"))}, "scales: expected a finite number, got inf"),
    ({"scales": ()}, "scales: the scale set is empty"),
    ({"device": "gpu"}, "device must be auto, cpu or cuda"),
])
def test_scanner_arguments_raise_scanner_error(fx, kwargs, message):
    with pytest.raises(ScannerError, match=message):
        Scanner(fx.path, device=kwargs.pop("device", "cpu"), **kwargs)


def test_a_string_path_is_one_path(fx, tmp_path, images):
    from helpers import write_pngs

    folder = write_pngs(tmp_path / "imgs", images[:4])
    result = Scanner(fx.path, device="cpu").scan(str(folder))
    assert result.n_found == 4 and result.n_scored == 4


def test_nan_cannot_blind_the_gate_or_the_verdict(fx, images):
    result = Scanner(fx.path, device="cpu").scan(_as_inputs(images))
    summary = summarize(result)
    with pytest.raises(ScannerError, match="--max-flagged-rate: expected a finite number, got nan"):
        check_gate(summary, max_flagged=None, max_flagged_rate=float("nan"))
    with pytest.raises(ScannerError, match="--max-flagged: expected a value of at least 0"):
        check_gate(summary, max_flagged=-1, max_flagged_rate=None)
    with pytest.raises(ScannerError, match=r"--expected-fpr\): expected a finite number, got nan"):
        summarize(result, expected_fpr=float("nan"))
    with pytest.raises(CalibrationError, match="--fpr\\): expected a finite number"):
        fit_calibration(np.zeros(4), np.zeros(4, int), scales=(3,), target_fpr=float("nan"))


def _as_inputs(images):
    from scanner.inputs.find import InputSet, MemoryArray

    inputs = InputSet()
    inputs.add_array(MemoryArray(images))
    return inputs
