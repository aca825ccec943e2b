"""The command line's conventions and what it shows on a terminal and in a CI log (issue 13):
--version, python -m scanner, -q/-v anywhere, log levels, defaults in --help, the CI line,
streaming, closed pipes, --show, colour and the progress bar."""

import io
import json
import subprocess
import sys

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

import onnx_models as om
from scanner import Scanner
from scanner.cli.app import app
from scanner.decide.verdict import summarize
from scanner.report.render import Format
from scanner.report.stream import ScanWriter
from scanner.report.terminal import ProgressBar, paint, use_colour


@pytest.fixture
def folder(tmp_path):
    x = om.make_images(20, seed=5, triggered_fraction=0.25)
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, img in enumerate(x):
        Image.fromarray(np.rint(img * 255).astype(np.uint8)).save(folder / f"{i:02d}.png")
    (folder / "07b_broken.png").write_text("not an image")
    return folder


def invoke(*args, env=None):
    return CliRunner().invoke(app, [str(a) for a in args], env=env)


def test_version_and_python_m_scanner():
    from scanner import __version__

    assert invoke("--version").stdout.strip() == f"scanner {__version__} (scaleup-scanner)"
    out = subprocess.run([sys.executable, "-m", "scanner", "--version"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == f"scanner {__version__} (scaleup-scanner)"


def test_quiet_and_verbose_after_the_command(model, folder, tmp_path):
    before = invoke("-q", "scan", model.path, folder, "-f", "json", "-o", tmp_path / "a.json")
    after = invoke("scan", model.path, folder, "-f", "json", "-o", tmp_path / "b.json", "-q")
    assert before.exit_code == after.exit_code == 0
    assert "inputs found" not in after.stderr and after.stderr.replace("b.json", "a.json") == before.stderr
    loud = invoke("scan", model.path, folder, "-f", "json", "-o", tmp_path / "c.json")
    assert "inputs found 21, scored 20, failed 1" in loud.stderr
    # a value that looks like -v stays the option's value
    named = invoke("scan", model.path, folder, "--class-names", "-v,b,c,d,e,f,g,h,i,j", "-f", "json", "-q")
    assert named.exit_code == 0, named.output
    assert json.loads(named.stdout)["class_names"][0] == "-v"


def test_an_options_value_spelled_like_v_is_not_moved(model, folder, tmp_path, monkeypatch):
    """``-o -v`` writes the report to a file named ``-v``: the option takes it as its value.
    (With typer 0.28 an isinstance test against click's Option class matched no option, every
    ``-v`` was moved and ``-o`` took the next argument instead.)"""
    monkeypatch.chdir(tmp_path)
    run = invoke("scan", model.path, folder, "-f", "json", "-o", "-v")
    assert run.exit_code == 0, run.output
    assert json.loads((tmp_path / "-v").read_text())["summary"]["inputs_found"] == 21
    assert "INFO: " not in run.stderr


def test_log_levels(model, folder):
    quiet = invoke("scan", model.path, folder, "-f", "json")
    info = invoke("scan", model.path, folder, "-f", "json", "-v")
    debug = invoke("scan", model.path, folder, "-f", "json", "-vv")
    third = invoke("scan", model.path, folder, "-f", "json", "-vvv")
    assert "INFO: " not in quiet.stderr
    assert "INFO: model " in info.stderr and "INFO: scanned 21 inputs" in info.stderr
    assert "DEBUG: " not in info.stderr
    assert "DEBUG: batch of inputs 0-20" in debug.stderr and "STREAM" not in debug.stderr  # Pillow's own debug
    assert "STREAM" in third.stderr


def test_every_option_states_its_default():
    from scanner.cli.support import PANEL_NOTES

    group = typer.main.get_command(app)
    ctx = typer.Context(group)
    for name in group.list_commands(ctx):
        if name == "export":
            continue
        for param in group.get_command(ctx, name).params:
            # duck-typed: typer 0.28 builds its options on its own copy of click
            if param.param_type_name != "option" or param.required or param.name == "help":
                continue
            shown = param.show_default and param.default not in (None, False)
            off_flag = getattr(param, "is_flag", False) and param.default is False  # a flag is off unless given
            in_panel = getattr(param, "rich_help_panel", None) in PANEL_NOTES  # said once, in the panel's note
            assert shown or off_flag or in_panel or "default" in (param.help or ""), (name, param.opts)


def test_csv_has_every_score_column(model, folder):
    out = invoke("-q", "scan", model.path, folder, "-f", "csv")
    head = out.stdout.splitlines()[0].split(",")
    assert head[4:8] == ["spc", "nspc", "prob_consistency", "flagged"]


# -- the CI line ---------------------------------------------------------------------------------
def test_failed_gate_is_one_line_on_stderr_even_with_q(model, folder, tmp_path):
    out = tmp_path / "report.json"
    run = invoke("-q", "scan", model.path, folder, "--max-flagged", "0", "-f", "json", "-o", out, "--expected-fpr", "0.1")
    assert run.exit_code == 1
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines == [f"scanner: gate FAILED (5 flagged > --max-flagged 0); 5 of 20 scored inputs flagged (25.0%), "
                     f"1 failed; report: {out}"]  # an assumed --expected-fpr names no class (issue 29)
    passed = invoke("-q", "scan", model.path, folder, "--max-flagged", "5", "--expected-fpr", "0.9", "-f", "json",
                    "-o", out)
    assert passed.exit_code == 0 and passed.stderr == ""


# -- streaming -----------------------------------------------------------------------------------
def test_on_batch_hands_out_the_whole_result_in_order(model, folder):
    scanner = Scanner(model.path, batch_size=4)
    chunks = []
    result = scanner.scan([folder], on_batch=lambda chunk, first: chunks.append((first, chunk)))
    assert [first for first, _ in chunks] == list(range(0, 21, 4))
    assert [r for _, c in chunks for r in c.records()] == list(result.records())
    assert [f for _, c in chunks for f in c.failure_records()] == result.failure_records()
    plain = Scanner(model.path, batch_size=4).scan([folder])
    assert list(plain.records()) == list(result.records())


@pytest.mark.parametrize("fmt", ["table", "csv", "jsonl"])
def test_rows_leave_with_their_batch_and_match_the_report_after_the_fact(model, folder, fmt):
    from scanner.report.render import render_scan

    scanner = Scanner(model.path, batch_size=4)
    stream = io.StringIO()
    writer = ScanWriter(Format(fmt), stream, scanner.settings(), scanner.detector.score_names)
    writer.start()
    seen = []

    def add(chunk, first):
        writer.add(chunk, first)
        seen.append(stream.getvalue())

    result = scanner.scan([folder], on_batch=add)
    summary = summarize(result)
    writer.finish(result, summary, None)
    assert "00.png" in seen[0] and "19.png" not in seen[0]  # the first batch is out before the last is scored
    after = io.StringIO()
    render_scan(result, summary, None, Format(fmt), after)
    assert stream.getvalue().replace(f"{summary.seconds}", "") == after.getvalue().replace(f"{summary.seconds}", "")
    text = stream.getvalue()
    assert text.index("07.png") < text.index("07b_broken.png") < text.index("08.png")  # failures in input order


def test_closed_pipe_ends_the_scan_quietly(model, tmp_path):
    x = om.make_images(400, seed=3)
    np.save(tmp_path / "many.npy", om.to_bytes(x))
    proc = subprocess.Popen([sys.executable, "-m", "scanner", "scan", str(model.path), str(tmp_path / "many.npy"),
                             "--batch-size", "8", "--max-flagged", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = [proc.stdout.readline() for _ in range(3)]
    proc.stdout.close()
    code = proc.wait(timeout=60)
    err = proc.stderr.read().decode()
    assert b"many.npy[0]" in first[1]
    assert code == 0 and "Traceback" not in err and "Error" not in err, err


# -- a terminal ----------------------------------------------------------------------------------
def test_show_flagged_lists_flagged_and_failed_rows_and_counts_the_rest(model, folder):
    def flag_cells(text):  # the flagged cell of each row (the input's name comes last)
        return [line.split()[-2] for line in text.splitlines()
                if len(line.split()) > 2 and line.split()[-2] in ("yes", "no")]

    run = invoke("-q", "scan", model.path, folder, "--show", "flagged")
    lines = run.stdout.splitlines()
    assert flag_cells(run.stdout) == ["yes"] * 5
    assert any(line.startswith("FAILED  ") for line in lines)
    assert "15 scored input(s) not shown (--show flagged)" in run.stdout
    none = invoke("-q", "scan", model.path, folder, "--show", "none")  # no rows asked for: no hint about them
    assert none.stdout.splitlines()[0].startswith("model ") and "not shown" not in none.stdout
    every = invoke("-q", "scan", model.path, folder)  # not a terminal: every row
    assert len(flag_cells(every.stdout)) == 20


def test_long_input_names_keep_the_table_aligned(model, tmp_path):
    """The name, the one cell of any length, is the last column: a long path pushes nothing."""
    from helpers import write_pngs

    import onnx_models as om

    short, deep = tmp_path / "a", tmp_path / ("very-long-folder-name-" * 4) / "b"
    write_pngs(short, om.make_images(2, seed=1))
    write_pngs(deep, om.make_images(2, seed=2))
    rows = [line for line in invoke("-q", "scan", model.path, short, deep).stdout.splitlines()
            if line.split() and line.split()[-2:-1] in (["yes"], ["no"])]
    assert len(rows) == 4
    assert len({line.rindex(" " + line.split()[-1]) for line in rows}) == 1  # every name starts in one column


def test_summary_lines_are_short_and_start_with_the_status(model, folder):
    out = invoke("-q", "scan", model.path, folder, "--show", "none").stdout
    assert max(len(line) for line in out.splitlines()) < 100
    verdict = [line for line in out.splitlines() if line.startswith("verdict: ")]
    assert verdict and verdict[0].startswith("verdict: no reference: ")  # no calibration: the status first


class _Tty(io.StringIO):
    def isatty(self):
        return True


def test_colour_only_on_a_terminal_and_never_with_no_color(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert use_colour(_Tty()) and not use_colour(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour(_Tty())
    assert paint("gate: FAILED", "red", True) == "\x1b[31mgate: FAILED\x1b[0m"
    assert paint("gate: FAILED", "red", False) == "gate: FAILED"


def test_progress_bar_shows_done_total_rate_elapsed_and_eta():
    stream = _Tty()
    bar = ProgressBar("scanning", stream)
    bar.started -= 2.0
    bar.update(500, 2000, force=True)
    text = bar.text()
    assert "500/2,000" in text and "25%" in text and "img/s" in text and "elapsed 0:02" in text and "ETA 0:0" in text
    bar.clear()
    assert stream.getvalue().endswith("\r\x1b[K")
