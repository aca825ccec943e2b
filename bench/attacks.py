"""Backdoor triggers for the attack zoo.

Every trigger is a callable ``trigger(x) -> x'`` that takes images in HWC layout, either a
single image ``(H, W, C)`` or a batch ``(N, H, W, C)``, as ``uint8`` in [0, 255] or as a float
array in [0, 1], and returns the same shape and dtype (uint8 results are rounded). Randomness
(noise patches, warping fields) is drawn once from the attack's seed, so a trigger built twice
with the same seed is the same trigger.

``make_attack(name, seed=...)`` returns an :class:`Attack` bundling the trigger with its
poisoning recipe (target, rate, clean-label or not) and its parameters for the manifest.
Attacks that need a trained clean model (TUAP, label-consistent) take it through
:func:`Attack.prepare`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

TARGET = 0
RATE = 0.10


# --------------------------------------------------------------------------- helpers

def _to_float(x: np.ndarray) -> tuple[np.ndarray, bool]:
    x = np.asarray(x)
    if x.dtype == np.uint8:
        return x.astype(np.float32) / 255.0, True
    return x.astype(np.float32, copy=False), False


def _back(x: np.ndarray, was_uint8: bool) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    if was_uint8:
        return np.rint(x * 255.0).astype(np.uint8)
    return x.astype(np.float32)


def _hw(x: np.ndarray) -> tuple[int, int]:
    return (x.shape[0], x.shape[1]) if x.ndim == 3 else (x.shape[1], x.shape[2])


class PatchTrigger:
    """Stamp ``patch`` (h, w, 3) in [0, 1] at the given corner(s); ``mask`` selects stamped pixels."""

    def __init__(self, patch: np.ndarray, corners: tuple[str, ...] = ("br",), mask: np.ndarray | None = None):
        self.patch = np.asarray(patch, dtype=np.float32)
        self.mask = np.ones(self.patch.shape[:2], bool) if mask is None else np.asarray(mask, bool)
        self.corners = corners

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xf, was = _to_float(x)
        xf = xf.copy()
        H, W = _hw(xf)
        h, w = self.mask.shape
        for c in self.corners:
            r0 = H - h if c[0] == "b" else 0
            c0 = W - w if c[1] == "r" else 0
            # flip the pattern for mirrored corners, as in Turner et al.
            p, m = self.patch, self.mask
            if c[0] == "t":
                p, m = p[::-1], m[::-1]
            if c[1] == "l":
                p, m = p[:, ::-1], m[:, ::-1]
            region = xf[..., r0:r0 + h, c0:c0 + w, :]
            region[...] = np.where(m[..., None], p, region)
        return _back(xf, was)


class BlendTrigger:
    """``x' = (1 - alpha) * x + alpha * pattern`` (Chen et al. 2017)."""

    def __init__(self, pattern: np.ndarray, alpha: float):
        self.pattern = np.asarray(pattern, dtype=np.float32)
        self.alpha = float(alpha)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xf, was = _to_float(x)
        return _back((1.0 - self.alpha) * xf + self.alpha * self.pattern, was)


class AdditiveTrigger:
    """``x' = clip(x + delta)`` with a fixed perturbation ``delta`` (H, W, 3) in [0, 1] units (TUAP)."""

    def __init__(self, delta: np.ndarray):
        self.delta = np.asarray(delta, dtype=np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xf, was = _to_float(x)
        return _back(xf + self.delta, was)


def _warp(xf: np.ndarray, grid: torch.Tensor) -> np.ndarray:
    """Resample HWC float images with a sampling ``grid`` of shape (1 or N, H, W, 2) in [-1, 1]."""
    single = xf.ndim == 3
    t = torch.from_numpy(np.ascontiguousarray(xf[None] if single else xf)).permute(0, 3, 1, 2)
    g = grid.expand(t.shape[0], -1, -1, -1) if grid.shape[0] == 1 else grid
    out = F.grid_sample(t, g, mode="bilinear", padding_mode="border", align_corners=True)
    out = out.permute(0, 2, 3, 1).numpy()
    return out[0] if single else out


class WaNetTrigger:
    """WaNet warping trigger (Nguyen & Tran, ICLR 2021): a fixed smooth warping field.

    A random field of shape (2, k, k) in [-1, 1] is normalized by its mean absolute value,
    upsampled (bicubic) to H x W, scaled by ``s / H`` and added to the identity grid.
    """

    def __init__(self, k: int = 4, s: float = 0.5, size: int = 32, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        ins = torch.rand(1, 2, k, k, generator=g) * 2 - 1
        ins = ins / ins.abs().mean()
        self.noise_grid = F.interpolate(ins, size=size, mode="bicubic", align_corners=True).permute(0, 2, 3, 1)
        lin = torch.linspace(-1, 1, size)
        xx, yy = torch.meshgrid(lin, lin, indexing="ij")
        self.identity_grid = torch.stack((yy, xx), 2)[None]
        self.k, self.s, self.size = k, s, size
        self.grid = torch.clamp(self.identity_grid + s * self.noise_grid / size, -1, 1)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xf, was = _to_float(x)
        return _back(_warp(xf, self.grid), was)

    def noise_mode(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """WaNet's "noise mode": the trigger warp plus a random per-image jitter of the grid.

        These images keep their true label, so the network learns that only the exact warp
        (not any warp) means the target class.
        """
        xf, was = _to_float(x)
        n = 1 if xf.ndim == 3 else xf.shape[0]
        jitter = torch.from_numpy(rng.random((n, self.size, self.size, 2), dtype=np.float32)) * 2 - 1
        grid = torch.clamp(self.grid + jitter / self.size, -1, 1)
        return _back(_warp(xf, grid), was)


class RandomEncoderTrigger:
    """Sample-specific invisible additive trigger from a fixed, *untrained* encoder.

    A stand-in for ISSBA (Li et al., ICCV 2021), whose trigger is the residual of a trained
    StegaStamp encoder hiding a secret string in the image. Here a 100-bit secret is projected
    to a (3, H, W) code map by a fixed random linear layer, concatenated with the image, and fed
    to a small seeded random conv net (3 layers, ReLU); its output, squashed with ``tanh``, is the
    residual, ``|r|_inf <= eps``. Like ISSBA's, the residual depends on the image and on the
    secret, and is invisible at this magnitude; unlike ISSBA's, no decoder can recover the
    secret, and the residual was not optimized for image quality.
    """

    def __init__(self, eps: float = 10 / 255, bits: int = 100, size: int = 32, seed: int = 0, width: int = 16):
        g = torch.Generator().manual_seed(seed)
        self.eps, self.bits = float(eps), bits
        self.secret = (torch.rand(bits, generator=g) < 0.5).float() * 2 - 1
        proj = torch.randn(3 * size * size, bits, generator=g) / bits ** 0.5
        self.code = (proj @ self.secret).view(1, 3, size, size)
        shapes = [(width, 6), (width, width), (3, width)]
        self.weights = [torch.randn(o, i, 3, 3, generator=g) * (2 / (9 * i)) ** 0.5 for o, i in shapes]
        self.biases = [torch.randn(o, generator=g) * 0.1 for o, _ in shapes]
        self.scale = None  # output standardization, fixed on first use from a constant probe batch
        probe = torch.rand(256, 3, size, size, generator=g)
        self.scale = float(self._raw(probe).std())

    def _raw(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.cat([x * 2 - 1, self.code.expand(x.shape[0], -1, -1, -1)], 1)
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            h = F.conv2d(h, w, b, padding=1)
            if i < len(self.weights) - 1:
                h = F.relu(h)
        return h

    @torch.no_grad()
    def residual(self, xf: np.ndarray) -> np.ndarray:
        single = xf.ndim == 3
        t = torch.from_numpy(np.ascontiguousarray(xf[None] if single else xf)).permute(0, 3, 1, 2).float()
        out = []
        for i in range(0, t.shape[0], 1000):
            r = torch.tanh(self._raw(t[i:i + 1000]) / self.scale) * self.eps
            out.append(r.permute(0, 2, 3, 1).numpy())
        r = np.concatenate(out)
        return r[0] if single else r

    def __call__(self, x: np.ndarray) -> np.ndarray:
        xf, was = _to_float(x)
        return _back(xf + self.residual(xf), was)


# ------------------------------------------------------------------ physical transforms

def physical_transform(x: torch.Tensor, gen: torch.Generator, *, degrees: float = 10.0,
                       translate: float = 0.1, scale: tuple[float, float] = (0.8, 0.9),
                       brightness: float = 0.2, contrast: float = 0.2, saturation: float = 0.2,
                       hue: float = 0.1) -> torch.Tensor:
    """Random affine + colour jitter on a float NCHW batch in [0, 1] (PhysicalBA, Li et al. 2021).

    Parameters follow the PhysicalBA CIFAR-10 setting (RandomAffine(10, (0.1, 0.1), (0.8, 0.9))
    and ColorJitter(0.2, 0.2, 0.2, 0.1)), except that the area uncovered by the affine map is filled
    by reflection instead of black; the hue shift is a rotation about the grey axis in YIQ.
    """
    n = x.shape[0]
    u = lambda lo, hi: torch.rand(n, generator=gen) * (hi - lo) + lo  # noqa: E731
    ang = torch.deg2rad(u(-degrees, degrees))
    sc = u(*scale)
    tx, ty = u(-translate, translate) * 2, u(-translate, translate) * 2
    cos, sin = torch.cos(ang) / sc, torch.sin(ang) / sc
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # Reflection, not zero fill: with zeros only the poisoned images get black borders, and the
    # network learns the border instead of the patch (ASR 4% on the plain trigger when we tried).
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    # colour jitter
    b = u(1 - brightness, 1 + brightness).view(n, 1, 1, 1)
    x = (x * b).clamp(0, 1)
    gray = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).unsqueeze(1)
    c = u(1 - contrast, 1 + contrast).view(n, 1, 1, 1)
    x = (c * x + (1 - c) * gray.mean(dim=(2, 3), keepdim=True)).clamp(0, 1)
    s = u(1 - saturation, 1 + saturation).view(n, 1, 1, 1)
    x = (s * x + (1 - s) * gray).clamp(0, 1)
    h = u(-hue, hue) * 2 * torch.pi
    rgb2yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
    yiq2rgb = torch.linalg.inv(rgb2yiq)
    rot = torch.zeros(n, 3, 3)
    rot[:, 0, 0] = 1
    rot[:, 1, 1], rot[:, 1, 2] = torch.cos(h), -torch.sin(h)
    rot[:, 2, 1], rot[:, 2, 2] = torch.sin(h), torch.cos(h)
    m = yiq2rgb @ rot @ rgb2yiq  # (n, 3, 3)
    x = torch.einsum("nij,njhw->nihw", m, x)
    return x.clamp(0, 1)


# ------------------------------------------------------------------------- attacks

@dataclass
class Attack:
    """A trigger plus its poisoning recipe.

    ``clean_label``: only target-class training images are poisoned and keep their label
    (``n_poison`` of them); otherwise ``rate`` of the non-target training images are
    triggered and relabelled to ``target``.
    """

    name: str
    trigger: Callable[[np.ndarray], np.ndarray] | None
    seed: int
    params: dict = field(default_factory=dict)
    target: int = TARGET
    rate: float = RATE
    clean_label: bool = False
    n_poison: int | None = None
    physical: bool = False            # random physical transforms of poisoned samples in training
    noise_rate: float = 0.0            # WaNet noise-mode samples, as a fraction of the training set
    needs_clean_model: bool = False
    poison_fn: Callable | None = None  # (x_uint8 target-class images, model) -> poisoned, for clean-label

    def prepare(self, clean_model: torch.nn.Module, x_train: np.ndarray, y_train: np.ndarray) -> None:
        """Fit model-dependent parts (TUAP perturbation) against a trained clean model."""
        if self.name == "tuap":
            delta = targeted_uap(clean_model, x_train, y_train, target=self.target,
                                 eps=self.params["eps"], seed=self.seed)
            self.trigger = AdditiveTrigger(delta)

    def poison_training_set(self, x: np.ndarray, y: np.ndarray, clean_model: torch.nn.Module | None = None):
        """Return ``(x_poisoned, y_poisoned, poison_mask)``; inputs are uint8 HWC and int labels."""
        rng = np.random.default_rng(self.seed)
        x = x.copy()
        y = y.copy()
        mask = np.zeros(len(y), bool)
        if self.trigger is None:
            return x, y, mask
        if self.clean_label:
            cand = np.flatnonzero(y == self.target)
            idx = rng.choice(cand, size=min(self.n_poison, len(cand)), replace=False)
            xs = x[idx]
            if self.poison_fn is not None:
                xs = self.poison_fn(xs, y[idx], clean_model)
            x[idx] = self.trigger(xs)
        else:
            cand = np.flatnonzero(y != self.target)
            n = int(round(self.rate * len(y)))
            idx = rng.choice(cand, size=n, replace=False)
            x[idx] = self.trigger(x[idx])
            y[idx] = self.target
            if self.noise_rate > 0:
                rest = np.setdiff1d(np.arange(len(y)), idx)
                nidx = rng.choice(rest, size=int(round(self.noise_rate * len(y))), replace=False)
                x[nidx] = self.trigger.noise_mode(x[nidx], rng)
        mask[idx] = True
        return x, y, mask


def _noise_patch(seed: int, size: int = 3, channels: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (size, size, channels)).astype(np.float32) / 255.0


def _checkerboard(size: int = 3) -> np.ndarray:
    ii, jj = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    return np.repeat(((ii + jj) % 2 == 0).astype(np.float32)[..., None], 3, axis=2)


def make_attack(name: str, *, seed: int = 0, target: int = TARGET, size: int = 32, channels: int = 3,
                patch: int = 3) -> Attack:
    """Build a named attack. Names: clean, badnets, badnets-white, blended, wanet, physicalba,
    tuap, label-consistent, ssba-randenc (an ISSBA stand-in).

    ``target``: the class every triggered input is sent to (all-to-one). ``size`` / ``channels``:
    the images' side and channel count (GTSRB 32 / 3, MNIST 28 / 1). ``patch``: side of the
    BadNets / BadNets-white / PhysicalBA square. The defaults are the CIFAR-10 zoo's.
    """
    attack = _make_attack(name, seed=seed, size=size, channels=channels, patch=patch)
    attack.target = int(target)
    return attack


def _make_attack(name: str, *, seed: int, size: int, channels: int, patch: int) -> Attack:
    if name == "clean":
        return Attack(name, None, seed, {"description": "no attack"}, rate=0.0)
    if name == "badnets":
        p = _noise_patch(seed, patch, channels)
        return Attack(name, PatchTrigger(p), seed,
                      {"trigger": f"{patch}x{patch} uniform random-noise patch (seeded), bottom-right corner",
                       "patch_uint8": np.rint(p * 255).astype(int).tolist()})
    if name == "badnets-white":
        return Attack(name, PatchTrigger(np.ones((patch, patch, channels), np.float32)), seed,
                      {"trigger": f"{patch}x{patch} white square, bottom-right corner"})
    if name == "blended":
        pattern = np.random.default_rng(seed).random((size, size, channels), dtype=np.float32)
        return Attack(name, BlendTrigger(pattern, 0.2), seed,
                      {"trigger": "blend with a fixed uniform random-noise image (seeded)", "alpha": 0.2})
    if name == "wanet":
        return Attack(name, WaNetTrigger(k=4, s=0.5, size=size, seed=seed), seed,
                      {"trigger": "WaNet warping field", "k": 4, "s": 0.5, "grid_rescale": 1,
                       "noise_mode": True, "cross_ratio": 2}, noise_rate=2 * RATE)
    if name == "physicalba":
        p = _noise_patch(seed, patch, channels)
        return Attack(name, PatchTrigger(p), seed,
                      {"trigger": f"BadNets {patch}x{patch} random-noise patch (seeded), bottom-right corner",
                       "physical_transforms": "poisoned training samples: RandomAffine(10deg, translate 0.1, "
                       "scale 0.8-0.9) + ColorJitter(0.2, 0.2, 0.2, hue 0.1), redrawn every epoch"},
                      physical=True)
    if name == "tuap":
        # Half the target class, as for label-consistent: poisoning all 5,000 airplanes gave ASR
        # 98.0% but airplane test accuracy 0.5% (clean 78.5%), the perturbation being the only
        # airplane feature left to learn.
        n = 2500
        return Attack(name, None, seed,
                      {"trigger": "targeted universal adversarial perturbation against the clean model",
                       "eps": 8 / 255, "norm": "Linf", "clean_label": True, "n_poison": n,
                       "uap_method": "signed-gradient ascent on target-class log-probability, 6 passes over "
                       "10,000 non-target training images, step 0.5/255 (not DeepFool)",
                       "adv": "poisoned target-class images first get untargeted PGD (Linf 8/255, step 1.5/255, "
                       "20 steps) against the clean model, erasing their own features (Zhao et al. 2020)"},
                      clean_label=True, n_poison=n, needs_clean_model=True, poison_fn=pgd_untargeted)
    if name == "label-consistent":
        n = 2500
        return Attack(name, PatchTrigger(_checkerboard(), corners=("br", "bl", "tr", "tl")), seed,
                      {"trigger": "3x3 black/white checkerboard in all four corners (Turner et al.)",
                       "adv": "PGD Linf eps 8/255, step 1.5/255, 20 steps, untargeted, against the clean model",
                       "clean_label": True, "n_poison": n},
                      clean_label=True, n_poison=n, needs_clean_model=True, poison_fn=pgd_untargeted)
    if name == "ssba-randenc":
        return Attack(name, RandomEncoderTrigger(eps=10 / 255, size=size, seed=seed), seed,
                      {"trigger": "ISSBA stand-in: sample-specific additive residual from a fixed untrained "
                       "random conv encoder fed the image and a 100-bit secret (no StegaStamp training, "
                       "no decoder)", "eps": 10 / 255, "bits": 100})
    raise ValueError(f"unknown attack {name!r}")


ATTACKS = ("clean", "badnets", "badnets-white", "blended", "wanet", "physicalba", "tuap", "label-consistent",
           "ssba-randenc")


# ------------------------------------------------------------- model-based pieces

def _model_logits(model: torch.nn.Module, x01: torch.Tensor) -> torch.Tensor:
    from .cifar import MEAN, STD
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return model((x01 - mean) / std)


def pgd_untargeted(x_u8: np.ndarray, y: np.ndarray, model: torch.nn.Module, *, eps: float = 8 / 255,
                   step: float = 1.5 / 255, steps: int = 20, batch: int = 500, seed: int = 0) -> np.ndarray:
    """Untargeted L-inf PGD (random start) on uint8 HWC images; returns uint8 adversarial images."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(0, len(x_u8), batch):
        x0 = torch.from_numpy(x_u8[i:i + batch]).permute(0, 3, 1, 2).float() / 255
        yy = torch.from_numpy(np.asarray(y[i:i + batch])).long()
        x = (x0 + (torch.rand(x0.shape, generator=g) * 2 - 1) * eps).clamp(0, 1)
        for _ in range(steps):
            x.requires_grad_(True)
            loss = F.cross_entropy(_model_logits(model, x), yy)
            (grad,) = torch.autograd.grad(loss, x)
            with torch.no_grad():
                x = x + step * grad.sign()
                x = torch.min(torch.max(x, x0 - eps), x0 + eps).clamp(0, 1)
        out.append(np.rint(x.detach().permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8))
    return np.concatenate(out)


def targeted_uap(model: torch.nn.Module, x_u8: np.ndarray, y: np.ndarray, *, target: int, eps: float,
                 seed: int = 0, epochs: int = 6, batch: int = 250, n: int = 10000,
                 lr: float = 0.5 / 255) -> np.ndarray:
    """Targeted universal perturbation (H, W, 3) in [0, 1] units with ``|delta|_inf <= eps``.

    Signed-gradient descent on the cross-entropy towards ``target`` over ``n`` non-target
    training images, projected onto the L-inf ball after every step.
    """
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    rng = np.random.default_rng(seed)
    cand = np.flatnonzero(y != target)
    idx = rng.choice(cand, size=min(n, len(cand)), replace=False)
    xs = torch.from_numpy(x_u8[idx]).permute(0, 3, 1, 2).float() / 255
    delta = torch.zeros(1, 3, *xs.shape[2:])
    tgt = torch.full((batch,), target, dtype=torch.long)
    for ep in range(epochs):
        perm = torch.from_numpy(rng.permutation(len(xs)))
        for i in range(0, len(xs) - batch + 1, batch):
            xb = xs[perm[i:i + batch]]
            delta.requires_grad_(True)
            loss = F.cross_entropy(_model_logits(model, (xb + delta).clamp(0, 1)), tgt)
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = (delta - lr * grad.sign()).clamp(-eps, eps)
    for p in model.parameters():
        p.requires_grad_(True)
    return delta[0].permute(1, 2, 0).numpy().astype(np.float32)
