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


def run_action(tmp_path, **inputs):
    env = {**os.environ, "SCANNER": f"{sys.executable} -m scanner",
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
                     args="--scales 3,5,7 --expected-fpr 0.9")
    assert run.returncode == 0, run.stderr
    out = outputs(tmp_path)
    assert out["exit-code"] == "0"
    doc = json.loads((tmp_path / out["json-report"]).read_text())
    assert doc["scales"] == [3, 5, 7] and doc["gate"]["passed"] is True


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
        if name not in ("artifact-name", "install"):
            assert f"${{{{ inputs.{name} }}}}" in scan["env"].values(), name


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
