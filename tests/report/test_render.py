"""Rendering: every format from one scan, the JSON schema's keys in order, the summary block."""

import csv
import io
import json

import numpy as np
import pytest

import onnx_models as om
from scanner import Scanner
from scanner.decide.verdict import check_gate, summarize
from scanner.inputs.find import InputSet, MemoryArray
from scanner.report.render import Format, render_scan, report_header, summary_lines

HEADER_KEYS = ["schema_version", "kind", "scanner_version", "model", "model_sha256", "spec", "spec_sources", "output",
               "batch_mode", "batch_note", "execution_provider", "scales", "detectors", "threshold", "score", "calibration",
               "class_names", "summary", "gate", "warnings"]
RECORD_KEYS = ["input", "predicted_label", "predicted_class", "spc", "nspc", "prob_consistency", "scaled_labels",
               "flagged", "undecidable"]


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
                                    "flagged_per_class", "verdict", "seconds", "incomplete", "undecidable"]
    assert doc["gate"] == {"max_flagged": 0, "max_flagged_rate": None, "fail_on_suspect": False,
                           "allow_undecidable": False, "passed": False,
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
    assert rows[0] == ["input", "status", "predicted_label", "predicted_class", "spc", "nspc", "prob_consistency", "flagged",
                       "label_x3", "label_x5", "label_x7", "label_x9", "label_x11", "reason"]
    assert len(rows) == 1 + 24 and rows[1][0] == "array[0]" and rows[1][1] == "scored"


def test_table_and_summary_lines(scanned):
    result, summary, gate = scanned
    text = render(scanned, Format.table)
    assert text.splitlines()[0].split() == ["label", "SPC", "labels", "at", "3,5,7,9,11", "flagged", "input"]
    lines = summary_lines(result.settings, summary, gate)
    assert "scales 3,5,7,9,11; flagged when SPC >= 0.5" in lines  # the model line (a long path) may wrap
    assert lines[-1].startswith("gate: FAILED (") and text.rstrip().endswith(lines[-1])
    flagged = int(result.scores.flagged.sum())
    assert any(line.startswith("inputs found ") and f"flagged {flagged} ({flagged / 24:.1%})" in line for line in lines)
    assert all(len(line) < 100 for line in lines)


def test_header_is_settings_summary_and_gate(scanned):
    result, summary, gate = scanned
    head = report_header(result, summary, gate)
    assert head["summary"] == summary.to_dict() and head["gate"] == gate.to_dict()
    assert head["scales"] == [3, 5, 7, 9, 11] and np.isclose(head["threshold"], 0.5)


# -- output hygiene and safe writing (issue 12, cases 1, 6, 9) -------------------------------
def test_names_are_shown_safely_in_table_and_csv(tmp_path):
    import os

    from scanner.report.render import csv_text, display_name

    name = os.fsdecode(b"bad\xff\nname\r.png")
    assert display_name(name) == "bad\\xff\\nname\\r.png"
    assert display_name("caf\u00e9 \x1b[31m.png") == "caf\u00e9 \\x1b[31m.png"
    assert [csv_text(t) for t in ("=1+1", "+x", "-x", "@SUM(A1)", "ok.png", None)] == [
        "'=1+1", "'+x", "'-x", "'@SUM(A1)", "ok.png", ""]


def test_scan_of_badly_named_files_writes_every_format(tmp_path, images, monkeypatch):
    import os

    from helpers import write_pngs
    from scanner.cli.app import app
    from typer.testing import CliRunner

    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    folder = write_pngs(tmp_path / "imgs", images[:2])
    os.rename(folder / "img_000.png", os.fsencode(folder) + b"/=bad\xff\nname.png")
    monkeypatch.chdir(folder)  # relative names: the first cell starts with "="
    for fmt in ("table", "csv", "json", "jsonl"):
        out = tmp_path / f"r.{fmt}"
        result = CliRunner().invoke(app, ["-q", "scan", str(fx.path), os.fsdecode(b"=bad\xff\nname.png"), "img_001.png",
                                          "-f", fmt, "-o", str(out)])
        assert result.exit_code == 0, result.output
        text = out.read_text(encoding="utf-8")
        assert "\nname.png" not in text and "name.png" in text  # the newline in the name is escaped
        if fmt == "csv":
            row = next(r for r in csv.reader(io.StringIO(text)) if "name.png" in r[0])
            assert row[0] == "'=bad\\xff\\nname.png"


def test_a_failed_run_leaves_the_previous_report(tmp_path):
    from scanner.cli.app import app
    from typer.testing import CliRunner

    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"not a png")
    out = tmp_path / "report.json"
    out.write_text("previous")
    for extra in ([], ["--strict"]):
        result = CliRunner().invoke(app, ["-q", "scan", str(fx.path), str(tmp_path / "junk"), "-f", "json", "-o", str(out),
                                          *extra])
        assert result.exit_code == 2
        assert out.read_text() == "previous"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".report")] == []


def test_unwritable_report_is_one_line(tmp_path):
    from scanner.cli.app import app
    from typer.testing import CliRunner

    fx = om.trigger_nchw(tmp_path, embed_spec=True)
    Image_dir = tmp_path / "imgs"
    from helpers import write_pngs
    write_pngs(Image_dir, om.make_images(2))
    result = CliRunner().invoke(app, ["-q", "scan", str(fx.path), str(Image_dir), "-o", "/proc/version"])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines()[-1].startswith("Error: cannot write /proc/version")


# -- report targets (issue 28): regular files only, links followed, checked before the scan --------
def _scan_to(tmp_path, *args):
    from scanner.cli.app import app
    from typer.testing import CliRunner

    fx = om.trigger_nchw(tmp_path / "model", embed_spec=True)
    from helpers import write_pngs
    folder = write_pngs(tmp_path / "imgs", om.make_images(2))
    return CliRunner().invoke(app, ["-q", "scan", str(fx.path), str(folder), *map(str, args)])


def _special_files(tmp_path):
    """A FIFO, a directory and (where this user may make one) a character device like /dev/null."""
    import os
    import stat

    (tmp_path / "special").mkdir()
    os.mkfifo(tmp_path / "special" / "fifo")
    (tmp_path / "special" / "dir").mkdir()
    out = {"fifo": "a FIFO", "dir": "a directory"}
    try:
        os.mknod(tmp_path / "special" / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
        out["null"] = "a character device"
    except (PermissionError, OSError):
        pass
    return {tmp_path / "special" / name: kind for name, kind in out.items()}


@pytest.mark.parametrize("option", ["-o", "--html"])
def test_a_report_target_that_is_not_a_regular_file_is_refused_before_the_scan(tmp_path, option):
    import os
    import stat

    for target, kind in _special_files(tmp_path).items():
        before = os.lstat(target)
        # an input that does not exist: the report target is refused first, before any input is looked at
        result = _scan_to(tmp_path, tmp_path / "missing", option, target)
        assert result.exit_code == 2, (target, result.output)
        line = result.stderr.strip().splitlines()[-1]
        assert line == (f"Error: cannot write {target}: it is {kind}, not a regular file (reports and output "
                        "files are written to regular files only)"), line
        after = os.lstat(target)  # never replaced: the same node, of the same kind
        assert (after.st_ino, stat.S_IFMT(after.st_mode)) == (before.st_ino, stat.S_IFMT(before.st_mode))
    assert not [p for p in (tmp_path / "special").iterdir() if p.name.startswith(".")]  # no temporary file left


def test_a_report_through_a_symlink_writes_its_target_and_keeps_the_link(tmp_path):
    import os

    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "real.json").write_text("previous")
    os.symlink(tmp_path / "reports" / "real.json", tmp_path / "link.json")
    result = _scan_to(tmp_path, "-f", "json", "-o", tmp_path / "link.json")
    assert result.exit_code == 0, result.output
    assert os.path.islink(tmp_path / "link.json")
    assert json.loads((tmp_path / "reports" / "real.json").read_text())["summary"]["scored"] == 2
    os.symlink("loop.json", tmp_path / "loop.json")
    result = _scan_to(tmp_path, "-o", tmp_path / "loop.json")
    assert result.exit_code == 2 and "cannot write" in result.stderr and "symbolic links" in result.stderr


def test_report_write_errors_name_the_report_and_other_errors_stay_theirs(tmp_path, monkeypatch):
    import errno

    from scanner.errors import ScannerError
    from scanner.report import common
    from scanner.report.render import open_report

    out = tmp_path / "r.txt"
    with pytest.raises(OSError, match="an input's own error") as caught:  # not blamed on the report
        with open_report(out, None) as fh:
            fh.write("partial")
            raise OSError(errno.ELOOP, "an input's own error")
    assert not isinstance(caught.value, ScannerError) and not out.exists()

    class Full(io.StringIO):
        def write(self, text):
            raise OSError(errno.ENOSPC, "No space left on device")

    real = common.os.fdopen
    monkeypatch.setattr(common.os, "fdopen", lambda fd, *a, **k: (real(fd).close(), Full())[1])
    with pytest.raises(ScannerError, match=f"cannot write {out}: No space left on device"):
        with open_report(out, None) as fh:
            fh.write("text")
    assert not out.exists() and list(tmp_path.iterdir()) == []
