"""The documentation (issue 29, points 1 and 2): a short README, a site whose command-line reference
and example outputs are generated (docs/gen.py) and cannot drift, the benchmark's tables included
as they are, and no machine-specific paths."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _gen():
    spec = importlib.util.spec_from_file_location("docs_gen", DOCS / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pages():
    skip = {DOCS / "snippets", DOCS / "examples"}
    return [p for p in DOCS.rglob("*.md") if not any(s in p.parents for s in skip)]


def test_readme_is_short_and_says_the_three_things():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 160
    heads = re.findall(r"^## (.+)$", text, re.M)
    assert heads[0] == "Quick start" and {"Install", "Audit a model you received", "Gate a model in CI",
                                           "Use the library", "Documentation"} <= set(heads)
    assert "docs/reference/cli.md" in text and "../shared" not in text


def test_the_readme_output_is_the_generated_one():
    gen = _gen()
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    snippet = (DOCS / "snippets" / "scan-calibrated.txt").read_text(encoding="utf-8")
    assert f"```text\n{snippet.rstrip()}\n```" in text
    assert gen.fill_outputs(text, {gen.SNIPPETS / "scan-calibrated.txt": snippet}) == text
    assert "verdict: suspected target class 0 (airplane)" in snippet


def test_cli_reference_is_the_apps_help():
    """What `python docs/gen.py --check` checks for the reference (CI checks every output)."""
    gen = _gen()
    text = (DOCS / "reference" / "cli.md").read_text(encoding="utf-8")
    if f"typer {gen.typer_version()})" not in text:  # e.g. CI's floor step, at typer 0.16
        pytest.skip(f"the reference was rendered by another typer than {gen.typer_version()}")
    assert text == gen.cli_reference()
    for command in ("scan", "calibrate", "evaluate", "inspect", "probe", "export"):
        assert f"## `scanner {command}`" in gen.cli_reference()


def test_the_check_fails_on_a_stale_file(tmp_path, monkeypatch):
    gen = _gen()
    monkeypatch.setattr(gen, "generated", lambda: {tmp_path / "x.md": "new\n"})
    (tmp_path / "x.md").write_text("old\n")
    assert gen.main(["--check"]) == 1 and (tmp_path / "x.md").read_text() == "old\n"
    assert gen.main([]) == 0 and (tmp_path / "x.md").read_text() == "new\n"
    assert gen.main(["--check"]) == 0


def test_no_command_output_is_pasted_by_hand():
    """A shown terminal session (`$ scanner ...`) is a generated snippet, included, never pasted."""
    for page in _pages():
        text = page.read_text(encoding="utf-8")
        pasted = re.findall(r"^\$ scanner .*$", text, re.M)
        assert not pasted, (page, pasted)
    includes = [m for p in _pages() for m in re.findall(r'^--8<-- "([^"]+)"$', p.read_text(encoding="utf-8"), re.M)]
    assert all((ROOT / inc).is_file() for inc in includes), includes
    assert any(i.startswith("bench/results/") for i in includes)  # results pulled, not copied
    assert {f"docs/snippets/{n}.txt" for n in _gen().EXAMPLES} <= set(includes)


def test_no_machine_paths_in_docs_or_results():
    files = [ROOT / "README.md", *_pages(), *(ROOT / "bench" / "results").glob("*.md")]
    for path in files:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"(?<![\w.])/(work|home|tmp|Users)/", text), path
        assert "docs/report-html.png" not in text


def test_docs_tooling_is_an_extra_and_ci_builds_the_site():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not any("mkdocs" in d for d in project["dependencies"])
    assert any(d.startswith("mkdocs-material") for d in project["optional-dependencies"]["docs"])
    ci = (ROOT / ".ci" / "run").read_text()
    assert "docs/gen.py --check" in ci and "mkdocs\" build --strict" in ci and '".[docs]"' in ci
    nav = (ROOT / "mkdocs.yml").read_text()
    for page in _pages():
        assert str(page.relative_to(DOCS)) in nav, page


def test_the_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    run = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
                         cwd=ROOT, capture_output=True, text=True, env={"NO_MKDOCS_2_WARNING": "1", "PATH": ""})
    assert run.returncode == 0, run.stderr[-3000:]


def test_the_terminal_picture_is_the_scans_own_output(tmp_path):
    """docs/gen.py --screenshots draws terminal.png from the scan's stdout on a pseudo-terminal:
    colours and flagged rows only, as a user sees them."""
    import shutil

    gen = _gen()
    shutil.copytree(ROOT / "samples", tmp_path / "samples")
    text = gen.terminal_capture(gen.TERMINAL, tmp_path)
    assert "\x1b[31m" in text and "gate: FAILED (10 flagged > --max-flagged 3)" in text
    assert "10 scored input(s) not shown (--show flagged)" in text and "samples/clean/" not in text
    page = gen.ansi_page("scanner scan <x>", "\x1b[31mverdict: <b>\x1b[0m done")
    assert "<span style='color:#ff6b6b'>verdict: &lt;b&gt;</span> done" in page and "$ scanner scan &lt;x&gt;" in page
