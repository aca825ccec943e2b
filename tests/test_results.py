"""ScanResult for notebooks: summary, verdict and gate as typed objects, and to_pandas()."""

import sys

import numpy as np
import pytest

import onnx_models as om
from helpers import write_pngs
from scanner import Gate, Scanner, ScannerError, Summary, Verdict, summarize


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    fx = om.trigger_nchw(root / "model", embed_spec=True)
    folder = write_pngs(root / "imgs", om.make_images(20, seed=5, triggered_fraction=0.25))
    (folder / "img_003b.png").write_text("not an image")
    return Scanner(fx.path).scan([folder])


def test_summary_verdict_and_gate_are_typed(result):
    summary = result.summary()
    assert isinstance(summary, Summary) and summary.to_dict() == {**summarize(result).to_dict(), "seconds": summary.to_dict()["seconds"]}
    assert isinstance(result.verdict, Verdict) and result.verdict.suspects == ()  # no reference: none named
    assert result.verdict.status == "no reference"
    assumed = result.summary(expected_fpr=0.1).verdict  # an assumed rate is no benign reference (issue 29)
    assert assumed.suspects == () and assumed.status == "no reference" and "most flagged: class 0" in assumed.note
    gate = result.gate(max_flagged=0)
    assert isinstance(gate, Gate) and not gate and gate.reasons == ("5 flagged > --max-flagged 0",)
    assert result.gate(max_flagged=5) and result.gate() is None
    assert result.summary(expected_fpr=0.9).verdict.suspects == ()


def test_to_pandas_has_the_csv_columns_in_input_order(result):
    pd = pytest.importorskip("pandas")
    frame = result.to_pandas()
    assert list(frame.columns) == ["input", "status", "predicted_label", "predicted_class", "spc", "nspc",
                                   "prob_consistency", "flagged", "label_x3", "label_x5", "label_x7", "label_x9",
                                   "label_x11", "reason"]
    assert len(frame) == 21 and frame["input"].iloc[4].endswith("img_003b.png")
    failed = frame[frame["status"] == "failed"]
    assert len(failed) == 1 and pd.isna(failed["predicted_label"].iloc[0]) and failed["reason"].iloc[0]
    scored = frame[frame["status"] == "scored"]
    assert scored["flagged"].sum() == 5 and np.allclose(scored["spc"], result.scores.spc)
    assert str(frame["predicted_label"].dtype) == "Int64" and str(frame["flagged"].dtype) == "boolean"


def test_to_pandas_without_pandas_is_a_clear_error(result, monkeypatch):
    monkeypatch.setitem(sys.modules, "pandas", None)
    with pytest.raises(ScannerError, match=r'needs pandas: pip install pandas .*pip install -e "\.\[pandas\]"'):
        result.to_pandas()


def test_str_is_the_command_lines_text_and_reprs_are_short(result):
    """Issue 29, point 5: print(result), print(summary), print(verdict), print(gate) give what
    `scanner scan` prints; reprs are one short line, not a dump of arrays."""
    from scanner.report.common import summary_lines

    summary, gate = result.summary(), result.gate(max_flagged=0)
    cli = summary_lines(result.settings, summary, gate)
    assert str(result).splitlines() == cli[:-1]  # the CLI's block, less the gate line
    assert "\n".join(cli[:-1]).endswith("\n" + str(summary))  # from the counts on
    assert str(gate) == cli[-1] == "gate: FAILED (5 flagged > --max-flagged 0)"
    assert str(summary.verdict) in str(summary) and str(summary.verdict).startswith("verdict: no reference: ")
    for obj in (result, result.scores, summary, summary.verdict, gate):
        text = repr(obj)
        assert text.startswith("<") and "\n" not in text and "array(" not in text and len(text) < 200, text
    assert "5 flagged" in repr(result) and repr(summary.verdict) == "<Verdict no reference>"


def test_scanner_repr_says_what_it_runs(result):
    scanner = Scanner(result.settings.model)
    assert repr(scanner).startswith(f"<Scanner {result.settings.model} on ")
    assert "scaleup, 6 queries per input, flagged when spc >= 0.5" in repr(scanner)
