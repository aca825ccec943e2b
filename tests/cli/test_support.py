"""One help style for every command (issue 29, point 3): plain text, option panels, upper-case
metavars, one default notation, -q/-v listed."""

import re

import pytest
import typer
from typer.testing import CliRunner

from scanner.cli.app import app

COMMANDS = ("scan", "calibrate", "evaluate", "inspect", "probe")


def help_text(*args):
    result = CliRunner().invoke(app, [*args, "--help"], terminal_width=100)
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_is_plain_with_upper_case_metavars_and_one_default_notation(command):
    text = help_text(command)
    assert not set("╭╮╰╯│─") & set(text)  # no Rich boxes
    assert "(default" not in text and "[default: " in text.replace("\n", " ")
    usage = text.splitlines()[0]
    assert "{" not in usage and "MODEL" in usage, usage  # scanner scan [OPTIONS] MODEL PATHS...
    metavars = re.findall(r"^\s+(?:-\w, )?--[\w-]+ ([^\s\[/]\S*)(?=\s{2}|$)", text, re.M)
    assert metavars and all(m == m.upper() or "x" in m for m in metavars), metavars  # HxW is the one mixed case
    assert "<" not in "".join(metavars)
    assert "-q, --quiet" in text and "-v, --verbose" in text  # the group's, accepted after the command
    assert "Preprocessing:" in text and text.count("else guessed") == 1  # said once, in the panel's note


def test_scan_help_shows_its_option_panels():
    text = help_text("scan")
    heads = [line for line in text.splitlines() if re.fullmatch(r"[A-Z][\w ]*:", line)]
    assert heads == ["Arguments:", "Options:", "CI gate:", "Scaling out:", "Preprocessing:", "Output:"]
    gate = text.split("CI gate:")[1].split("Scaling out:")[0]
    assert "--max-flagged" in gate and "--fail-on-suspect" in gate and "--engine" not in gate


def test_export_help_has_the_same_style():
    pytest.importorskip("exporters")
    text = help_text("export")
    assert not set("╭╮╰╯│") & set(text) and text.startswith("Usage: ")
    assert "--output FILE" in text and "-q, --quiet" in text
