"""Feature visualisation by activation maximisation: the picture a channel likes most.

Start from a random image and follow the gradient that makes one channel's
mean activation larger. Done naively the result is high-frequency noise that
fools the network; two regularisers make it look like textures and parts:

* a **decorrelated, Fourier parametrisation**: the image is the inverse FFT of
  learned coefficients scaled by ``1 / frequency`` (so that every frequency
  is equally easy to change), with colours in a decorrelated basis, squashed
  into [0, 1] by a sigmoid;
* **transformation robustness**: at every step the image is padded, jittered,
  scaled and rotated at random, so only features that survive small moves grow.

Sources of the method (this module is a small re-implementation of them):
Olah, Mordvintsev & Schubert, "Feature Visualization", Distill 2017
(https://distill.pub/2017/feature-visualization/); Mordvintsev et al.,
"Differentiable Image Parameterizations", Distill 2018; the reference code in
lucid (TensorFlow, ``lucid/optvis/param/spatial.py``, ``color.py``,
``transform.py``) and its PyTorch port torch-lucent 0.1.8, whose colour
matrix and transform schedule are used here. torch-lucent itself was not made
a dependency: its last release (0.1.8) requires kornia<=0.4.1 (2020) and pulls pytest,
pytest-mock, coverage and coveralls at run time (it did run with torch 2.14; see notes/h9.md).

>>> vis = visualize_channels(model, [("features.1", 3), ("features.13", 7)], size=96)  # doctest: +SKIP
>>> vis.images.shape                                                                # doctest: +SKIP
(2, 96, 96, 3)
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftkit.core.runtime import restore_modes, save_modes
from ftkit.core.torchutil import get_module

__all__ = ["FeatureVis", "visualize_channels", "FourierImage", "random_transform", "pre_activation"]

# Square root of the colour correlation of ImageNet pixels (lucid's color_correlation_svd_sqrt).
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


class FourierImage(nn.Module):
    """``n`` images ``(n, 3, size, size)`` in [0, 1], parametrised by scaled Fourier coefficients.

    Args:
        n, size: batch and side.
        decay: spectrum scale ``1 / f**decay`` (1 as in lucid).
        generator: for the initial coefficients (std 0.01).
    """

    def __init__(self, n: int, size: int, *, decay: float = 1.0, generator: torch.Generator | None = None):
        super().__init__()
        fy = torch.fft.fftfreq(size)[:, None]
        fx = torch.fft.rfftfreq(size)[None, :]
        freqs = torch.sqrt(fx ** 2 + fy ** 2)                                   # (size, size//2+1)
        self.register_buffer("scale", 1.0 / freqs.clamp_min(1.0 / size) ** decay)
        self.size = size
        self.coeffs = nn.Parameter(0.01 * torch.randn(n, 3, *freqs.shape, 2, generator=generator))

    def forward(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.coeffs) * self.scale
        img = torch.fft.irfft2(spectrum, s=(self.size, self.size), norm="ortho") / 4.0  # (n, 3, S, S)
        img = torch.einsum("nchw,dc->ndhw", img, _COLOR.to(img.device))          # decorrelated -> RGB
        return torch.sigmoid(img)


def random_transform(x: torch.Tensor, generator: torch.Generator, *, jitter: float = 0.06,
                     scale: tuple[float, float] = (0.9, 1.1), degrees: float = 10.0) -> torch.Tensor:
    """Pad, jitter, scale and rotate a batch at random (lucid's standard transforms, sizes
    relative to the image so they suit 64 px as well as 224 px)."""
    n, _, s, _ = x.shape
    pad = max(1, round(jitter * s))
    x = F.pad(x, (pad, pad, pad, pad), mode="constant", value=0.5)
    u = torch.rand(n, 4, generator=generator).to(x.device)
    zoom = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    angle = math.radians(degrees) * (2 * u[:, 1] - 1)
    shift = (2 * u[:, 2:] - 1) * (2 * pad / x.shape[-1])
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, padding_mode="border", align_corners=False)
    return x[:, :, pad:pad + s, pad:pad + s]


@dataclass
class FeatureVis:
    """``images`` ``(n, S, S, 3)`` in [0, 1], one per target; ``targets`` the
    ``(layer, channel)`` pairs; ``activation`` each target's mean activation on
    its final image, and ``start_activation`` on the random start."""

    targets: list[tuple[str, int]]
    images: np.ndarray
    activation: np.ndarray
    start_activation: np.ndarray


_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid, nn.Tanh)


def pre_activation(model: nn.Module, layer: str) -> str:
    """The module just before ``layer``'s final activation, when ``layer`` ends with one.

    A channel clipped at 0 by ReLU on the random start image has no gradient
    and would never move; lucid's recipes optimise the pre-ReLU value for the
    same reason. ``"features.18"`` (conv, BN, ReLU6) -> ``"features.18.1"``.
    """
    kids = list(get_module(model, layer).named_children())
    if len(kids) >= 2 and isinstance(kids[-1][1], _ACTIVATIONS):
        return f"{layer}.{kids[-2][0]}"
    return layer


class _Enough(Exception):
    """Raised once every target layer has run: the rest of the network is skipped."""


def _objective(model, x, targets):
    layers = sorted({t[0] for t in targets})
    got: dict[str, torch.Tensor] = {}

    def hook(name):
        def grab(_m, _a, out):
            got[name] = out[0] if isinstance(out, (tuple, list)) else out
            if len(got) == len(layers):
                raise _Enough
        return grab

    handles = [get_module(model, name).register_forward_hook(hook(name)) for name in layers]
    try:
        model(x)
    except _Enough:
        pass
    finally:
        for h in handles:
            h.remove()
    return torch.stack([got[layer][i, c].mean() for i, (layer, c) in enumerate(targets)])


def visualize_channels(model: nn.Module, targets: Sequence[tuple[str, int]], *, size: int = 96,
                       steps: int = 128, lr: float = 0.05, mean: Sequence[float] = (0.485, 0.456, 0.406),
                       std: Sequence[float] = (0.229, 0.224, 0.225), seed: int = 0,
                       transforms: bool = True, before_activation: bool = True) -> FeatureVis:
    """Optimise one image per ``(layer, channel)`` target, all in one batch.

    Args:
        model: a CNN; eval mode during the run (modes and weights unchanged).
        targets: ``(module name, channel)`` pairs; each image maximises its own.
        size: side of the images.
        steps, lr: Adam steps and learning rate on the Fourier coefficients.
        mean, std: the model's input normalisation (the image is made in [0, 1]).
        seed: initial coefficients and transform draws.
        transforms: False turns transformation robustness off (to see why it is there).
        before_activation: maximise the value before the layer's final
            activation (:func:`pre_activation`), so that channels at 0 can grow.
            ``activation`` and ``start_activation`` are then that value too.
    """
    if not targets:
        raise ValueError("give at least one (layer, channel) target")
    for layer, c in targets:
        get_module(model, layer)  # KeyError listing candidates, before any work
        if c < 0:
            raise ValueError(f"channel must be >= 0, got {c} for {layer!r}")
    targets = [(str(layer), int(c)) for layer, c in targets]
    hooked = [(pre_activation(model, layer) if before_activation else layer, c) for layer, c in targets]
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    param = FourierImage(len(targets), size, generator=g).to(device)
    m = torch.as_tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    opt = torch.optim.Adam(param.parameters(), lr=lr)
    modes = save_modes(model)
    model.eval()
    try:
        with torch.no_grad():
            start = _objective(model, (param() - m) / s, hooked).cpu().numpy()
        for _ in range(steps):
            img = param()
            if transforms:
                img = random_transform(img, g)
            act = _objective(model, (img - m) / s, hooked)
            (grad,) = torch.autograd.grad(-act.sum(), [param.coeffs])
            param.coeffs.grad = grad
            opt.step()
        with torch.no_grad():
            final = param()
            end = _objective(model, (final - m) / s, hooked).cpu().numpy()
    finally:
        restore_modes(modes)
    return FeatureVis(targets, final.permute(0, 2, 3, 1).cpu().numpy(), end, start)
