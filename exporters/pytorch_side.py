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
        # a copy in the standard (contiguous) memory format: permute() alone gives channels-last
        # strides, and a model that flattens with .view() then fails. For one channel the permuted
        # tensor counts as contiguous (.contiguous() is a no-op) yet has channels-last strides,
        # which convolutions propagate; clone(memory_format=...) fixes both.
        x = torch.from_numpy(images[..., ::-1].copy() if bgr else images).to(device).permute(0, 3, 1, 2)
        x = x.clone(memory_format=torch.contiguous_format)
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


def output_name(values) -> str:
    """What the model's output holds, from its values on a check batch: ``probabilities`` when
    every row is non-negative and sums to 1 (a model ending in softmax), ``log_probabilities``
    when the rows' exponentials do (log-softmax), else ``logits``."""
    import numpy as np

    out = np.asarray(values, dtype=np.float64)
    if out.ndim != 2 or not np.isfinite(out).all():
        return "logits"
    if out.min() >= 0 and np.allclose(out.sum(axis=1), 1.0, atol=1e-4):
        return "probabilities"
    if out.max() <= 0 and np.allclose(np.exp(out).sum(axis=1), 1.0, atol=1e-4):
        return "log_probabilities"
    return "logits"


def device_of(torch, model):
    for tensor in (*model.parameters(), *model.buffers()):
        return tensor.device
    return torch.device("cpu")


def parameter_bytes(model) -> int:
    return sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers()))
