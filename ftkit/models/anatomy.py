"""The anatomy of a CNN: what each layer does, the shape it hands on, how many parameters it holds.

Lesson 00's tables come from here: :func:`layer_table` follows one image
through the network (forward hooks record every layer's output shape),
:func:`group_params` counts the parameters per layer group (the groups of
``ftkit.models.groups.layer_groups``), and :func:`top_predictions` lists a
pretrained backbone's top-k ImageNet classes for a few photos.

>>> bb = load_backbone("mobilenet_v2")                    # doctest: +SKIP
>>> layer_table(bb.model).tail(3)[["layer", "output"]]    # doctest: +SKIP
         layer       output
18  classifier.1         1000
19     softmax         1000
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd
import torch
from torch import nn

from ftkit.core.runtime import restore_modes, save_modes
from ftkit.models.groups import layer_groups
from ftkit.models.predict import classify
from ftkit.models.zoo import Backbone

__all__ = ["layer_table", "group_params", "top_predictions", "shape_text"]

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
_ACTIVATIONS = (nn.ReLU, nn.ReLU6, nn.SiLU, nn.GELU, nn.Hardswish, nn.Sigmoid, nn.Tanh)


def shape_text(shape: tuple[int, ...]) -> str:
    """One image's tensor shape without the batch dimension: ``"32 x 112 x 112"``."""
    return " x ".join(str(int(s)) for s in shape[1:])


def _leaves(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The rows of the table: plain containers (``nn.Sequential``, ``nn.ModuleList``) are opened, any other module
    (a conv block, a residual block, a linear layer) is one row, as its author drew it."""
    rows: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        for name, child in module.named_children():
            full = f"{prefix}.{name}" if prefix else name
            if type(child) in (nn.Sequential, nn.ModuleList, nn.ModuleDict):
                walk(full, child)
            else:
                rows.append((full, child))

    walk("", model)
    return rows or [("(model)", model)]


def _has(module: nn.Module, kinds: tuple[type, ...]) -> bool:
    return any(isinstance(m, kinds) for m in module.modules())


def _role(module: nn.Module, shape_in: tuple[int, ...], shape_out: tuple[int, ...], last_linear: bool) -> str:
    """What a layer does, in the course's words."""
    if _has(module, (nn.Conv2d,)):
        smaller = len(shape_in) == 4 and len(shape_out) == 4 and shape_out[2] < shape_in[2]
        return "convolution: extracts features" + (", halves the image" if smaller else "")
    if isinstance(module, _POOLS):
        return "pooling: summarises each feature map"
    if isinstance(module, nn.Linear):
        return "fully connected: scores the classes" if last_linear else "fully connected"
    if isinstance(module, nn.Dropout):
        return "dropout (only while training)"
    if isinstance(module, _ACTIVATIONS):
        return "activation"
    if isinstance(module, (nn.BatchNorm2d, nn.BatchNorm1d, nn.LayerNorm)):
        return "normalisation"
    if isinstance(module, nn.Flatten):
        return "flatten"
    return "other"


def _group_of(model: nn.Module) -> dict[str, str]:
    """Qualified module name -> layer group name (a module and everything under it)."""
    owner: dict[str, str] = {}
    for group in layer_groups(model):
        for name in group.modules:
            owner[name] = group.name
    return owner


def _lookup(owner: Mapping[str, str], name: str) -> str:
    hits = {g for m, g in owner.items() if m == name or m.startswith(name + ".") or name.startswith(m + ".")}
    if not hits:
        return "-"  # no parameters, so no group (dropout, pooling)
    return hits.pop() if len(hits) == 1 else "/".join(sorted(hits))


def layer_table(model: nn.Module, image_size: int = 224, *, softmax: bool = True) -> pd.DataFrame:
    """Follow one image through ``model``: each layer's role, output shape and parameters.

    A row per module as its author composed the network (a conv block or a
    residual block is one row). Work done in ``forward()`` by no module
    (MobileNetV2's global average pool and flatten) gets a row of its own,
    found where a layer receives another shape than the previous one handed on.
    Every module's train/eval mode is restored afterwards.

    Args:
        model: a classification network taking (N, 3, H, W) images.
        image_size: H = W of the probe image (zeros; only the shapes matter).
        softmax: add a last row for the softmax that turns scores into probabilities
            (applied by ``ftkit.models.predict.classify``, not by the model).

    Returns:
        DataFrame with columns layer, kind, role, group, output (one image's
        shape, e.g. ``"32 x 112 x 112"``), values (numbers in that output), params.
    """
    if image_size < 8:
        raise ValueError(f"image_size must be at least 8 pixels, got {image_size}")
    leaves = _leaves(model)
    seen: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = {}  # in the order of the first call
    hooks = []
    for name, module in leaves:
        def hook(_m, inputs, output, name=name):
            if name not in seen and isinstance(output, torch.Tensor):  # first call only
                seen[name] = (tuple(inputs[0].shape), tuple(output.shape))
        hooks.append(module.register_forward_hook(hook))
    modes = save_modes(model)
    try:
        model.eval()
        device = next(model.parameters()).device
        with torch.no_grad():
            model(torch.zeros(1, 3, image_size, image_size, device=device))
    finally:
        for h in hooks:
            h.remove()
        restore_modes(modes)

    owner = _group_of(model)
    modules = dict(leaves)
    ran = [(n, modules[n]) for n in seen]  # forward order, which may differ from registration order
    linears = [n for n, m in ran if isinstance(m, nn.Linear)]
    rows = [{"layer": "input", "kind": "image", "role": "the picture, 3 colour channels",
             "group": "-", "shape": (1, 3, image_size, image_size), "params": 0}]
    for name, module in ran:
        shape_in, shape_out = seen[name]
        before = rows[-1]["shape"]
        if tuple(shape_in) != tuple(before):
            flat = len(before) == 4 and len(shape_in) == 2 and shape_in[1] == before[1]
            pooled = flat and before[2] * before[3] > 1
            kind = "global average pool + flatten" if pooled else "flatten" if flat else "reshape"
            role = "pooling: one number per feature map" if pooled else kind
            rows.append({"layer": "(in forward)", "kind": kind, "role": role, "group": "-", "shape": shape_in,
                         "params": 0})
        rows.append({"layer": name, "kind": type(module).__name__,
                     "role": _role(module, shape_in, shape_out, bool(linears) and name == linears[-1]),
                     "group": _lookup(owner, name), "shape": shape_out,
                     "params": sum(p.numel() for p in module.parameters())})
    if softmax:
        rows.append({"layer": "softmax", "kind": "softmax", "role": "scores -> probabilities that sum to 1",
                     "group": "-", "shape": rows[-1]["shape"], "params": 0})
    table = pd.DataFrame(rows)
    table.insert(4, "output", [shape_text(s) for s in table["shape"]])
    table.insert(5, "values", [int(np.prod(s[1:])) for s in table["shape"]])
    return table.drop(columns="shape")


def group_params(model: nn.Module) -> pd.DataFrame:
    """Parameters per layer group (``ftkit.models.groups.layer_groups``), input to output.

    Returns:
        DataFrame with columns group, modules (first-last), params, trainable, share
        (fraction of all parameters); the groups cover every parameter once.
    """
    groups = layer_groups(model)
    rows = []
    for g in groups:
        params = g.parameters(model)
        span = g.modules[0] if len(g.modules) == 1 else f"{g.modules[0]} ... {g.modules[-1]}"
        rows.append({"group": g.name, "modules": span, "params": sum(p.numel() for p in params),
                     "trainable": sum(p.numel() for p in params if p.requires_grad)})
    table = pd.DataFrame(rows, columns=["group", "modules", "params", "trainable"])
    total = sum(p.numel() for p in model.parameters())
    table["share"] = table["params"] / total if total else 0.0
    return table


def top_predictions(backbone: Backbone, photos: Mapping[str, np.ndarray], top_k: int = 5) -> pd.DataFrame:
    """The backbone's top-k ImageNet classes for each photo (``ftkit.models.predict.classify``).

    Args:
        backbone: a loaded pretrained backbone.
        photos: name -> HxWx3 (or HxW) uint8 image.
        top_k: classes per photo.

    Returns:
        Long DataFrame with columns photo, rank (1 = most likely), category, probability.
    """
    if not photos:
        raise ValueError("photos is empty: pass {name: image}, e.g. {'coffee': skimage.data.coffee()}")
    names = list(photos)
    preds = classify(backbone, [photos[n] for n in names], top_k=top_k)
    rows = [{"photo": n, "rank": r + 1, "category": c, "probability": p}
            for n, pairs in zip(names, preds) for r, (c, p) in enumerate(pairs)]
    return pd.DataFrame(rows, columns=["photo", "rank", "category", "probability"])
