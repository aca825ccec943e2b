"""The model-level verdict and the gate, on hand-made labels and flags."""

import numpy as np



def test_verdict_needs_significance_and_size_and_uses_per_class_rates():
    from scanner.decide.verdict import binomial_sf, model_verdict

    labels = np.r_[np.zeros(1000, int), np.ones(1000, int), np.full(1000, 2)]
    flagged = np.r_[np.arange(1000) < 700, np.arange(1000) < 70, np.arange(1000) < 300]
    v = model_verdict(labels, flagged, expected_fpr=0.04, source="test")
    # class 0 (70%) is a suspect; class 1 (7% vs 4%) is significant but too small an excess
    assert [s.label for s in v.suspects] == [0, 2]
    # class 2's own benign rate is 25%: 30% is not a backdoor-sized excess
    v = model_verdict(labels, flagged, expected_fpr=0.04, source="test", per_class={2: 0.25})
    assert [s.label for s in v.suspects] == [0]
    assert binomial_sf(700, 1000, 0.04) < 1e-300


def test_guessed_preprocessing_is_what_nobody_stated():
    from scanner.decide.verdict import guessed_preprocessing

    default = {"pixel_range": "default", "mean": "default", "std": "default"}
    assert guessed_preprocessing(default) == ("pixel range", "normalization")
    assert guessed_preprocessing({**default, "mean": "spec file", "std": "spec file"}) == ("pixel range",)
    for source in ("option", "spec file", "model metadata", "inferred from graph"):  # graph: a uint8 input
        assert guessed_preprocessing({**default, "pixel_range": source}) == ()


def test_collapse_needs_a_share_and_enough_inputs():
    from scanner.decide.verdict import collapsed

    assert collapsed(np.r_[np.full(18, 3), [1, 2]]) == (3, 0.9)
    assert collapsed(np.r_[np.full(17, 3), [1, 2, 4]]) is None
    assert collapsed(np.full(19, 3)) is None  # too few inputs to call it


def test_withheld_verdict_records_the_suspects_and_why():
    from scanner.decide.verdict import model_verdict

    labels = np.zeros(100, int)
    flagged = np.arange(100) < 90
    v = model_verdict(labels, flagged, expected_fpr=0.1, source="test")
    assert [s.label for s in v.suspects] == [0]
    w = v.withhold("collapsed")
    assert not w.suspects and not w.model_suspicious and [s.label for s in w.withheld_suspects] == [0]
    doc = w.to_dict()
    assert doc["suspects_withheld"] == "collapsed" and doc["suspected_targets"] == []
    assert [s["label"] for s in doc["withheld_targets"]] == [0]
    assert v.to_dict()["suspects_withheld"] is None


def test_collapsed_scan_under_guessed_preprocessing_names_no_suspect(tmp_path):
    import onnx_models as om
    from scanner import Scanner
    from scanner.decide.verdict import summarize
    from scanner.report.render import summary_lines

    fx = om.trigger_byte_nhwc(tmp_path)  # 0-255 model, no metadata: [0, 1] input collapses onto class 1
    x = om.make_images(40, seed=6, max_value=1.0, triggered_fraction=0.0)
    guessed = Scanner(fx.path, device="cpu")
    summary = summarize(_scan(guessed, x))
    assert summary.verdict.withheld and "predicted as class 1" in summary.verdict.withheld
    assert len(summary.warnings) == 2 and summary.warnings[0].startswith("preprocessing guessed: pixel range and "
                                                                         "normalization")
    assert all("scanner probe" in w for w in summary.warnings)
    line = next(l for l in summary_lines(guessed.settings(), summary, None) if l.startswith("verdict:"))
    assert line.startswith("verdict: no suspect named: 100% of the 40 scored inputs are predicted as class 1")
    given = Scanner(fx.path, device="cpu", spec={"pixel_range": "byte"})
    summary = summarize(_scan(given, x))
    assert summary.warnings == () and summary.verdict.withheld is None


def _scan(scanner, x):
    from scanner.inputs.find import InputSet, MemoryArray

    inputs = InputSet()
    inputs.add_array(MemoryArray(x))
    return scanner.scan(inputs)


def test_without_a_reference_no_class_is_named_and_the_most_flagged_is_reported():
    from scanner.decide.verdict import decide

    labels = np.r_[np.zeros(50, int), np.ones(50, int)]
    flagged = np.r_[np.ones(50, bool), np.zeros(50, bool)]
    none = np.zeros(100, bool)
    verdict, _ = decide(labels, flagged, none, expected_fpr=0.1, source="assumed", reference=False)
    assert verdict.suspects == () and verdict.status == "no reference"
    assert "most flagged: class 0, 50 of 50" in verdict.note and verdict.withheld_suspects[0].label == 0
    stated, _ = decide(labels, flagged, none, expected_fpr=0.1, source="given", reference=True)
    assert [s.label for s in stated.suspects] == [0] and stated.status == "suspect"


def test_most_inputs_undecidable_means_cannot_judge_and_undecidable_inputs_are_left_out():
    from scanner.decide.verdict import decide

    labels = np.zeros(100, int)
    flagged = np.zeros(100, bool)
    undecidable = np.r_[np.ones(60, bool), np.zeros(40, bool)]
    verdict, warnings = decide(labels, flagged, undecidable, expected_fpr=0.05, source="cal", reference=True,
                               undecidable_reason="near-binary")
    assert verdict.status == "cannot judge" and verdict.suspects == ()
    assert warnings == ["cannot judge: 60 of 100 scored inputs are undecidable for the detector (near-binary)"]
    # 40 undecidable of 100: judged on the 60 others; the 40 (all "flagged" here) do not count
    flagged = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    undecidable = np.r_[np.ones(40, bool), np.zeros(60, bool)]
    verdict, _ = decide(labels, flagged & ~undecidable, undecidable, expected_fpr=0.05, source="cal", reference=True)
    assert verdict.status == "no suspect"


def test_fail_on_suspect_gate():
    from scanner.decide.verdict import Summary, check_gate, model_verdict

    verdict = model_verdict(np.zeros(40, int), np.ones(40, bool), expected_fpr=0.05, source="cal")
    summary = Summary(inputs_found=40, scored=40, failed=0, flagged=40, per_class=(), verdict=verdict, seconds=0.0)
    assert check_gate(summary, max_flagged=None, max_flagged_rate=None) is None
    gate = check_gate(summary, max_flagged=None, max_flagged_rate=None, fail_on_suspect=True)
    assert not gate and gate.reasons[0].startswith("--fail-on-suspect: suspected target class 0")
    quiet = Summary(inputs_found=40, scored=40, failed=0, flagged=0, per_class=(),
                    verdict=model_verdict(np.zeros(40, int), np.zeros(40, bool), expected_fpr=0.05, source="cal"),
                    seconds=0.0)
    assert check_gate(quiet, max_flagged=None, max_flagged_rate=None, fail_on_suspect=True).passed
