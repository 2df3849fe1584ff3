"""Activation maps by depth: one forward pass, every group's output kept.

A learner wants to flip between depths, channels and images and see the maps
at once; so the maps of a small batch are computed once (hooks on the last
module of every layer group, see :mod:`ftkit.analysis.depth`) and every view
afterwards is an index into them.

>>> acts = activation_maps(model, images)                     # doctest: +SKIP
>>> acts.top_channels("features.4-6", image=0, k=8)           # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from ftkit.analysis.depth import DepthLayer, depth_layers
from ftkit.core.runtime import restore_modes, save_modes
from ftkit.core.torchutil import get_module

__all__ = ["Activations", "activation_maps", "capture_outputs"]


def capture_outputs(model: nn.Module, x: torch.Tensor, layers: Sequence[str], *,
                    grad: bool = False) -> dict[str, torch.Tensor]:
    """The outputs of the named modules for input ``x`` (one forward pass, eval mode).

    The model's train/eval flags come back as they were. With ``grad=False``
    the pass runs under ``torch.no_grad`` and the maps are detached CPU floats.

    Raises:
        KeyError: a name that is not a module of ``model`` (lists candidates).
        RuntimeError: a named module did not run in the forward pass.
    """
    modules = {name: get_module(model, name) for name in layers}
    got: dict[str, torch.Tensor] = {}

    def hook(name):
        def grab(_m, _args, out):
            out = out[0] if isinstance(out, (tuple, list)) else out
            got[name] = out if grad else out.detach().float().cpu()
        return grab

    handles = [m.register_forward_hook(hook(n)) for n, m in modules.items()]
    modes = save_modes(model)
    model.eval()
    try:
        with torch.set_grad_enabled(grad):
            model(x)
    finally:
        for h in handles:
            h.remove()
        restore_modes(modes)
    missing = [n for n in layers if n not in got]
    if missing:
        raise RuntimeError(f"modules {missing} did not run in {type(model).__name__}'s forward pass")
    return got


@dataclass
class Activations:
    """Maps ``(B, C, H, W)`` per depth for a batch of images.

    Attributes:
        depths: the :class:`DepthLayer` of each entry of ``maps``, input to output.
        maps: group name -> float tensor ``(B, C, H, W)`` on the CPU.
        images: the input batch ``(B, 3, S, S)`` as given (normalised).
    """

    depths: list[DepthLayer]
    maps: dict[str, torch.Tensor]
    images: torch.Tensor

    @property
    def groups(self) -> list[str]:
        return [d.group for d in self.depths]

    def _map(self, group: str) -> torch.Tensor:
        if group not in self.maps:
            raise KeyError(f"no maps for group {group!r}; have {self.groups}")
        return self.maps[group]

    def channel_order(self, group: str, image: int) -> np.ndarray:
        """Channels of ``group`` for one image, most active (mean activation) first."""
        m = self._map(group)
        if not 0 <= image < len(m):
            raise IndexError(f"image {image} out of range: the batch has {len(m)} images")
        return torch.argsort(m[image].mean(dim=(1, 2)), descending=True).numpy()

    def top_channels(self, group: str, image: int, k: int = 8) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` most active channels' indices and maps ``(k, H, W)`` for one image."""
        order = self.channel_order(group, image)[:k]
        return order, self._map(group)[image, order].numpy()

    def summary(self) -> list[dict]:
        """Per depth: channels, map size, and the share of positive activations."""
        return [{"group": d.group, "layer": d.layer, "depth": d.depth, "channels": int(m.shape[1]),
                 "height": int(m.shape[2]), "width": int(m.shape[3]), "active_share": float((m > 0).float().mean())}
                for d in self.depths for m in [self.maps[d.group]]]


def activation_maps(model: nn.Module, images: torch.Tensor, *, groups: Sequence[str] | None = None) -> Activations:
    """Every chosen group's output maps for ``images`` ``(B, 3, S, S)``, from one forward pass.

    Args:
        model: a CNN; its modes are restored afterwards.
        images: a normalised batch (as the data set yields them), on the model's device.
        groups: group names to keep (default: every group but the head).

    Raises:
        ValueError: ``images`` is not a 4-D batch, or a chosen group's output is not a map.
    """
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (B, C, H, W), got shape {tuple(images.shape)}; "
                         "use images.unsqueeze(0) for one image")
    depths = depth_layers(model)
    if groups is not None:
        by = {d.group: d for d in depths}
        unknown = [g for g in groups if g not in by]
        if unknown:
            raise KeyError(f"no layer group named {unknown}; the groups are {list(by)}")
        depths = [by[g] for g in groups]
    out = capture_outputs(model, images, [d.layer for d in depths])
    flat = [d.group for d in depths if out[d.layer].dim() != 4]
    if flat:
        raise ValueError(f"groups {flat} do not output (B, C, H, W) maps; leave them out with groups=")
    return Activations(depths, {d.group: out[d.layer] for d in depths}, images.detach().cpu())
