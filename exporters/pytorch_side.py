"""The PyTorch side of an export: the module that is exported (the model behind its input
adapter) and the reference function the parity check compares ONNX Runtime with.

torch is passed in by the caller; this module does not import it at import time.
"""

from __future__ import annotations

import logging

from .capture import quiet
from .errors import ExportError, one_line

logger = logging.getLogger("scanner.exporters")


def wrap_model(torch, model, *, layout, shape, device, scale, mean, std):
    """The module actually exported, and whether it holds TorchScript (then it is scripted)."""
    from ._graph import InputAdapter, contains_script_module

    adapter = InputAdapter(model, layout=layout, shape=shape, scale=scale, mean=mean, std=std, device=device).eval()
    if not contains_script_module(model):
        return adapter, False
    # tracing an eager module around a loaded TorchScript one fails; script the adapter instead
    try:
        with quiet():
            return torch.jit.script(adapter), True
    except Exception as exc:
        logger.info("cannot script the input adapter (%s); tracing it", one_line(exc))
        return adapter, True


def reference_fn(torch, model, device, *, pixel_range, mean, std, bgr=False):
    """PyTorch logits of the original model for unit-range RGB NHWC images, in the model's channel
    order (``bgr``) and normalized as specified."""

    def stat(values):
        if values is None:
            return None
        return torch.tensor(values, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)

    mean_t, std_t = stat(mean), stat(std)

    def reference(images, check: bool = False):
        x = torch.from_numpy(images[..., ::-1].copy() if bgr else images).to(device).permute(0, 3, 1, 2)
        if pixel_range == "byte":
            x = x * 255.0
        if mean_t is not None:
            x = x - mean_t
        if std_t is not None:
            x = x / std_t
        try:
            with torch.no_grad():
                out = model(x)
        except Exception as exc:
            raise ExportError(
                f"model failed on a float32 batch of shape {tuple(x.shape)}: {type(exc).__name__}: {one_line(exc)}"
            ) from None
        if check:
            check_output(torch, out, x.shape[0])
        return out.detach().float().cpu().numpy()

    return reference


def check_output(torch, out, batch: int) -> None:
    if isinstance(out, (tuple, list)):
        raise ExportError(
            f"model returned a {type(out).__name__} of {len(out)}; export needs a model that returns one "
            "(batch, n_classes) tensor (wrap it to pick the logits)"
        )
    if not isinstance(out, torch.Tensor):
        raise ExportError(f"model returned a {type(out).__name__}; expected a (batch, n_classes) tensor")
    if out.ndim != 2 or out.shape[0] != batch:
        raise ExportError(
            f"model output has shape {tuple(out.shape)} for a batch of {batch}; expected (batch, n_classes)"
        )
    if not out.is_floating_point():
        raise ExportError(f"model output has dtype {out.dtype}; expected floating-point logits or probabilities")


def device_of(torch, model):
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def parameter_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
