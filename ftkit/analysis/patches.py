"""Top-activating patches: which pieces of which images excite a channel most.

Zeiler & Fergus (2014) showed, for a unit, the nine image patches that excite
it most, cropped to the part of the image the unit can see (its receptive
field). Low layers' patches share an edge or a colour; high layers' share a
texture or an object part. The receptive field is measured, not derived from
kernel sizes: the input pixels on which a centre unit's gradient is nonzero.

>>> rf = receptive_field(model, "features.6", image_size=64)             # doctest: +SKIP
>>> top = top_patches(model, data, "features.6", channel=3, k=9)          # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ftkit.analysis.activations import capture_outputs
from ftkit.analysis.features import DEFAULT_BATCH_SIZE
from ftkit.core.torchutil import release_freed_memory

__all__ = ["ReceptiveField", "receptive_field", "TopPatches", "top_patches", "to_rgb"]


@dataclass(frozen=True)
class ReceptiveField:
    """``size`` (pixels, the side of the square a unit sees, at most the image),
    ``stride`` (input pixels per step on the map) and the map's ``map_size``."""

    size: int
    stride: float
    map_size: int


def receptive_field(model: nn.Module, layer: str, image_size: int, *, seed: int = 0) -> ReceptiveField:
    """The receptive field of a unit at the centre of ``layer``'s map, measured by its gradient.

    Raises:
        ValueError: the layer does not output a ``(B, C, H, W)`` map.
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 3, image_size, image_size, generator=g).to(device).requires_grad_(True)
    out = capture_outputs(model, x, [layer], grad=True)[layer]
    if out.dim() != 4:
        raise ValueError(f"{layer!r} outputs shape {tuple(out.shape)}, not a (B, C, H, W) map")
    h, w = out.shape[2:]
    out[0, :, h // 2, w // 2].abs().sum().backward()
    seen = (x.grad[0].abs().sum(0) > 0).cpu().numpy()
    rows, cols = np.nonzero(seen.any(1))[0], np.nonzero(seen.any(0))[0]
    size = max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) if len(rows) else 1
    return ReceptiveField(int(size), image_size / h, int(h))


@dataclass
class TopPatches:
    """The ``k`` images whose strongest unit in ``channel`` fires most, one patch each.

    Attributes:
        patches: ``(k, 3, P, P)`` crops in the data set's (normalised) space,
            ``P = min(rf.size, image side)``; a window that would cross the
            border is shifted inside the image.
        scores: the unit's activation, highest first.
        indices: the items of the data set the patches come from.
        centers: ``(k, 2)`` row, column of each patch's centre in the image.
        rf: the receptive field the crops were cut to.
    """

    layer: str
    channel: int
    patches: torch.Tensor
    scores: np.ndarray
    indices: np.ndarray
    centers: np.ndarray
    rf: ReceptiveField


def top_patches(model: nn.Module, data: Dataset, layer: str, channel: int, *, k: int = 9,
                batch_size: int = DEFAULT_BATCH_SIZE, max_items: int | None = None) -> TopPatches:
    """Scan ``data`` and keep the ``k`` images whose best unit in ``channel`` is highest.

    Args:
        model: a CNN (eval mode for the scan; modes restored).
        data: yields ``(image (3, S, S), label)``, all the same size.
        layer: a module whose output is a map (``depth_layers`` gives one per group).
        channel: the channel of that map.
        k: patches to return.
        max_items: scan only the first items (speed).
    """
    items = len(data) if max_items is None else min(max_items, len(data))
    if items == 0:
        raise ValueError("top_patches() got an empty data set")
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    best, where = [], []
    subset = torch.utils.data.Subset(data, range(items))
    for x, _ in DataLoader(subset, batch_size=batch_size, shuffle=False):
        m = capture_outputs(model, x.to(device), [layer])[layer]
        if m.dim() != 4:
            raise ValueError(f"{layer!r} outputs shape {tuple(m.shape)}, not a (B, C, H, W) map")
        if not 0 <= channel < m.shape[1]:
            raise IndexError(f"channel {channel} out of range: {layer!r} has {m.shape[1]} channels")
        flat = m[:, channel].flatten(1)                                        # (B, H*W)
        v, i = flat.max(1)
        best.append(v)
        where.append(torch.stack([i // m.shape[3], i % m.shape[3]], 1))
    release_freed_memory()  # the forward passes' maps: back to the OS, not kept by the allocator
    scores, locs = torch.cat(best), torch.cat(where)
    order = torch.argsort(scores, descending=True)[:k]
    size = data[0][0].shape[-1]
    rf = receptive_field(model, layer, size)
    crop = min(rf.size, size)
    crops, centers = [], []
    for idx in order.tolist():
        img = data[idx][0]
        r, c = ((locs[idx].float() + 0.5) * rf.stride).long().tolist()
        # The window around the unit, shifted to lie inside the image (as a unit near the border sees padding).
        top, left = (min(max(v - crop // 2, 0), size - crop) for v in (r, c))
        crops.append(img[:, top:top + crop, left:left + crop])
        centers.append((r, c))
    return TopPatches(layer, channel, torch.stack(crops), scores[order].numpy(), order.numpy(),
                      np.asarray(centers), rf)


def to_rgb(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """Undo the normalisation: ``(..., 3, H, W)`` -> ``(..., H, W, 3)`` in [0, 1] for display."""
    m = torch.as_tensor(mean, dtype=torch.float32).view(3, 1, 1)
    s = torch.as_tensor(std, dtype=torch.float32).view(3, 1, 1)
    return (images.detach().cpu().float() * s + m).clamp(0, 1).movedim(-3, -1).numpy()
