"""First-layer filters: pictures of the weights, and how structured they are.

The first convolution sees pixels, so its weights can be drawn as small RGB
images. Trained on ImageNet they become oriented edges, colour opponents and
blobs (Krizhevsky et al. 2012, Fig. 3; Zeiler & Fergus 2014, Fig. 2); at
random initialisation they are noise. Two numbers say it without a picture:

* **smoothness**: the correlation between neighbouring weights of a kernel,
  ``1 - mean((w[i] - w[i+1])^2) / (2 var(w))`` over horizontal and vertical
  neighbours. Independent noise gives about 0 (a little below, since each
  kernel's mean is removed); smooth edges and blobs give clearly positive values.
* **low_freq_energy**: the share of a kernel's energy (sum of squared 2-D
  Fourier coefficients) at spatial frequencies up to ``cutoff`` cycles/pixel,
  the DC term included. For a 3x3 kernel only the DC term is that low, so
  noise gives about 1/9.
* **channel_coherence**: the mean absolute correlation between a kernel's
  input-channel slices (R vs G, R vs B, G vs B). Trained first layers are
  mostly grey edges (R, G, B alike) or colour opponents (anti-alike); noise
  gives about 0.3 for 3x3 kernels.

On 3x3 kernels (MobileNetV2, EfficientNet) smoothness is a weak signal: there
are only 12 neighbour pairs. Low-frequency energy and channel coherence
separate trained from random filters by a wide margin (see notes/h9.md).

>>> filt = first_layer_filters(model)                  # doctest: +SKIP
>>> filter_structure(filt.weight).mean()               # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

__all__ = ["FirstFilters", "first_layer_filters", "filter_images", "filter_structure", "structure_summary"]


@dataclass
class FirstFilters:
    """The weights of the first convolution: ``weight`` ``(out, in, kh, kw)``, a CPU float copy."""

    layer: str
    weight: np.ndarray

    def __len__(self) -> int:
        return len(self.weight)


def first_layer_filters(model: nn.Module) -> FirstFilters:
    """A copy of the first ``Conv2d`` that model registers (the one that sees the pixels).

    Raises:
        ValueError: the model has no ``Conv2d``, or its first one does not see
            3 (RGB) or 1 (grey) channels.
    """
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):
            w = module.weight.detach().to("cpu", torch.float32).numpy().copy()
            if w.shape[1] not in (1, 3) or module.groups != 1:
                raise ValueError(f"the first Conv2d ({name!r}, weight {tuple(w.shape)}) does not see the "
                                 "image's 1 or 3 channels; pass a network that starts with a convolution")
            return FirstFilters(name, w)
    raise ValueError(f"{type(model).__name__} has no Conv2d: first-layer filters need a CNN")


def filter_images(weight: np.ndarray) -> np.ndarray:
    """Each filter as an RGB image ``(out, kh, kw, 3)`` in [0, 1], for display.

    Every filter is scaled on its own (0.5 = zero weight, its largest |w| at 0
    or 1), as Krizhevsky et al. drew theirs; grey filters are repeated in RGB.
    """
    w = np.asarray(weight, dtype=np.float32)
    if w.ndim != 4:
        raise ValueError(f"need a conv weight (out, in, kh, kw), got shape {w.shape}")
    img = np.transpose(w, (0, 2, 3, 1))                          # (out, kh, kw, in)
    if img.shape[-1] == 1:
        img = np.repeat(img, 3, axis=-1)
    peak = np.abs(img).reshape(len(img), -1).max(1)[:, None, None, None]
    return 0.5 + 0.5 * img / np.where(peak > 0, peak, 1.0)


def _smoothness(k: np.ndarray) -> np.ndarray:
    """Neighbour correlation of each (out, in) kernel, averaged over the input channels."""
    c = k - k.mean(axis=(2, 3), keepdims=True)
    var = (c ** 2).mean(axis=(2, 3))
    diffs = [np.diff(c, axis=2) ** 2, np.diff(c, axis=3) ** 2]
    msd = sum(d.sum(axis=(2, 3)) for d in diffs) / sum(d[0, 0].size for d in diffs)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = 1.0 - msd / (2.0 * var)
    valid = var > 0                                          # a constant slice has no neighbour correlation
    count = valid.sum(axis=1)
    total = np.where(valid, s, 0.0).sum(axis=1)
    return np.divide(total, count, out=np.full(len(k), np.nan), where=count > 0)


def _low_freq_energy(k: np.ndarray, cutoff: float) -> np.ndarray:
    kh, kw = k.shape[2:]
    power = np.abs(np.fft.fft2(k, axes=(2, 3))) ** 2                       # (out, in, kh, kw)
    radius = np.hypot(*np.meshgrid(np.fft.fftfreq(kh), np.fft.fftfreq(kw), indexing="ij"))
    low = power[:, :, radius <= cutoff + 1e-9].sum(-1).sum(1)
    total = power.sum(axis=(1, 2, 3))
    return np.divide(low, total, out=np.full_like(low, np.nan), where=total > 0)


def _channel_coherence(k: np.ndarray) -> np.ndarray:
    if k.shape[1] < 2:
        return np.full(len(k), np.nan)
    v = k.reshape(len(k), k.shape[1], -1)
    v = v - v.mean(-1, keepdims=True)
    norm = np.linalg.norm(v, axis=-1, keepdims=True)
    v = np.divide(v, norm, out=np.zeros_like(v), where=norm > 0)
    corr = np.einsum("oik,ojk->oij", v, v)                                   # (out, in, in)
    iu = np.triu_indices(k.shape[1], 1)
    return np.abs(corr[:, iu[0], iu[1]]).mean(1)


def filter_structure(weight: np.ndarray, *, cutoff: float = 0.25) -> pd.DataFrame:
    """Per filter: ``smoothness``, ``low_freq_energy``, ``channel_coherence`` (see the module docstring).

    Args:
        weight: ``(out, in, kh, kw)`` with kh, kw >= 2.
        cutoff: the highest spatial frequency (cycles/pixel) counted as "low".
    """
    w = np.asarray(weight, dtype=np.float64)
    if w.ndim != 4 or min(w.shape[2:]) < 2:
        raise ValueError(f"need a conv weight (out, in, kh, kw) with kh, kw >= 2, got shape {w.shape}")
    return pd.DataFrame({"filter": np.arange(len(w)), "smoothness": _smoothness(w),
                         "low_freq_energy": _low_freq_energy(w, cutoff),
                         "channel_coherence": _channel_coherence(w)})


def structure_summary(weights: dict[str, np.ndarray], **kw) -> pd.DataFrame:
    """Median of each structure measure for several filter banks, one row per bank.

    >>> structure_summary({"pretrained": a.weight, "random": b.weight})  # doctest: +SKIP
    """
    rows = []
    for name, w in weights.items():
        s = filter_structure(w, **kw)
        rows.append({"filters": name, "n": len(s),
                     **{c: float(s[c].median()) for c in ("smoothness", "low_freq_energy", "channel_coherence")}})
    return pd.DataFrame(rows).set_index("filters")
