"""The module that is actually exported: input layout and optional normalization, then the model.

This module imports torch at import time; ``exporters.export`` imports it only when called.
"""


from typing import Final, Sequence

import torch


class InputAdapter(torch.nn.Module):
    """Takes the ONNX input (NCHW, NHWC or flat NHWC) and gives the model an NCHW batch.

    With ``scale``/``mean``/``std`` it also computes ``(x * scale - mean) / std``, so the graph
    takes raw pixels. Written so that ``torch.jit.script`` accepts it, for TorchScript models.
    """

    layout: Final[str]
    height: Final[int]
    width: Final[int]
    channels: Final[int]
    scale: Final[float]
    has_mean: Final[bool]
    has_std: Final[bool]

    def __init__(
        self,
        model: torch.nn.Module,
        *,
        layout: str,
        shape: Sequence[int],
        scale: float | None = None,
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        device: torch.device | None = None,
    ):
        super().__init__()
        self.model = model
        self.layout = layout
        self.channels, self.height, self.width = (int(v) for v in shape)
        self.scale = float(scale) if scale is not None else 1.0
        self.has_mean = mean is not None
        self.has_std = std is not None
        self.register_buffer("pixel_mean", _stat(mean, 0.0, device), persistent=False)
        self.register_buffer("pixel_std", _stat(std, 1.0, device), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.layout == "nhwc":
            x = x.permute(0, 3, 1, 2)
        elif self.layout == "flat":
            x = x.reshape(-1, self.height, self.width, self.channels).permute(0, 3, 1, 2)
        if self.layout != "nchw":  # standard strides for the model (a .view() in it needs them)
            x = x.clone(memory_format=torch.contiguous_format)
        if self.scale != 1.0:
            x = x * self.scale
        if self.has_mean:
            x = x - self.pixel_mean
        if self.has_std:
            x = x / self.pixel_std
        return self.model(x)


def _stat(values, neutral: float, device) -> torch.Tensor:
    data = [neutral] if values is None else [float(v) for v in values]
    return torch.tensor(data, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)


def contains_script_module(model: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.jit.ScriptModule) for m in model.modules())
