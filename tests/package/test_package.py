"""The package as a whole: importing and scanning never import torch."""

import subprocess
import sys




def test_importing_and_scanning_never_imports_torch(tmp_path):
    code = (
        "import sys, numpy as np, onnx\n"
        "from onnx import helper as h, TensorProto as T\n"
        "g = h.make_graph([h.make_node('ReduceMean', ['x'], ['m'], axes=[2, 3], keepdims=0)], 'g',\n"
        "    [h.make_tensor_value_info('x', T.FLOAT, ['N', 3, 8, 8])], [h.make_tensor_value_info('m', T.FLOAT, ['N', 3])])\n"
        f"p = r'{tmp_path / 'm.onnx'}'\n"
        "onnx.save(h.make_model(g, opset_imports=[h.make_opsetid('', 13)], ir_version=8), p)\n"
        "import scanner, scanner.cli\n"
        "from scanner import Scanner\n"
        "Scanner(p, device='cpu').score_arrays(np.random.default_rng(0).random((4, 8, 8, 3), dtype=np.float32))\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_the_version_is_written_once_and_the_changelog_agrees():
    """Issue 29, point 7: pyproject reads the version from scanner/_version.py; the CHANGELOG's top
    section is that version (``- unreleased`` for a .dev version, else dated); CITATION.cff names
    the last dated (released) section."""
    import re
    import tomllib
    from pathlib import Path

    from scanner import __version__

    root = Path(__file__).resolve().parents[2]
    project = tomllib.loads((root / "pyproject.toml").read_text())
    assert "version" not in project["project"] and project["project"]["dynamic"] == ["version"]
    assert project["tool"]["setuptools"]["dynamic"]["version"] == {"attr": "scanner._version.__version__"}
    sections = re.findall(r"^## (\S+) - (\S+)", (root / "CHANGELOG.md").read_text(), re.M)
    top_version, top_date = sections[0]
    release = re.fullmatch(r"(\d+\.\d+\.\d+)(\.dev\d+)?", __version__)
    assert release, __version__
    assert top_version == release.group(1)
    assert top_date == "unreleased" if release.group(2) else re.fullmatch(r"\d{4}-\d\d-\d\d", top_date)
    released = [v for v, d in sections if d != "unreleased"]
    cff = re.search(r"^version: (\S+)", (root / "CITATION.cff").read_text(), re.M).group(1)
    assert cff == released[0]
