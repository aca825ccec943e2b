"""Ways to get a ``torch.nn.Module`` to export: TorchScript, factory + state_dict, pickle.

Each loader returns a module on the CPU in eval mode, or raises :class:`ExportError` with one
line saying what is wrong with the file. torch is imported only when a loader is called.
"""

from __future__ import annotations

import importlib
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import ExportError, one_line

# keys under which training scripts commonly nest the state_dict in a checkpoint
_CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def load_torchscript(path: str | Path):
    """Load a TorchScript archive (``torch.jit.save``) onto the CPU.

    Raises
    ------
    ExportError
        If the file is missing or is not a TorchScript archive.
    """
    import torch

    path = _existing_file(path, "TorchScript file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # torch 2.13 deprecates TorchScript
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ExportError(
            f"cannot load {path} as TorchScript: {one_line(exc)} (a torch.save() file is not "
            "TorchScript: load a state_dict with a factory, or a pickled module as a pickle)"
        ) from None
    return module


def load_factory(factory: str, weights: str | Path | None = None):
    """Build a module by calling ``package.module:callable`` with no arguments.

    Parameters
    ----------
    factory : str
        ``"package.module:callable"``; the callable may be a dotted attribute path
        (``"models:Net.small"``). The module must be importable (on ``sys.path``).
    weights : path, optional
        A state_dict saved with ``torch.save(model.state_dict(), path)``, read with
        ``torch.load(weights_only=True)`` (no code from the file runs). A checkpoint dict that
        nests it under ``state_dict``/``model_state_dict``/``model`` works too, and a
        ``module.`` prefix from ``DataParallel`` is removed.

    Raises
    ------
    ExportError
        If the factory cannot be imported or called, or the weights do not fit the model
        (the message names the missing and unexpected keys).
    """
    import torch

    module_name, sep, attr_path = factory.partition(":")
    if not sep or not module_name or not attr_path:
        raise ExportError(f"factory must look like 'package.module:callable', got {factory!r}")
    try:
        target: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise ExportError(f"cannot import {module_name!r} for factory {factory}: {one_line(exc)}") from None
    for part in attr_path.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ExportError(f"factory {factory}: {module_name!r} has no attribute {attr_path!r}") from None
    if not callable(target):
        raise ExportError(f"factory {factory} is a {type(target).__name__}, not a callable")
    try:
        model = target()
    except Exception as exc:
        raise ExportError(f"factory {factory} failed when called with no arguments: "
                          f"{type(exc).__name__}: {one_line(exc)}") from None
    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"factory {factory} returned a {type(model).__name__}, not a torch.nn.Module")
    if weights is not None:
        load_weights(model, weights, owner=f"the model from {factory}")
    # a freshly built module is in training mode by default; that is not the user's doing
    return model.eval()


def load_weights(model, path: str | Path, *, owner: str = "the model") -> None:
    """Load a state_dict file into ``model`` strictly, with one-line errors."""
    import pickle

    import torch

    path = _existing_file(path, "weights file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ExportError(
            f"{path} is not a plain state_dict: torch.load(weights_only=True) refused it "
            f"({one_line(exc, 120)}); if it is a pickled module you trust, load it as a pickle"
        ) from None
    except Exception as exc:
        raise ExportError(f"cannot read weights {path}: {one_line(exc)}") from None
    state = _find_state_dict(obj, torch)
    if state is None:
        raise ExportError(f"{path} holds a {type(obj).__name__}, not a state_dict (a mapping of names to tensors)")
    own = set(model.state_dict())
    if state and all(k.startswith("module.") for k in state) and not any(k.startswith("module.") for k in own):
        state = {k[len("module."):]: v for k, v in state.items()}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        lines = [ln.strip().rstrip(".") for ln in str(exc).splitlines() if "size mismatch" in ln]
        detail = "; ".join(lines[:3]) + (f" (+{len(lines) - 3} more)" if len(lines) > 3 else "")
        raise ExportError(f"weights {path} do not fit {owner}: {detail or one_line(exc)}") from None
    # old checkpoints lack BatchNorm's counter, which has no effect in eval mode
    missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    unexpected = list(result.unexpected_keys)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys {_key_list(missing)}")
        if unexpected:
            parts.append(f"unexpected keys {_key_list(unexpected)}")
        raise ExportError(f"weights {path} do not fit {owner}: " + "; ".join(parts))


def load_pickle(path: str | Path, *, trust: bool = False):
    """Load a whole module saved with ``torch.save(model, path)``.

    Unpickling runs arbitrary code from the file, so this refuses unless ``trust=True``.
    The module's class must be importable under the name it was saved with.
    """
    import torch

    path = Path(path)
    if not trust:
        raise ExportError(
            f"refusing to unpickle {path}: loading a pickle runs arbitrary code from the file; "
            "trust it explicitly (--trust-pickle, or trust=True) only if you know where it came from"
        )
    path = _existing_file(path, "pickle file")
    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ExportError(f"cannot unpickle {path}: {type(exc).__name__}: {one_line(exc)}") from None
    if isinstance(obj, torch.nn.Module):
        return obj
    if _find_state_dict(obj, torch) is not None:
        raise ExportError(
            f"{path} holds a state_dict, not a module: build the model with a factory and load it as its weights"
        )
    raise ExportError(f"{path} holds a {type(obj).__name__}, not a torch.nn.Module")


def _find_state_dict(obj: Any, torch) -> dict | None:
    def is_state(value: Any) -> bool:
        return isinstance(value, Mapping) and all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
        )

    if is_state(obj):
        return dict(obj)
    if isinstance(obj, Mapping):
        for key in _CHECKPOINT_KEYS:
            if is_state(obj.get(key)):
                return dict(obj[key])
    return None


def _key_list(keys: list[str], show: int = 5) -> str:
    text = ", ".join(keys[:show])
    return text + (f" (+{len(keys) - show} more)" if len(keys) > show else "")


def _existing_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise ExportError(f"{what} not found: {path}")
    return path
