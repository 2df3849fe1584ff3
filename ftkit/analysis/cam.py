"""Class activation maps: where in the image the network looks for a class.

Grad-CAM (Selvaraju et al. 2017) weights a layer's maps by the gradient of the
class score and keeps the positive part; Grad-CAM++ (Chattopadhay et al. 2018)
and LayerCAM (Jiang et al. 2021) refine the weights. The maps come from the
``torchcam`` package (its extractors hook the layer); this module only picks
the layer, runs it on a batch and resizes the maps to the image.

>>> cams = class_activation_maps(model, images, method="gradcam")   # doctest: +SKIP
>>> cams.maps.shape                                                  # doctest: +SKIP
(8, 64, 64)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ftkit.analysis.depth import depth_layers
from ftkit.core.runtime import restore_modes, save_modes
from ftkit.core.torchutil import get_module

__all__ = ["CAM_METHODS", "CamResult", "class_activation_maps", "share_inside"]

CAM_METHODS = ("gradcam", "gradcampp", "layercam", "xgradcam")


@dataclass
class CamResult:
    """``maps`` ``(B, S, S)`` in [0, 1] (each map scaled to its own maximum),
    ``classes`` the class each map explains, ``probs`` the model's probability
    of that class, ``layer`` and ``method``."""

    maps: np.ndarray
    classes: np.ndarray
    probs: np.ndarray
    layer: str
    method: str


def _extractor(method: str):
    from torchcam import methods

    table = {"gradcam": methods.GradCAM, "gradcampp": methods.GradCAMpp, "layercam": methods.LayerCAM,
             "xgradcam": methods.XGradCAM}
    if method not in table:
        raise ValueError(f"unknown CAM method {method!r}; choose one of {CAM_METHODS}")
    return table[method]


def class_activation_maps(model: nn.Module, images: torch.Tensor, *, method: str = "gradcam",
                          layer: str | None = None, classes: Sequence[int] | None = None) -> CamResult:
    """Class activation maps of a batch, upsampled to the image size.

    Args:
        model: a classifier; eval mode for the pass (modes and weights unchanged,
            no parameter gradient is left behind).
        images: ``(B, 3, S, S)`` normalised, on the model's device.
        method: one of ``CAM_METHODS``.
        layer: the map to explain; default the last body group's output
            (the last map before pooling, as Grad-CAM recommends).
        classes: the class per image; default the predicted one.
    """
    extractor_cls = _extractor(method)
    if images.dim() != 4:
        raise ValueError(f"images must be a batch (B, C, H, W), got shape {tuple(images.shape)}")
    layer = layer or depth_layers(model)[-1].layer
    get_module(model, layer)  # KeyError with candidates
    if classes is not None and len(classes) != len(images):
        raise ValueError(f"classes has {len(classes)} entries for {len(images)} images")
    modes = save_modes(model)
    model.eval()
    grads = {p: p.grad for p in model.parameters()}
    try:
        x = images.detach().clone().requires_grad_(True)  # maps need a graph even if the body is frozen
        with torch.enable_grad(), extractor_cls(model, target_layer=layer, enable_hooks=True) as ex:
            out = model(x)
            chosen = out.argmax(1).tolist() if classes is None else [int(c) for c in classes]
            cams = ex(chosen, out)[0]                                              # (B, h, w)
        probs = torch.softmax(out.detach().float(), 1)[torch.arange(len(out)), chosen]
    finally:
        for p, g in grads.items():
            p.grad = g
        restore_modes(modes)
    maps = F.interpolate(cams.detach().float().unsqueeze(1), size=images.shape[-2:], mode="bilinear",
                         align_corners=False)[:, 0]
    peak = maps.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1)
    return CamResult((maps / peak).cpu().numpy(), np.asarray(chosen), probs.cpu().numpy(), layer, method)


def share_inside(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Per image, the share of a map's total weight that falls inside a mask (e.g. the object's pixels).

    Compare with the mask's own area share: a map that ignores the object scores about that.

    Raises:
        ValueError: maps and masks of different shapes.
    """
    maps, masks = np.asarray(maps, dtype=np.float64), np.asarray(masks, dtype=bool)
    if maps.shape != masks.shape:
        raise ValueError(f"maps {maps.shape} and masks {masks.shape} must have the same shape")
    total = maps.reshape(len(maps), -1).sum(1)
    inside = (maps * masks).reshape(len(maps), -1).sum(1)
    return np.divide(inside, total, out=np.full_like(total, np.nan), where=total > 0)
