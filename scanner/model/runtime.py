"""ONNX Runtime itself: is it installed sanely, which provider does a session really get.

The only module besides :mod:`scanner.model.loader` that imports onnxruntime. It knows nothing about
models or images: bytes or a path in, a session and the provider actually in use out.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import tempfile
from pathlib import Path

from ..errors import ModelLoadError

log = logging.getLogger("scanner")

_RUNTIME_DISTRIBUTIONS = ("onnxruntime", "onnxruntime_gpu")
CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"


def runtime_distributions(site_dir: str | Path | None = None) -> set[str]:
    """Which of onnxruntime / onnxruntime-gpu have their metadata in ``site_dir``.

    ``site_dir`` defaults to the folder that holds the ``onnxruntime`` package (found without
    importing it). The two distributions break each other exactly when they share that
    folder, and listing it is cheaper than importing ``importlib.metadata`` on every start.
    """
    if site_dir is None:
        import importlib.util

        spec = importlib.util.find_spec("onnxruntime")
        if spec is None or not spec.submodule_search_locations:
            return set()
        site_dir = Path(list(spec.submodule_search_locations)[0]).parent
    found = set()
    with contextlib.suppress(OSError), os.scandir(site_dir) as entries:
        for entry in entries:
            name, dot, kind = entry.name.rpartition(".")
            if dot and kind in ("dist-info", "egg-info"):
                dist = name.split("-", 1)[0].lower().replace(".", "_")
                if dist in _RUNTIME_DISTRIBUTIONS:
                    found.add(dist)
    return found


def runtime_package(system: str | None = None, machine: str | None = None) -> str:
    """The ONNX Runtime distribution the package's dependency markers install on this platform:
    onnxruntime-gpu where it publishes wheels (Linux and Windows on x86_64; its CPU provider
    serves machines without a GPU), onnxruntime everywhere else (macOS, ARM). Keep in step with
    the markers in pyproject.toml."""
    import platform
    import sys

    system = sys.platform if system is None else system
    machine = platform.machine() if machine is None else machine
    if (system.startswith("linux") and machine == "x86_64") or (system == "win32" and machine == "AMD64"):
        return "onnxruntime-gpu"
    return "onnxruntime"


def check_runtime(site_dir: str | Path | None = None) -> None:
    """Fail early, with the fix, when onnxruntime and onnxruntime-gpu are both installed
    (either one alone is fine: the dependency markers choose one per platform)."""
    if len(runtime_distributions(site_dir)) == 2:
        raise ModelLoadError(
            "both onnxruntime and onnxruntime-gpu are installed, which breaks both (they share one "
            f"folder); fix: pip uninstall -y onnxruntime onnxruntime-gpu && pip install {runtime_package()}"
        )
    try:
        import onnxruntime  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(f"onnxruntime cannot be imported ({exc}); fix: pip install {runtime_package()}") from None


def _cuda_driver_present() -> bool:
    try:
        ctypes.CDLL("libcuda.so.1")
        return True
    except OSError:
        return False


@contextlib.contextmanager
def captured_stderr():
    """Capture what C++ code writes to fd 2 (ORT's CUDA probing prints errors there)."""
    captured = {"text": ""}
    try:
        saved = os.dup(2)
    except OSError:
        yield captured
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured["text"] = tmp.read().decode("utf-8", "replace").strip()


def create_session(model: str | bytes, device: str, *, threads: int | None = None):
    """An ONNX Runtime session on ``device`` ("auto", "cpu" or "cuda") and the provider in use.

    "auto" tries CUDA only when a driver is present and keeps it only if the session really
    got it (``get_providers()[0]``); onnxruntime-gpu lists CUDA as available even without a GPU.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # ORT's own error lines stay off the terminal: every failure reaches the user as one error
    # of ours. Only the CUDA attempt logs errors (captured, to say why CUDA was not used).
    options.log_severity_level = 4
    if threads:
        options.intra_op_num_threads = threads

    def build(providers):
        return ort.InferenceSession(model, sess_options=options, providers=providers)

    want_cuda = device == "cuda" or (device == "auto" and _cuda_driver_present())
    if want_cuda and CUDA in ort.get_available_providers():
        with captured_stderr() as err:
            try:
                options.log_severity_level = 3  # captured: says why CUDA was not used
                session = build([CUDA, CPU])
                options.log_severity_level = 4
            except Exception as exc:  # noqa: BLE001 - reported below, CPU retried for auto
                session, failure = None, str(exc).splitlines()[0]
            else:
                failure = None
        if session is not None and session.get_providers()[0] == CUDA:
            return session, CUDA
        reason = _short_ort_error(failure or err["text"]) or "the session fell back to CPU"
        if device == "cuda":
            raise ModelLoadError(f"--device cuda: ONNX Runtime could not use CUDA ({reason})")
        log.info("CUDA not usable (%s); running on CPU", reason)
    elif device == "cuda":
        raise ModelLoadError(
            "--device cuda: this ONNX Runtime has no CUDA provider "
            f"(available: {', '.join(ort.get_available_providers())}); install onnxruntime-gpu and a CUDA driver"
        )
    elif device == "auto" and want_cuda is False:
        log.debug("no CUDA driver found; running on CPU")
    try:
        return build([CPU]), CPU
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"ONNX Runtime cannot load the model: {first}") from None


def _short_ort_error(text: str | None) -> str:
    """The useful tail of an ONNX Runtime C++ error line (drops timestamps and source paths)."""
    if not text:
        return ""
    line = text.strip().splitlines()[0]
    return line.rsplit("FAIL : ", 1)[-1].strip()


def provider_to_device(provider: str) -> str:
    return "cuda" if provider == CUDA else "cpu"
