"""Network definitions for the attack zoo.

``ResNet8`` is a small residual network in the spirit of the fast CIFAR-10 trainers
(airbench / ResNet-9 of the DAWNBench entries): a conv stem, then three stages that each
downsample by max-pooling after a conv and add one residual unit; it trains to ~90% on
a couple of CPU cores in minutes. ``ResNet18`` is the standard CIFAR ResNet-18 (3x3 stem,
no initial max-pool), for training on a GPU.

Both take a normalized NCHW float tensor and return logits ``(N, 10)``.
"""

from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F


def _conv_bn(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class _Residual(nn.Module):
    def __init__(self, width: int):
        super().__init__()
        self.body = nn.Sequential(*_conv_bn(width, width), *_conv_bn(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class _Stage(nn.Module):
    """conv -> maxpool(2) -> BN -> ReLU, then one residual unit (two conv-BN-ReLU)."""

    def __init__(self, cin: int, cout: int, residual: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.bn = nn.BatchNorm2d(cout)
        self.res = _Residual(cout) if residual else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.pool(self.conv(x))), inplace=True)
        return self.res(x)


class ResNet8(nn.Module):
    """Small fast residual CIFAR net: stem + 3 pooled stages (residual units on stages 1 and 3).

    ``widths=(w0, w1, w2, w3)`` are the stem and stage widths.
    """

    def __init__(self, widths: tuple[int, int, int, int] = (32, 64, 128, 256), num_classes: int = 10,
                 logit_scale: float = 0.125, in_channels: int = 3):
        super().__init__()
        w0, w1, w2, w3 = widths
        self.widths = tuple(widths)
        self.stem = nn.Sequential(*_conv_bn(in_channels, w0))
        self.stages = nn.Sequential(
            _Stage(w0, w1, residual=True),
            _Stage(w1, w2, residual=False),
            _Stage(w2, w3, residual=True),
        )
        self.head = nn.Linear(w3, num_classes, bias=False)
        self.logit_scale = logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        x = torch.amax(x, dim=(2, 3))
        return self.head(x) * self.logit_scale


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet18(nn.Module):
    """Standard CIFAR ResNet-18 (He et al. 2016 with a 3x3 stem and no stem max-pool)."""

    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers = []
        cin = 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            layers += [_BasicBlock(cin, cout, stride), _BasicBlock(cout, cout, 1)]
            cin = cout
        self.layers = nn.Sequential(*layers)
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layers(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


class VGG(nn.Module):
    """VGG-style plain network with batch norm: conv3x3-BN-ReLU blocks, ``"M"`` = max-pool(2),
    then global max-pool and a linear head. No residual connections."""

    def __init__(self, cfg: tuple, num_classes: int = 10, in_channels: int = 3, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for v in cfg:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += _conv_bn(cin, v)
                cin = v
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout) if dropout else nn.Identity()
        self.head = nn.Linear(cin, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.amax(self.features(x), dim=(2, 3))
        return self.head(self.drop(x))


ARCHS = {
    "resnet8": lambda **kw: ResNet8(**kw),
    "resnet8-s": lambda **kw: ResNet8((24, 48, 96, 192), **kw),
    "resnet8-xs": lambda **kw: ResNet8((16, 32, 64, 128), **kw),
    "resnet18": lambda **kw: ResNet18(**kw),
    # VGG-style, batch norm, no residuals: 8 conv layers, 1.2 M params (CIFAR-10)
    "vgg8-bn": lambda **kw: VGG((32, 32, "M", 64, 64, "M", 128, 128, "M", 256, 256), **kw),
    # a small plain CNN for 28x28 grayscale digits: 4 conv layers, 0.07 M params
    "vgg-mnist": lambda **kw: VGG((16, 32, "M", 32, 64, "M", 64), **kw),
}


def build(arch: str, num_classes: int = 10, in_channels: int = 3) -> nn.Module:
    """``arch`` with a ``num_classes`` head and ``in_channels`` input channels (ResNet18: 3 only)."""
    if arch not in ARCHS:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHS)}")
    kw = {}
    if num_classes != 10:
        kw["num_classes"] = num_classes
    if in_channels != 3:
        kw["in_channels"] = in_channels
    return ARCHS[arch](**kw)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def from_onnx(path, arch: str) -> nn.Module:
    """Rebuild an eval-mode ``arch`` model from a zoo ONNX file this project exported.

    The dynamo exporter names initializers ``model.<state_dict key>`` and folds a conv's
    following BatchNorm into the conv (``<conv>.weight`` fused, ``<conv>.weight_bias`` added).
    A folded BN becomes an identity BN that carries the fused bias, so the rebuilt model
    computes the same function in eval mode (enough for the attacks that need the clean
    model's gradients); it is not a training checkpoint.
    """
    import onnx
    from onnx import numpy_helper

    inits = {i.name.removeprefix("model."): torch.from_numpy(numpy_helper.to_array(i).copy())
             for i in onnx.load(str(path)).graph.initializer}
    model = build(arch).eval()
    state = model.state_dict()
    modules = dict(model.named_modules())
    new = {}
    for key, fused_bias in ((k, v) for k, v in inits.items() if k.endswith(".weight_bias")):
        conv = key.removesuffix(".weight_bias")
        parent, idx = conv.rsplit(".", 1)
        bn = f"{parent}.{int(idx) + 1}"
        eps = modules[bn].eps
        new[f"{bn}.weight"] = torch.ones_like(fused_bias)
        new[f"{bn}.bias"] = fused_bias
        new[f"{bn}.running_mean"] = torch.zeros_like(fused_bias)
        new[f"{bn}.running_var"] = torch.full_like(fused_bias, 1.0 - eps)
    for k, v in state.items():
        if k in new:
            continue
        if k in inits:
            new[k] = inits[k].reshape(v.shape)
        elif k.endswith("num_batches_tracked"):
            new[k] = v
        else:
            raise ValueError(f"{path}: no initializer for {k!r}; not an export of {arch!r}")
    model.load_state_dict(new)
    return model
