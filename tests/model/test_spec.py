"""The preprocessing spec: one versioned schema for spec files, model metadata and flags."""

import json

import pytest

from scanner.errors import SpecError
from scanner.model.spec import (
    METADATA_KEY, SCHEMA_VERSION, Spec, merge_layers, read_spec_file, spec_from_metadata, validate_spec_dict,
)


def write(tmp_path, text):
    path = tmp_path / "spec.json"
    path.write_text(text)
    return path


def test_spec_file_round_trip(tmp_path):
    spec = Spec(layout="nhwc", height=28, width=28, channels=1, pixel_range="byte", mean=(0.5,), std=(0.25,),
                class_names=tuple("abc"))
    read = read_spec_file(write(tmp_path, spec.to_json()))
    assert merge_layers([("spec file", read)]).spec == spec
    assert spec.to_dict()["schema_version"] == SCHEMA_VERSION == 1


def test_unknown_field_is_named(tmp_path):
    with pytest.raises(SpecError, match=r"spec file .*spec.json: unknown spec field\(s\) colour; allowed: layout"):
        read_spec_file(write(tmp_path, '{"schema_version": 1, "colour": "rgb"}'))


def test_wrong_schema_version(tmp_path):
    with pytest.raises(SpecError, match="spec schema_version 2 is not supported \\(this scanner reads 1\\)"):
        read_spec_file(write(tmp_path, '{"schema_version": 2, "layout": "nchw"}'))


@pytest.mark.parametrize("text,message", [
    ('{"layout": "nchw",}', "is not valid JSON"),
    ('[1, 2]', "expected a JSON object, got list"),
])
def test_bad_json(tmp_path, text, message):
    with pytest.raises(SpecError, match=message):
        read_spec_file(write(tmp_path, text))


def test_missing_file(tmp_path):
    with pytest.raises(SpecError, match="cannot read spec file"):
        read_spec_file(tmp_path / "nope.json")


@pytest.mark.parametrize("field,value,message", [
    ("layout", "nhcw", "expected one of nchw, nhwc, flat"),
    ("pixel_range", "percent", "expected one of unit, byte"),
    ("height", 0, "expected a positive integer"),
    ("width", 2.5, "expected a positive integer"),
    ("channels", 2, "expected 1 or 3"),
    ("mean", [0.1, 0.2], "expected 1 or 3 numbers, got 2"),
    ("std", [0.5, 0.0, 0.5], "std must be positive"),
    ("bgr", "yes", "expected true or false"),
    ("class_names", "cat,dog", "expected a list of strings"),
])
def test_field_values_are_checked(field, value, message):
    with pytest.raises(SpecError, match=f"field '{field}': {message}"):
        validate_spec_dict({field: value}, origin="test")


@pytest.mark.parametrize("key", ["mean", "std"])
def test_stats_count_must_match_channels(tmp_path, key):
    layer = read_spec_file(write(tmp_path, json.dumps({"channels": 1, key: [0.5, 0.5, 0.5]})))
    with pytest.raises(SpecError, match=f"{key} has 3 values but the model takes 1 channel\\(s\\) "
                                        f"\\({key} from spec file, channels from spec file\\)"):
        merge_layers([("spec file", layer)])


def test_precedence_and_sources():
    resolved = merge_layers([("option", {"bgr": True}), ("spec file", {"bgr": False, "height": 8}),
                             ("model metadata", {"height": 32, "width": 32})])
    assert (resolved.spec.bgr, resolved.spec.height, resolved.spec.width) == (True, 8, 32)
    assert resolved.sources["bgr"] == "option" and resolved.sources["height"] == "spec file"
    assert resolved.sources["width"] == "model metadata" and resolved.sources["layout"] == "default"
    assert "bgr          True" in str(resolved)


def test_metadata_layer():
    assert spec_from_metadata({}) == {}
    assert spec_from_metadata({METADATA_KEY: '{"schema_version": 1, "height": 5}'}) == {"height": 5}
    with pytest.raises(SpecError, match="model metadata 'scanner.spec' is not valid JSON"):
        spec_from_metadata({METADATA_KEY: "{"})


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "is nested too deeply to read"),
    ('{"height": ' + "1" * 5001 + "}", "holds an integer of more than 4300 digits"),
])
def test_json_python_cannot_read_is_one_spec_error(tmp_path, text, message):
    """Issue 28: a RecursionError (JSON nested 100,000 deep) and a ValueError (an integer of more
    digits than Python converts) were internal errors (exit 3); they are one SpecError."""
    with pytest.raises(SpecError, match=f"model metadata 'scanner.spec' {message}"):
        spec_from_metadata({METADATA_KEY: text})
    with pytest.raises(SpecError, match=f"spec file .*spec.json {message}"):
        read_spec_file(write(tmp_path, text))
    with pytest.raises(SpecError, match="field 'height': int too large to convert to float"):
        spec_from_metadata({METADATA_KEY: '{"height": ' + "1" * 4000 + "}"})  # within the limit: too large


def test_schema_version_true_is_not_version_1(tmp_path):
    """JSON's true equals 1 in Python: found by the leaf-by-leaf fuzz (bench.fuzz)."""
    with pytest.raises(SpecError, match="spec schema_version True is not supported"):
        read_spec_file(write(tmp_path, '{"schema_version": true, "layout": "nchw"}'))


def test_channels_true_is_not_one_channel(tmp_path):
    with pytest.raises(SpecError, match="field 'channels': expected 1 or 3, got True"):
        read_spec_file(write(tmp_path, '{"schema_version": 1, "channels": true}'))
