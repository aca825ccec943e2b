"""CI's view of the README (.ci/readme_commands.py) and of the dependency floors (.ci/floors.py):
CI runs exactly the README's two set-up commands, and the floor step pins every range's floor."""

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / ".ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_holds_exactly_the_two_setup_commands():
    main, tests = _load("readme_commands").setup_commands((ROOT / "README.md").read_text(encoding="utf-8"))
    assert main.startswith("pip install ") and "scanner scan samples/model.onnx" in main
    assert "[test]" not in main  # the main job runs on the base install alone
    assert tests.startswith('pip install -e ".[test]"') and "pytest" in tests


@pytest.mark.parametrize("readme", [
    "# x\n## Quick start\n```bash\none\n```\n## Next\n",                                   # one command
    "# x\n## Quick start\n```bash\none\n```\n```bash\ntwo\nthree\n```\n## Next\n",         # a two-line block
    "# x\n## Start\n```bash\none\n```\n```bash\ntwo\n```\n## Next\n",                      # no Quick start
])
def test_a_readme_of_another_shape_is_refused(readme):
    with pytest.raises(ValueError):
        _load("readme_commands").setup_commands(readme)


def test_floors_pin_each_lower_bound_and_keep_markers():
    floors = _load("floors").floors(["numpy>=1.24.2", "typer>=0.16,<0.29", "onnxruntime>=1.18; sys_platform == 'darwin'"])
    assert floors == ["numpy==1.24.2", "typer==0.16", "onnxruntime==1.18; sys_platform == 'darwin'"]
    with pytest.raises(ValueError):
        _load("floors").floors(["numpy"])
