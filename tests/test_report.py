"""Rendering: every format from one scan, the JSON schema's keys in order, the summary block."""

import csv
import io
import json

import numpy as np
import pytest

import onnx_models as om
from scanner import Scanner
from scanner.decisions import check_gate, summarize
from scanner.inputs import InputSet, MemoryArray
from scanner.report import Format, render_scan, report_header, summary_lines

HEADER_KEYS = ["schema_version", "kind", "scanner_version", "model", "model_sha256", "spec", "spec_sources", "output",
               "batch_mode", "batch_note", "execution_provider", "scales", "threshold", "score", "calibration",
               "class_names", "summary", "gate", "warnings"]
RECORD_KEYS = ["input", "predicted_label", "predicted_class", "spc", "nspc", "prob_consistency", "scaled_labels",
               "flagged"]


@pytest.fixture
def scanned(tmp_path, images):
    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    inputs = InputSet()
    inputs.add_array(MemoryArray(images))
    result = Scanner(fx.path, device="cpu").scan(inputs)
    summary = summarize(result)
    return result, summary, check_gate(summary, max_flagged=0, max_flagged_rate=None)


def render(scanned, fmt):
    stream = io.StringIO()
    render_scan(*scanned, fmt, stream)
    return stream.getvalue()


def test_json_schema_keys_in_order(scanned):
    doc = json.loads(render(scanned, Format.json))
    assert list(doc) == HEADER_KEYS + ["results", "failures"]
    assert list(doc["results"][0]) == RECORD_KEYS
    assert list(doc["results"][0]["scaled_labels"]) == ["3", "5", "7", "9", "11"]
    assert list(doc["summary"]) == ["inputs_found", "scored", "failed", "flagged", "flagged_rate",
                                    "flagged_per_class", "verdict", "seconds"]
    assert doc["gate"] == {"max_flagged": 0, "max_flagged_rate": None, "passed": False,
                           "reasons": [f"{doc['summary']['flagged']} flagged > --max-flagged 0"]}
    assert all(isinstance(k, str) for k in doc["summary"]["flagged_per_class"])


def test_jsonl_and_json_agree(scanned):
    lines = [json.loads(line) for line in render(scanned, Format.jsonl).splitlines()]
    doc = json.loads(render(scanned, Format.json))
    assert [r for r in lines if r["type"] == "result"] == [{"type": "result", **r} for r in doc["results"]]
    summary = lines[-1]
    assert summary["type"] == "summary" and list(summary)[1:] == HEADER_KEYS


def test_csv_has_a_row_per_input(scanned):
    rows = list(csv.reader(io.StringIO(render(scanned, Format.csv))))
    assert rows[0] == ["input", "status", "predicted_label", "predicted_class", "spc", "nspc", "flagged",
                       "label_x3", "label_x5", "label_x7", "label_x9", "label_x11", "reason"]
    assert len(rows) == 1 + 24 and rows[1][0] == "array[0]" and rows[1][1] == "scored"


def test_table_and_summary_lines(scanned):
    result, summary, gate = scanned
    text = render(scanned, Format.table)
    assert text.splitlines()[0].split() == ["input", "label", "SPC", "labels", "at", "3,5,7,9,11", "flagged"]
    lines = summary_lines(result.settings, summary, gate)
    assert lines[1] == "scales 3,5,7,9,11; flagged when SPC >= 0.5"
    assert lines[-1].startswith("gate: FAILED (") and text.rstrip().endswith(lines[-1])
    flagged = int(result.scores.flagged.sum())
    assert f"flagged {flagged} ({flagged / 24:.1%})" in lines[2]


def test_header_is_settings_summary_and_gate(scanned):
    result, summary, gate = scanned
    head = report_header(result, summary, gate)
    assert head["summary"] == summary.to_dict() and head["gate"] == gate.to_dict()
    assert head["scales"] == [3, 5, 7, 9, 11] and np.isclose(head["threshold"], 0.5)
