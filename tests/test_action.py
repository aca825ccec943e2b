"""The GitHub Actions composite action (action.yml): its scan script, run here as the runner would."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import onnx_models as om
from helpers import write_pngs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def case(tmp_path):
    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    a = write_pngs(tmp_path / "a", om.make_images(12, seed=3, triggered_fraction=0.25))
    b = write_pngs(tmp_path / "b", om.make_images(8, seed=4))
    return fx, a, b


def _this_checkout() -> str:
    """PYTHONPATH that imports this checkout's scanner whatever the working directory (an
    editable install of another checkout would otherwise win in a subprocess)."""
    return os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])


def run_action(tmp_path, **inputs):
    env = {**os.environ, "SCANNER": f"{sys.executable} -m scanner", "PYTHONPATH": _this_checkout(),
           "GITHUB_OUTPUT": str(tmp_path / "output"), "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")}
    env.update({f"INPUT_{k.upper()}": str(v) for k, v in inputs.items()})
    return subprocess.run(["bash", str(ROOT / "action" / "scan.sh")], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def outputs(tmp_path):
    return dict(line.split("=", 1) for line in (tmp_path / "output").read_text().splitlines())


def test_failed_gate_keeps_both_reports_and_records_exit_1(case, tmp_path):
    fx, a, b = case
    run = run_action(tmp_path, model=fx.path, paths=f"{a}\n{b}", max_flagged=0, report_dir="reports")
    assert run.returncode == 0, run.stderr  # the action's last step fails on the recorded code
    out = outputs(tmp_path)
    assert out["exit-code"] == "1"
    doc = json.loads((tmp_path / out["json-report"]).read_text())
    assert doc["summary"]["inputs_found"] == 20 and doc["gate"]["passed"] is False
    page = (tmp_path / out["html-report"]).read_text()
    assert page.startswith("<!DOCTYPE html>") and "gate: FAILED" in page
    summary = (tmp_path / "summary.md").read_text()
    flagged = doc["summary"]["flagged"]
    assert "gate failed (exit 1)" in summary and f"scanner: gate FAILED ({flagged} flagged > --max-flagged 0)" in summary


def test_passing_scan_and_extra_args(case, tmp_path):
    fx, a, _ = case
    run = run_action(tmp_path, model=fx.path, paths=a, max_flagged_rate="0.5", strict="true",
                     args="--scales 3,5,7")
    assert run.returncode == 0, run.stderr
    out = outputs(tmp_path)
    assert out["exit-code"] == "0"
    doc = json.loads((tmp_path / out["json-report"]).read_text())
    assert doc["scales"] == [3, 5, 7] and doc["gate"]["passed"] is True


def test_fail_on_suspect_without_a_calibration_is_exit_2_not_green(case, tmp_path):
    """Issue 29, point 4: a workflow that forgets its calibration input fails, it is not green forever."""
    fx, a, _ = case
    run = run_action(tmp_path, model=fx.path, paths=a, fail_on_suspect="true")
    assert outputs(tmp_path)["exit-code"] == "2"
    assert "Error: --fail-on-suspect needs a measured benign reference" in run.stderr
    assert "could not scan (exit 2)" in (tmp_path / "summary.md").read_text()


def test_fail_on_suspect_with_a_calibration_gates_on_the_verdict(case, tmp_path):
    import numpy as np

    fx, a, _ = case
    np.save(tmp_path / "clean.npy", om.to_bytes(om.make_images(200, seed=11, triggered_fraction=0.0)).astype(np.uint8))
    made = subprocess.run([sys.executable, "-m", "scanner", "-q", "calibrate", str(fx.path), str(tmp_path / "clean.npy"),
                           "-o", str(tmp_path / "cal.json"), "--detector", "scaleup"], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": _this_checkout()})
    assert made.returncode == 0, made.stderr
    run = run_action(tmp_path, model=fx.path, paths=a, calibration=tmp_path / "cal.json", fail_on_suspect="true",
                     allow_undecidable="true")
    assert run.returncode == 0, run.stderr
    doc = json.loads((tmp_path / outputs(tmp_path)["json-report"]).read_text())
    assert doc["gate"]["fail_on_suspect"] is True and doc["gate"]["allow_undecidable"] is True
    named = [t["label"] for t in doc["summary"]["verdict"]["suspected_targets"]]
    assert outputs(tmp_path)["exit-code"] == ("1" if named else "0")


def test_unusable_model_is_exit_2(tmp_path):
    (tmp_path / "bad.onnx").write_bytes(b"not a model")
    (tmp_path / "x.png").write_bytes(b"")
    run = run_action(tmp_path, model="bad.onnx", paths="x.png")
    assert outputs(tmp_path)["exit-code"] == "2"
    assert "Error: " in run.stderr


def test_action_yml_runs_the_script_with_every_input():
    text = (ROOT / "action.yml").read_text()
    assert "using: composite" in text and 'bash "${{ github.action_path }}/action/scan.sh"' in text
    assert "actions/upload-artifact@v4" in text
    yaml = pytest.importorskip("yaml")
    doc = yaml.safe_load(text)
    assert {"model", "paths", "calibration", "max-flagged", "max-flagged-rate", "strict"} <= set(doc["inputs"])
    scan = next(step for step in doc["runs"]["steps"] if step.get("id") == "scan")
    for name in doc["inputs"]:
        if name not in ("artifact-name", "install", "python-version", "runtime"):  # the install steps' inputs
            assert f"${{{{ inputs.{name} }}}}" in scan["env"].values(), name


def test_paths_take_spaces_and_globs(case, tmp_path):
    """Issue 29, point 7: one path per line, spaces kept; globs (** too) expanded by the action."""
    import shutil

    fx, a, b = case
    spaced = tmp_path / "incoming images" / "day 1"
    shutil.copytree(a, spaced)
    deep = tmp_path / "stream" / "x" / "y"
    shutil.copytree(b, deep)
    run = run_action(tmp_path, model=fx.path, paths=f"  {spaced}  \n\n{tmp_path}/stream/**/img_00[0-3].png\n")
    assert run.returncode == 0, run.stderr
    doc = json.loads((tmp_path / outputs(tmp_path)["json-report"]).read_text())
    names = [r["input"] for r in doc["results"]] + [f["input"] for f in doc["failures"]]
    assert len(names) == 12 + 4 and doc["summary"]["failed"] == 0
    assert sum(str(spaced) in n for n in names) == 12 and sum("/stream/x/y/img_00" in n for n in names) == 4
    nothing = run_action(tmp_path, model=fx.path, paths=f"{tmp_path}/none-*.png")  # matches nothing: stays
    assert outputs(tmp_path)["exit-code"] == "2" and "none-*.png" in nothing.stderr


def test_action_sets_up_python_with_a_pip_cache_and_no_gpu_wheel(tmp_path):
    """Issue 29, point 7: the action sets up Python, caches pip's downloads and installs the
    package's run-time dependencies with the CPU runtime (not the 255 MB onnxruntime-gpu)."""
    sys.path.insert(0, str(ROOT / "action"))
    try:
        from requirements import requirements
    finally:
        sys.path.pop(0)
    text = (ROOT / "action.yml").read_text()
    assert "actions/setup-python@" in text and "actions/cache@" in text and "~/.cache/pip" in text
    assert "--no-deps" in text and "action/requirements.py" in text and "SCALE-UP backdoor" not in text
    cpu, gpu = requirements("cpu"), requirements("gpu")
    assert cpu[0].startswith("onnxruntime>=") and gpu[0].startswith("onnxruntime-gpu>=")
    assert not any("onnxruntime-gpu" in r for r in cpu) and cpu[1:] == gpu[1:]
    assert any(r.startswith("typer") for r in cpu) and not any(";" in r for r in cpu)


def test_the_action_sets_the_per_call_watchdog(tmp_path):
    """action.yml passes call-timeout (default auto) on every scan; a model that never returns
    is then exit 2 with both reports' reason on stderr, not a job that hangs until it is killed."""
    from hanging_models import loop_model

    doc_text = (ROOT / "action.yml").read_text()
    assert "default: auto" in doc_text.split("call-timeout:")[1].split("timeout:")[0]
    model = loop_model(tmp_path / "loop.onnx", only_black=False)
    write_pngs(tmp_path / "a", om.make_images(2, seed=3))
    run = run_action(tmp_path, model=model, paths="a", call_timeout="0.5")
    assert outputs(tmp_path)["exit-code"] == "2"
    assert "--call-timeout 0.5" in run.stdout and "per-call limit of 0.5 s" in run.stderr
