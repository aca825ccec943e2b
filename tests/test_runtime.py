"""ONNX Runtime itself: the two-package conflict and the provider a session really gets."""

import pytest

import onnx_models as om
from scanner import Scanner
from scanner.errors import ModelLoadError


def test_both_onnxruntime_packages_installed_is_detected(tmp_path):
    from scanner.runtime import check_runtime, runtime_distributions

    (tmp_path / "onnxruntime").mkdir()
    (tmp_path / "onnxruntime_gpu-1.31.1.dist-info").mkdir()
    assert runtime_distributions(tmp_path) == {"onnxruntime_gpu"}
    check_runtime(tmp_path)  # one runtime: fine
    (tmp_path / "onnxruntime-1.20.0.dist-info").mkdir()
    with pytest.raises(ModelLoadError, match="pip uninstall -y onnxruntime onnxruntime-gpu && pip install onnxruntime-gpu"):
        check_runtime(tmp_path)


def test_runtime_check_reads_the_installed_folder():
    from scanner.runtime import runtime_distributions

    # this environment has exactly one of the two (CI installs onnxruntime-gpu only)
    assert len(runtime_distributions()) == 1


def test_auto_device_never_fails_without_a_gpu(tmp_path):
    fx = om.trigger_nchw(tmp_path)
    scanner = Scanner(fx.path, device="auto")
    assert scanner.provider in ("CPUExecutionProvider", "CUDAExecutionProvider")
    assert scanner.provider == scanner.model.session.get_providers()[0]
