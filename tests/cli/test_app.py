"""The command line, in-process: every command, exit code, output format, and bad input."""

import csv
import importlib.util
import io
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

import onnx_models as om
from scanner.cli.app import app


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def images(tmp_path):
    x = om.make_images(20, seed=5, triggered_fraction=0.25)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder, x


def invoke(runner, *args):
    return runner.invoke(app, [str(a) for a in args])


def _calibrate(runner, model, tmp_path, n, seed, *options):
    """`scanner calibrate` on n clean fixture images saved as one .npy: (calibration path, result)."""
    clean = om.make_images(n, seed=seed, triggered_fraction=0.0)
    np.save(tmp_path / "clean.npy", np.rint(clean * 255).astype(np.uint8))
    cal = tmp_path / "cal.json"
    return cal, invoke(runner, "calibrate", model.path, tmp_path / "clean.npy", "-o", cal, *options)


def one_error_line(result):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    return lines[-1]


def test_every_command_has_help(runner):
    for command in ("scan", "calibrate", "evaluate", "inspect"):
        result = invoke(runner, command, "--help")
        assert result.exit_code == 0 and "Usage" in result.output


def test_scan_table_flags_triggered_inputs(runner, model, images):
    folder, x = images
    result = invoke(runner, "-q", "scan", model.path, folder)
    assert result.exit_code == 0, result.output
    flagged = [line.split()[-1] for line in result.stdout.splitlines() if line.split()[-2:-1] == ["yes"]]
    assert sorted(flagged) == sorted(str(folder / f"{i:02d}.png") for i in np.flatnonzero(om.is_triggered(x)))
    assert "inputs found 20, scored 20, failed 0, flagged 5" in result.stdout
    per_class = next(line for line in result.stdout.splitlines() if line.startswith("flagged per predicted class: "))
    assert "0: 5/5" in per_class


def test_scan_json_schema(runner, model, images):
    folder, x = images
    (folder / "broken.png").write_text("not an image")
    result = invoke(runner, "-q", "scan", model.path, folder, "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    for key in ("schema_version", "scanner_version", "model_sha256", "spec", "execution_provider", "scales",
                "threshold", "score", "summary", "gate", "results", "failures"):
        assert key in doc
    assert doc["execution_provider"] == "CPUExecutionProvider" and doc["scales"] == [3, 5, 7, 9, 11]
    assert doc["summary"]["inputs_found"] == 21 and doc["summary"]["scored"] == 20 and doc["summary"]["failed"] == 1
    assert doc["failures"] == [{"input": str(folder / "broken.png"), "reason": "not an image Pillow can read"}]
    first = doc["results"][0]
    assert set(first) == {"input", "predicted_label", "predicted_class", "spc", "nspc", "prob_consistency",
                          "scaled_labels", "flagged", "undecidable"}
    # without a calibration no class is named: the most flagged one may only be where inputs drift to
    verdict = doc["summary"]["verdict"]
    assert verdict["suspected_targets"] == [] and verdict["status"] == "no reference"
    assert "most flagged: class 0, 5 of 5" in verdict["note"]
    per_class = doc["summary"]["flagged_per_class"]
    assert per_class["0"] == {"class": None, "inputs": 5, "flagged": 5}
    assert sum(v["inputs"] for v in per_class.values()) == 20


def test_scan_csv_and_jsonl(runner, model, images, tmp_path):
    folder, _ = images
    out = tmp_path / "r.csv"
    result = invoke(runner, "-q", "scan", model.path, folder, "-f", "csv", "-o", out)
    assert result.exit_code == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 20 and {"input", "spc", "flagged", "label_x3", "label_x11"} <= set(rows[0])
    result = invoke(runner, "-q", "scan", model.path, folder, "-f", "jsonl")
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["type"] for line in lines].count("result") == 20 and lines[-1]["type"] == "summary"


@pytest.mark.parametrize("args,code", [
    (("--max-flagged", "5"), 0), (("--max-flagged", "4"), 1),
    (("--max-flagged-rate", "0.25"), 0), (("--max-flagged-rate", "0.2"), 1),
])
def test_gate_exit_codes(runner, model, images, args, code):
    result = invoke(runner, "-q", "scan", model.path, images[0], *args)
    assert result.exit_code == code, result.output


def test_strict_fails_on_unreadable_input(runner, model, images):
    folder, _ = images
    (folder / "text.png").write_text("hello")
    assert invoke(runner, "-q", "scan", model.path, folder).exit_code == 0
    result = invoke(runner, "-q", "scan", model.path, folder, "--strict")
    assert result.exit_code == 2
    assert "--strict: 1 input(s) could not be read" in one_error_line(result)


def test_bad_inputs(runner, model, images, tmp_path):
    folder, _ = images
    result = invoke(runner, "scan", model.path, tmp_path / "nope")
    assert result.exit_code == 2 and "input path not found" in one_error_line(result)
    (tmp_path / "empty").mkdir()
    result = invoke(runner, "scan", model.path, tmp_path / "empty")
    assert result.exit_code == 2 and "no images found in folder" in one_error_line(result)
    # a text file named .png, and a truncated JPEG: listed as failed with reasons
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "text.png").write_text("hello")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8) + 100).save(tmp_path / "ok.jpg", quality=95)
    data = (tmp_path / "ok.jpg").read_bytes()
    (bad / "cut.jpg").write_bytes(data[: len(data) // 2])
    result = invoke(runner, "-q", "scan", model.path, bad, "-f", "json")
    assert result.exit_code == 2  # nothing could be scored
    assert "none of the 2 inputs could be read" in one_error_line(result)
    reasons = {f["input"].split("/")[-1]: f["reason"] for f in json.loads(result.stdout)["failures"]}
    assert reasons["text.png"] == "not an image Pillow can read"
    assert "truncated" in reasons["cut.jpg"]


@pytest.mark.parametrize("make,message", [
    (lambda p: om.write_not_onnx(p), "not a readable ONNX model"),
    (lambda p: om.write_truncated_model(p), "not a readable ONNX model"),
    (lambda p: om.trigger_external_data_missing(p).path, "external file"),
    (lambda p: om.two_data_inputs(p).path, "2 data inputs"),
    (lambda p: p / "missing.onnx", "model file not found"),
])
def test_unusable_model_messages(runner, images, tmp_path, make, message):
    result = invoke(runner, "scan", make(tmp_path), images[0])
    assert result.exit_code == 2
    assert message in one_error_line(result)


def test_usage_errors(runner, model, images):
    for args, message in [
        (("--scales", "0,3"), "--scales"), (("--format", "xml"), "--format"), (("--size", "big"), "--size"),
        (("--mean", "a,b"), "--mean"),
    ]:
        result = invoke(runner, "scan", model.path, images[0], *args)
        assert result.exit_code == 2 and message in one_error_line(result)
    result = invoke(runner, "scan", model.path, images[0], "--device", "cuda")
    assert result.exit_code == 2 and "cuda" in one_error_line(result).lower()


def test_calibrate_then_scan_with_nspc(runner, model, images, tmp_path):
    cal, result = _calibrate(runner, model, tmp_path, 60, 9, "--fpr", "0.1", "--detector", "scaleup")
    assert result.exit_code == 0, result.output
    assert "calibrated scaleup on 60 benign inputs" in result.stdout
    doc = json.loads(cal.read_text())
    assert doc["achieved_fpr"] <= 0.1 and doc["model_sha256"] and doc["format_version"] == 2
    result = invoke(runner, "-q", "scan", model.path, images[0], "--calibration", cal, "-f", "json",
                    "--score", "nspc")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["score"] == "nspc" and all(r["nspc"] is not None for r in out["results"])
    assert out["summary"]["verdict"]["expected_fpr_source"].startswith("calibration")
    # a calibration is tied to its model and scales
    result = invoke(runner, "scan", model.path, images[0], "--calibration", cal, "--scales", "1-11")
    assert result.exit_code == 2 and "scales" in one_error_line(result)
    other = om.trigger_nhwc(tmp_path / "other")
    result = invoke(runner, "scan", other.path, images[0], "--calibration", cal)
    assert result.exit_code == 2 and "another model" in one_error_line(result)


def test_evaluate_protocol(runner, model, tmp_path):
    x = om.make_images(40, seed=11, triggered_fraction=0.0)
    truth = om.predict_trigger(x)
    benign = tmp_path / "benign"
    for i, (img, label) in enumerate(zip(x, truth)):
        d = benign / str(int(label) if i % 4 else (int(label) + 1) % 10)  # every 4th is "misclassified"
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(d / f"{i}.png")
    poisoned = om.make_images(30, seed=12, triggered_fraction=1.0)
    np.savez(tmp_path / "poisoned.npz", x=np.rint(poisoned * 255).astype(np.uint8), y=np.ones(30, np.int64))
    out, plot = tmp_path / "m.json", tmp_path / "roc.png"
    plotting = importlib.util.find_spec("matplotlib") is not None  # the plot extra (absent in CI's floor step)
    result = invoke(runner, "evaluate", model.path, "--benign", benign, "--poisoned", tmp_path / "poisoned.npz",
                    "--target-label", "0", "-o", out, *(["--plot", plot] if plotting else []))
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["protocol"]["benign_kept"] == 30 and doc["protocol"]["poisoned_kept"] == 30
    assert doc["protocol"]["benign_filter"].startswith("kept correctly classified inputs")
    assert doc["metrics"]["spc"]["auroc"] > 0.9
    assert not plotting or plot.stat().st_size > 1000
    assert "SPC (decision): AUROC" in result.stdout and "PROB_CONSISTENCY: AUROC" in result.stdout
    assert max(len(line) for line in result.stdout.splitlines()) < 100  # issue 29: wrapped, indented


def test_inspect(runner, tmp_path):
    fx = om.trigger_fixed_batch1(tmp_path)
    result = invoke(runner, "inspect", fx.path)
    assert result.exit_code == 0, result.output
    assert "rewritten" in result.stdout and "inferred from graph" in result.stdout
    result = invoke(runner, "inspect", fx.path, "-f", "json")
    doc = json.loads(result.stdout)
    assert doc["batch"] == "rewritten" and doc["spec"]["layout"] == "nchw"


def test_inspect_reports_ignored_weight_inputs(runner, tmp_path):
    fx = om.trigger_initializer_inputs(tmp_path)
    result = invoke(runner, "inspect", fx.path, "-f", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["ignored_initializer_inputs"] > 0


# -- exit codes for every failure class (issue 12) -------------------------------------------
def test_internal_error_is_one_line_and_exit_3(runner, model, images, monkeypatch):
    from scanner.core import Scanner

    def broken(self, *args, **kwargs):
        raise RuntimeError("something\nthe scanner did not expect")

    monkeypatch.setattr(Scanner, "scan", broken)
    result = invoke(runner, "scan", model.path, images[0])
    assert result.exit_code == 3
    line = one_error_line(result)
    assert "internal error, a bug in the scanner (RuntimeError: something the scanner did not expect)" in line
    assert "rerun with -v" in line
    verbose = invoke(runner, "-v", "scan", model.path, images[0])
    assert verbose.exit_code == 3 and "Traceback" in verbose.stderr


@pytest.mark.parametrize("args,message", [
    (("--threshold", "nan"), "threshold: expected a finite number, got nan"),
    (("--max-flagged-rate", "nan"), "--max-flagged-rate: expected a finite number, got nan"),
    (("--expected-fpr", "nan"), "expected a finite number, got nan"),
    (("--mean", "nan,0,0"), "field 'mean': expected finite numbers"),
    (("--scales", "1-1000000"), "at most 64 are allowed"),
    (("--size", "99999999999x99999999999"), "expected at most 8192 pixels"),
])
def test_nan_and_absurd_options_are_usage_errors(runner, model, images, args, message):
    result = invoke(runner, "scan", model.path, images[0], *args)
    assert result.exit_code == 2 and message in one_error_line(result)


# -- third-party models (issue 11): probe, guessed preprocessing, outputs, batch, class names ------
@pytest.fixture
def mixed_pngs(tmp_path):
    x = om.make_images(40, seed=7, max_value=1.0, triggered_fraction=0.2)
    folder = tmp_path / "mixed"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    return folder


def test_probe_prints_the_ranking_and_the_flags_and_writes_a_spec(runner, tmp_path, mixed_pngs):
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    result = invoke(runner, "probe", fx.path, mixed_pngs, "--write-spec", tmp_path / "spec.json")
    assert result.exit_code == 0, result.output
    assert "best: [0, 255], no normalization, RGB" in result.stdout
    assert "flags: --pixel-range byte" in result.stdout
    assert json.loads((tmp_path / "spec.json").read_text())["pixel_range"] == "byte"
    doc = json.loads(invoke(runner, "probe", fx.path, mixed_pngs, "--sample", 10, "-f", "json").stdout)
    assert doc["sampled"] == 10 and doc["best_flags"] == "--pixel-range byte" and len(doc["ranking"]) == 14
    scanned = invoke(runner, "-q", "scan", fx.path, mixed_pngs, "--spec", tmp_path / "spec.json")
    assert scanned.exit_code == 0 and "Warning" not in scanned.stderr


def test_probe_that_cannot_tell_recommends_nothing_and_writes_no_spec(runner, tmp_path):
    """Issue 27, point 4: "cannot tell" printed flags all the same, and users copied them."""
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    dark = om.make_images(30, seed=4, max_value=0.05, triggered_fraction=0.0)  # one class whatever the preprocessing
    folder = tmp_path / "dark"
    folder.mkdir()
    for i, img in enumerate(dark):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    result = invoke(runner, "probe", fx.path, folder, "--write-spec", tmp_path / "spec.json")
    assert result.exit_code == 2
    assert "cannot tell:" in result.stdout and "flags:" not in result.stdout and "most likely" not in result.stdout
    assert "no spec is written" in one_error_line(result) and not (tmp_path / "spec.json").exists()
    doc = json.loads(invoke(runner, "probe", fx.path, folder, "-f", "json").stdout)
    assert doc["decided"] is False and doc["best_flags"] is None and doc["spec"] is None


def test_scan_warns_on_guessed_preprocessing_and_names_no_suspect_from_a_collapse(runner, tmp_path, mixed_pngs):
    fx = om.trigger_byte_nhwc(tmp_path / "m")
    result = invoke(runner, "-q", "scan", fx.path, mixed_pngs, "-f", "json")
    assert result.exit_code == 0, result.output
    warnings = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
    assert len(warnings) == 2 and "preprocessing guessed" in warnings[0] and "scanner probe" in warnings[0]
    assert "no suspect named: 100% of the 40 scored inputs are predicted as class 1" in warnings[1]
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == 1 and doc["warnings"] == [w[len("Warning: "):] for w in warnings]
    verdict = doc["summary"]["verdict"]
    assert verdict["suspected_targets"] == [] and "predicted as class 1" in verdict["suspects_withheld"]
    table = invoke(runner, "scan", fx.path, mixed_pngs)
    assert "verdict: no suspect named: 100% of the 40 scored inputs" in table.stdout
    given = invoke(runner, "-q", "scan", fx.path, mixed_pngs, "--pixel-range", "byte", "-f", "json",
                   "--expected-fpr", "0.1")
    doc = json.loads(given.stdout)
    assert doc["warnings"] == [] and "predicted as class" not in (doc["summary"]["verdict"]["note"] or "")
    # stated preprocessing: nothing withheld for a collapse; no class named without a calibration (issue 29)
    assert doc["summary"]["verdict"]["status"] == "no reference" and "most flagged: class 0" in doc["summary"]["verdict"]["note"]


def test_output_name_of_a_detector_output_is_a_one_line_error(runner, tmp_path, images):
    fx = om.detector_output(tmp_path / "m")
    result = invoke(runner, "scan", fx.path, images[0], "--output-name", "output")
    assert result.exit_code == 2
    assert "output output float32 [1, 12, 16] is not class scores [N, K] or labels [N]" in one_error_line(result)


def test_inspect_says_a_batch_dependent_model_runs_one_input_per_call(runner, tmp_path):
    fx = om.dynamic_quant(tmp_path / "m")
    result = invoke(runner, "inspect", fx.path)
    assert result.exit_code == 0
    line = next(line for line in result.stdout.splitlines() if line.startswith("batch "))
    assert "per-sample" in line and "depend on the other inputs of a call" in line and "one input per call" in line
    doc = json.loads(invoke(runner, "inspect", fx.path, "-f", "json").stdout)
    assert doc["batch"] == "per-sample"


def test_class_names_option_on_every_command(runner, tmp_path, model, images):
    names = ",".join(f"c{i}" for i in range(10))
    for command in ("scan", "calibrate", "evaluate", "inspect", "probe"):
        assert "--class-names" in invoke(runner, command, "--help").stdout
    result = invoke(runner, "-q", "scan", model.path, images[0], "--class-names", names, "-f", "json")
    assert {r["predicted_class"] for r in json.loads(result.stdout)["results"]} <= set(names.split(","))
    (tmp_path / "names.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    inspected = invoke(runner, "inspect", model.path, "--class-names", f"@{tmp_path / 'names.txt'}", "-f", "json")
    assert json.loads(inspected.stdout)["spec"]["class_names"] == [f"n{i}" for i in range(10)]
    wrong = invoke(runner, "scan", model.path, images[0], "--class-names", "a,b")
    assert wrong.exit_code == 2 and "2 class names given (option) but output logits" in one_error_line(wrong)
    missing = invoke(runner, "scan", model.path, images[0], "--class-names", "@/nonexistent/names.txt")
    assert missing.exit_code == 2 and "--class-names: cannot read" in one_error_line(missing)


def _model_looping_on_the_second_batch(tmp_path):
    """A model that loops (10^12 steps) on black images, and a folder of five images of which the
    second batch of two (images 2-3) is black."""
    from hanging_models import loop_model

    model = loop_model(tmp_path / "black.onnx", only_black=True)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, value in enumerate([128, 128, 0, 0, 128]):
        Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(folder / f"{i}.png")
    return model, folder


def test_timeout_reports_what_was_done_and_exits_2(runner, tmp_path):
    model, folder = _model_looping_on_the_second_batch(tmp_path)
    out = tmp_path / "r.json"
    result = invoke(runner, "-q", "scan", model, folder, "--batch-size", "2", "--timeout", "2", "-f", "json", "-o", out)
    assert result.exit_code == 2
    assert "--timeout: the time limit of" in one_error_line(result)
    doc = json.loads(out.read_text())
    assert doc["summary"]["scored"] == 2 and doc["summary"]["failed"] == 3
    assert doc["summary"]["incomplete"].startswith("the time limit of")
    assert all(f["reason"].startswith("not scored: the time limit") for f in doc["failures"])


def test_a_model_that_never_returns_while_loading_is_stopped(tmp_path):
    import subprocess
    import sys
    import time

    from hanging_models import loop_model

    model = loop_model(tmp_path / "loop.onnx", only_black=False)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", model, str(tmp_path / "a.png"), "--timeout", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - started < 30
    assert proc.stderr.strip().splitlines()[-1].startswith("Error: --timeout: still running")


@pytest.mark.parametrize("command", ["scan", "calibrate", "evaluate", "inspect", "probe"])
def test_every_command_stops_a_model_that_never_returns_by_its_call_timeout(runner, tmp_path, command):
    """The per-call watchdog is on by default in every command that runs the model (600 s, shown
    in --help); a small --call-timeout shows it: one line, exit 2, nothing hangs."""
    import time

    from hanging_models import loop_model

    model = loop_model(tmp_path / "loop.onnx", only_black=False)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    image = tmp_path / "a.png"
    args = {"scan": ["scan", model, image], "calibrate": ["calibrate", model, image, "-o", tmp_path / "c.json"],
            "evaluate": ["evaluate", model, "--benign", image, "--poisoned", image], "inspect": ["inspect", model],
            "probe": ["probe", model, image]}[command]
    assert "--call-timeout" in invoke(runner, command, "--help").stdout
    started = time.monotonic()
    result = invoke(runner, *args, "--call-timeout", "0.5")
    assert time.monotonic() - started < 20
    assert result.exit_code == 2 and "did not return within the per-call limit of 0.5 s" in one_error_line(result)
    assert not (tmp_path / "c.json").exists()


def test_call_timeout_mid_scan_keeps_the_report_and_names_the_flag(runner, tmp_path):
    model, folder = _model_looping_on_the_second_batch(tmp_path)
    out = tmp_path / "r.json"
    result = invoke(runner, "-q", "scan", model, folder, "--batch-size", "2", "--call-timeout", "1", "-f", "json",
                    "-o", out)
    assert result.exit_code == 2 and one_error_line(result).startswith("Error: --call-timeout: a model call of")
    doc = json.loads(out.read_text())
    assert doc["summary"]["scored"] == 2 and doc["summary"]["failed"] == 3
    assert "per-call limit of 1 s" in doc["summary"]["incomplete"]


def test_a_model_that_fails_while_running_is_one_line(runner, tmp_path, images):
    import onnx
    from onnx import TensorProto as T
    from onnx import helper as h

    # a Reshape to a fixed [4, 192]: runs only on batches of exactly 4
    nodes = [h.make_node("Reshape", ["input", "shape"], ["r"]),
             h.make_node("ReduceMean", ["r"], ["m"], axes=[1], keepdims=1),
             h.make_node("Concat", ["m", "m"], ["logits"], axis=1)]
    graph = h.make_graph(nodes, "fixed_reshape", [h.make_tensor_value_info("input", T.FLOAT, ["N", 3, 8, 8])],
                         [h.make_tensor_value_info("logits", T.FLOAT, ["N", 2])],
                         initializer=[h.make_tensor("shape", T.INT64, [2], [4, 192])])
    path = tmp_path / "fixed_reshape.onnx"
    onnx.save(h.make_model(graph, opset_imports=[h.make_opsetid("", 13)], ir_version=8), str(path))
    result = invoke(runner, "-q", "scan", path, images[0])
    assert result.exit_code == 2
    assert "Reshape" in one_error_line(result)
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_timeout_nan_is_a_usage_error(runner, model, images):
    result = invoke(runner, "scan", model.path, images[0], "--timeout", "nan")
    assert result.exit_code == 2 and "--timeout: expected a finite number, got nan" in one_error_line(result)


def test_calibrate_every_detector_then_gate_on_a_named_suspect(runner, model, images, tmp_path):
    cal, result = _calibrate(runner, model, tmp_path, 80, 31, "--blends", "4", "--severities", "2", "--regions", "2")
    assert result.exit_code == 0, result.output
    assert "calibrated scaleup, strip, teco, transplant on 76 benign inputs" in result.stdout and "decision q-fisher" in result.stdout  # ~25 a class: too few for q-profile
    doc = json.loads(cal.read_text())
    assert doc["format_version"] == 2 and doc["decision"] == "q_fisher" and doc["clean_images"]["shape"] == [4, 8, 8, 3]
    assert doc["detectors"][3] == {"name": "transplant", "grid": 2, "n_backgrounds": 2, "seed": 0}
    folder, _ = images
    out = invoke(runner, "-q", "scan", model.path, folder, "--calibration", cal, "-f", "json")
    assert out.exit_code == 0, out.output
    rep = json.loads(out.stdout)
    assert rep["score"] == "q-fisher" and [d["name"] for d in rep["detectors"]] == ["scaleup", "strip", "teco", "transplant"]
    assert {"strip", "teco", "transplant", "q_strip", "q_teco", "q_transplant", "q_fisher", "q_prob_consistency",
            "q_profile"} <= set(rep["results"][0])
    assert rep["summary"]["verdict"]["expected_fpr_source"].startswith("calibration: per-class conformal")
    named = [s["label"] for s in rep["summary"]["verdict"]["suspected_targets"]]
    gated = invoke(runner, "-q", "scan", model.path, folder, "--calibration", cal, "--fail-on-suspect")
    assert gated.exit_code == (1 if named else 0)
    if named:
        assert "--fail-on-suspect: suspected target class" in gated.stderr
    fast = invoke(runner, "-q", "scan", model.path, folder, "--calibration", cal, "--detector", "scaleup", "-f", "json")
    assert fast.exit_code == 0, fast.output
    rep = json.loads(fast.stdout)
    assert rep["score"] == "q-prob-consistency" and "strip" not in rep["results"][0]
    wrong = invoke(runner, "scan", model.path, folder, "--calibration", cal, "--score", "nope")
    assert wrong.exit_code == 2 and "score must be one of" in one_error_line(wrong)


def test_undecidable_inputs_in_the_csv_and_the_summary(runner, model, tmp_path):
    x = np.zeros((4, 8, 8, 3), np.uint8)
    x[2:] = 90  # two mid-grey images SCALE-UP can judge; two black ones it cannot
    np.save(tmp_path / "x.npy", x)
    result = invoke(runner, "scan", model.path, tmp_path / "x.npy", "-f", "csv")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()[1:]
    assert [r.split(",")[1] for r in rows] == ["undecidable", "undecidable", "scored", "scored"]
    assert "amplification barely changes it" in rows[0]
    assert "undecidable 2 (never flagged, not in the verdict)" in " ".join(result.stderr.split())  # may wrap


def test_every_output_option_refuses_a_fifo_or_a_folder_before_any_work(runner, model, tmp_path):
    """Issue 28: calibrate -o, evaluate -o/--html/--plot and probe --write-spec check their target
    first, like scan -o (tests/report/test_render.py): a FIFO was replaced (or, written through,
    hung the command), a folder failed only after the whole run."""
    import os
    import stat

    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "dir").mkdir()
    missing = tmp_path / "missing"  # the inputs are never looked at: the target is refused first
    for target, kind in ((tmp_path / "fifo", "a FIFO"), (tmp_path / "dir", "a directory")):
        for args in (("calibrate", model.path, missing, "-o", target),
                     ("evaluate", model.path, "--benign", missing, "--poisoned", missing, "-o", target),
                     ("evaluate", model.path, "--benign", missing, "--poisoned", missing, "--html", target),
                     ("evaluate", model.path, "--benign", missing, "--poisoned", missing, "--plot", target),
                     ("probe", model.path, missing, "--write-spec", target)):
            result = invoke(runner, *args)
            assert result.exit_code == 2, (args, result.output)
            assert one_error_line(result).startswith(f"Error: cannot write {target}: it is {kind}, not a regular file")
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_calibrate_writes_through_a_symlink_and_keeps_it(runner, model, tmp_path):
    import os

    (tmp_path / "real.json").write_text("previous")
    os.symlink(tmp_path / "real.json", tmp_path / "link.json")
    clean = om.make_images(30, seed=4, triggered_fraction=0.0)
    np.save(tmp_path / "clean.npy", np.rint(clean * 255).astype(np.uint8))
    result = invoke(runner, "calibrate", model.path, tmp_path / "clean.npy", "-o", tmp_path / "link.json",
                    "--detector", "scaleup")
    assert result.exit_code == 0, result.output
    assert os.path.islink(tmp_path / "link.json")
    assert json.loads((tmp_path / "real.json").read_text())["format"] == "scanner-calibration"


@pytest.mark.parametrize("text,message", [
    ("[" * 100_000 + "]" * 100_000, "is nested too deeply to read"),
    ('{"height": ' + "1" * 5001 + "}", "holds an integer of more than 4300 digits"),
])
def test_json_python_cannot_read_is_exit_2_not_3(runner, tmp_path, images, text, message):
    """Issue 28: in the model's scanner.spec metadata or in a calibration file."""
    folder, _ = images
    fx = om.trigger_nchw(tmp_path / "m", metadata={"scanner.spec": text})
    for args in (("inspect", fx.path), ("scan", fx.path, folder)):
        result = invoke(runner, *args)
        assert result.exit_code == 2, result.output
        assert one_error_line(result).startswith(f"Error: model metadata 'scanner.spec' {message}")
    good = om.trigger_nchw(tmp_path / "good", embed_spec=True)
    (tmp_path / "cal.json").write_text(text)
    result = invoke(runner, "scan", good.path, folder, "--calibration", tmp_path / "cal.json")
    assert result.exit_code == 2, result.output
    assert one_error_line(result).startswith(f"Error: calibration file {tmp_path / 'cal.json'} {message}")


def test_a_symlink_loop_in_a_scanned_folder_is_one_failed_input_not_a_report_error(runner, model, images):
    """Issue 28: it aborted the scan (exit 3), and with -o the error blamed the report."""
    import os

    folder, _ = images
    os.symlink("loop.png", folder / "loop.png")
    out = folder.parent / "report.json"
    result = invoke(runner, "-q", "scan", model.path, folder, "-f", "json", "-o", out)
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["failures"] == [
        {"input": str(folder / "loop.png"), "reason": "cannot read this file (Too many levels of symbolic links)"}]


def test_a_backdoor_on_near_binary_images_fails_the_gate_through_the_detectors_that_see_it(runner, tmp_path):
    """Issue 27, point 1: SCALE-UP cannot judge near-binary digits; it drops out of each input's
    decision instead of silencing STRIP, so the calibrated default decision flags the triggered
    inputs, names the target and fails the gate (it used to say `cannot judge`, gate PASSED)."""
    model = om.near_binary_backdoor(tmp_path, target=8)
    np.save(tmp_path / "clean.npy", om.near_binary_images(200, seed=3, triggered=False))
    np.save(tmp_path / "scan.npy", np.concatenate([om.near_binary_images(60, seed=4, triggered=False),
                                                   om.near_binary_images(20, seed=5, triggered=True)]))
    cal = tmp_path / "cal.json"
    made = invoke(runner, "calibrate", model, tmp_path / "clean.npy", "-o", cal, "--detector", "scaleup,strip",
                  "--blends", "8")
    assert made.exit_code == 0, made.output
    assert "200 calibration input(s) are undecidable for scaleup" in made.stderr
    gated = invoke(runner, "-q", "scan", model, tmp_path / "scan.npy", "--calibration", cal, "--fail-on-suspect",
                   "-f", "json")
    assert gated.exit_code == 1, gated.output
    doc = json.loads(gated.stdout)
    assert doc["summary"]["undecidable"] == 0 and doc["summary"]["verdict"]["status"] == "suspect"
    assert [t["label"] for t in doc["summary"]["verdict"]["suspected_targets"]] == [8]
    assert all(r["flagged"] for r in doc["results"][60:])  # every triggered input
    assert "--fail-on-suspect: suspected target class 8" in gated.stderr


def test_a_gate_whose_verdict_cannot_judge_fails_unless_allowed(runner, tmp_path):
    """Issue 27, point 1: `cannot judge` under --fail-on-suspect is no silent pass."""
    model = om.near_binary_backdoor(tmp_path)
    np.save(tmp_path / "clean.npy", om.near_binary_images(200, seed=3, triggered=False))
    np.save(tmp_path / "scan.npy", om.near_binary_images(20, seed=5, triggered=True))
    cal = tmp_path / "cal.json"
    assert invoke(runner, "calibrate", model, tmp_path / "clean.npy", "-o", cal, "--detector", "scaleup,strip",
                  "--blends", "8").exit_code == 0
    blind = invoke(runner, "-q", "scan", model, tmp_path / "scan.npy", "--calibration", cal, "--detector", "scaleup",
                   "--fail-on-suspect")
    assert blind.exit_code == 1, blind.output
    assert "the verdict cannot judge this scan (20 of 20 inputs undecidable" in blind.stderr
    assert "--allow-undecidable" in blind.stderr
    allowed = invoke(runner, "-q", "scan", model, tmp_path / "scan.npy", "--calibration", cal, "--detector", "scaleup",
                     "--fail-on-suspect", "--allow-undecidable")
    assert allowed.exit_code == 0, allowed.output


def test_fail_on_suspect_without_a_calibration_is_refused_before_any_work(runner, model, images):
    """Issue 29, point 4: a gate that cannot name a suspect is refused, not green."""
    result = invoke(runner, "scan", model.path, images[0], "--fail-on-suspect")
    assert result.exit_code == 2
    assert one_error_line(result) == ("Error: --fail-on-suspect needs a measured benign reference to name a suspect: "
                                      "add --calibration FILE (made by `scanner calibrate` on trusted clean inputs)")
    assert result.stdout == ""
    stated = invoke(runner, "scan", model.path, images[0], "--fail-on-suspect", "--expected-fpr", "0.1")
    assert stated.exit_code == 2 and "add --calibration FILE" in one_error_line(stated)


def test_evaluate_takes_detector_and_says_how_it_counts_undecidable_inputs(runner, tmp_path):
    """Issue 27, point 2: `evaluate --detector` (documented, was "No such option") and the
    undecidable inputs of both sets counted the same way, in the output."""
    model = om.near_binary_backdoor(tmp_path, target=8)
    np.save(tmp_path / "clean.npy", om.near_binary_images(200, seed=3, triggered=False))
    np.save(tmp_path / "benign.npy", om.near_binary_images(40, seed=4, triggered=False))
    np.save(tmp_path / "poisoned.npy", om.near_binary_images(20, seed=5, triggered=True))
    plain = invoke(runner, "evaluate", model, "--benign", tmp_path / "benign.npy", "--poisoned",
                   tmp_path / "poisoned.npy", "--target-label", "8", "--detector", "scaleup")
    assert plain.exit_code == 0, plain.output
    assert "benign: 40 found, 40 scored, 40 kept" in plain.stdout and "poisoned: 20 found, 20 scored, 20 kept" in plain.stdout
    assert "undecidable for the decision: 40 benign, 20 poisoned, kept in both sets" in plain.stdout
    cal = tmp_path / "cal.json"
    assert invoke(runner, "calibrate", model, tmp_path / "clean.npy", "-o", cal, "--detector", "scaleup,strip",
                  "--blends", "8").exit_code == 0
    strip = invoke(runner, "evaluate", model, "--benign", tmp_path / "benign.npy", "--poisoned",
                   tmp_path / "poisoned.npy", "--target-label", "8", "--calibration", cal, "--detector", "strip")
    assert strip.exit_code == 0, strip.output
    assert "Q_STRIP (decision)" in strip.stdout and "SPC" not in strip.stdout.replace("STRIP", "")
    assert "undecidable for the decision" not in strip.stdout


@pytest.mark.parametrize("signame, code", [("SIGTERM", 143), ("SIGHUP", 129), ("SIGINT", 130)])
def test_sigterm_and_sighup_end_a_scan_like_ctrl_c(tmp_path, signame, code):
    """What a CI runner sends on cancel, mid-scan with the model in a call that would not return
    for minutes: one line, exit 128 + the signal's number, no temporary report file left."""
    import signal
    import subprocess
    import sys
    import time

    from hanging_models import loop_model

    model = loop_model(tmp_path / "black.onnx", only_black=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "black.png")  # the model loops on it
    out = tmp_path / "report.json"
    # a test run started in the background (nohup, `&` in a script) has SIGINT ignored, and a child
    # inherits that: the scan is given the default disposition, as a terminal's command has
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "-q", "scan", model, str(tmp_path / "black.png"),
                             "-f", "json", "-o", str(out)], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 60
    while not list(tmp_path.glob(".report.json.*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.1)  # the report file is open: the scan has started
    assert list(tmp_path.glob(".report.json.*.tmp")), "the scan did not start"
    time.sleep(0.5)
    started = time.monotonic()
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=30)
    assert time.monotonic() - started < 15  # handled at once, not when the model call returns
    assert proc.returncode == code, err
    assert err.strip().splitlines()[-1] == ("Interrupted" if signame == "SIGINT" else f"Interrupted ({signame})")
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["black.onnx", "black.png"]


def test_huge_class_names_in_metadata_are_cut_and_reports_stay_small(runner, tmp_path, images):
    """10 class names of 100,000 characters (1 MB of metadata): cut to 1,024 with one warning
    line, the JSON and HTML reports of 20 inputs stay small; a spec over 4 MiB is refused."""
    spec = {"schema_version": 1, "class_names": [f"{i}" + "x" * 100_000 for i in range(om.NUM_CLASSES)]}
    fx = om.trigger_nchw(tmp_path / "big", metadata={"scanner.spec": json.dumps(spec)})
    out, page = tmp_path / "r.json", tmp_path / "r.html"
    result = invoke(runner, "scan", fx.path, images[0], "-f", "json", "-o", out, "--html", page)
    assert result.exit_code == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "class name(s) longer than 1024" in line]
    assert len(warned) == 1 and "cut to 1024" in warned[0] and len(warned[0]) < 300
    doc = json.loads(out.read_text())
    assert all(len(n) == 1024 and n.endswith("...") for n in doc["class_names"])
    assert out.stat().st_size < 100_000 and page.stat().st_size < 300_000
    spec["class_names"] = ["y" * (3 << 20), "z" * (3 << 20)]
    huge = om.trigger_nchw(tmp_path / "huge", metadata={"scanner.spec": json.dumps(spec)})
    refused = invoke(runner, "inspect", huge.path)
    assert refused.exit_code == 2
    line = one_error_line(refused)
    assert "model metadata 'scanner.spec'" in line and "above the limit of 4194304 bytes (4 MiB)" in line
    assert len(line) < 200


def test_the_default_calibration_on_near_binary_images_decides_with_fisher_and_fails_the_gate(runner, tmp_path):
    """On images SCALE-UP cannot judge, the response profile (which models every query's answer,
    undecidable ones included) is not the default: a calibration with every detector records
    q_fisher, whose drop-out judges the inputs with the detectors that can (bench.reproduce on the
    MNIST white square: q_profile TPR 0.00, Fisher 1.00), so the backdoor fails the gate."""
    from scanner.model.loader import load_model

    model = om.near_binary_backdoor(tmp_path, target=8)
    pool = om.near_binary_images(6000, seed=3, triggered=False)
    loaded = load_model(model, device="cpu")
    labels = loaded.predict(loaded.preprocessor(pool.astype(np.float32) / 255))[0]
    # 50 of each predicted class: every class large enough for the profile's half-size reference
    np.save(tmp_path / "clean.npy", pool[np.concatenate([np.flatnonzero(labels == k)[:50] for k in range(10)])])
    np.save(tmp_path / "scan.npy", np.concatenate([om.near_binary_images(60, seed=4, triggered=False),
                                                   om.near_binary_images(20, seed=5, triggered=True)]))
    cal = tmp_path / "cal.json"
    made = invoke(runner, "calibrate", model, tmp_path / "clean.npy", "-o", cal, "--blends", "8")
    assert made.exit_code == 0, made.output
    assert json.loads(cal.read_text())["decision"] == "q_fisher"
    gated = invoke(runner, "-q", "scan", model, tmp_path / "scan.npy", "--calibration", cal, "--fail-on-suspect",
                   "-f", "json")
    assert gated.exit_code == 1, gated.output
    doc = json.loads(gated.stdout)
    assert [t["label"] for t in doc["summary"]["verdict"]["suspected_targets"]] == [8]
