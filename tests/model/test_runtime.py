"""ONNX Runtime itself: the two-package conflict and the provider a session really gets."""

from pathlib import Path

import pytest

import onnx_models as om
from scanner import Scanner
from scanner.errors import ModelLoadError


def test_both_onnxruntime_packages_installed_is_detected(tmp_path):
    from scanner.model.runtime import check_runtime, runtime_distributions

    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime_gpu-1.31.1.dist-info").mkdir()
    assert runtime_distributions(tmp_path) == {"onnxruntime_gpu"}
    check_runtime(tmp_path)  # one runtime: fine
    (tmp_path / "onnxruntime-1.20.0.dist-info").mkdir()
    with pytest.raises(ModelLoadError, match="pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"):
        check_runtime(tmp_path)


def test_either_runtime_alone_is_accepted(tmp_path):
    from scanner.model.runtime import check_runtime, runtime_distributions

    (tmp_path / "onnxruntime-1.31.1.dist-info").mkdir()
    assert runtime_distributions(tmp_path) == {"onnxruntime"}
    check_runtime(tmp_path)  # macOS and ARM get onnxruntime from the markers: fine


@pytest.mark.parametrize("system, machine, package", [
    ("linux", "x86_64", "onnxruntime-gpu"), ("win32", "AMD64", "onnxruntime-gpu"),
    ("darwin", "arm64", "onnxruntime"), ("darwin", "x86_64", "onnxruntime"),
    ("linux", "aarch64", "onnxruntime"), ("win32", "ARM64", "onnxruntime"),
])
def test_the_runtime_package_follows_the_dependency_markers(system, machine, package):
    """runtime_package (the fix the error messages print) and pyproject's markers agree, and on
    every platform exactly one of the two runtimes is a dependency."""
    tomllib = pytest.importorskip("tomllib")
    from packaging.requirements import Requirement
    from scanner.model.runtime import runtime_package

    assert runtime_package(system, machine) == package
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    deps = [Requirement(d) for d in tomllib.loads(pyproject.read_text())["project"]["dependencies"]]
    env = {"sys_platform": system, "platform_machine": machine}
    chosen = [d.name for d in deps if d.name.startswith("onnxruntime") and (d.marker is None or d.marker.evaluate(env))]
    assert chosen == [package]


def test_runtime_check_reads_the_installed_folder():
    from scanner.model.runtime import runtime_distributions

    # this environment has exactly one of the two (CI installs onnxruntime-gpu only)
    assert len(runtime_distributions()) == 1


def test_auto_device_never_fails_without_a_gpu(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    scanner = Scanner(fx.path, device="auto")
    assert scanner.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert scanner.provider == scanner.model.session.get_providers()[0]
