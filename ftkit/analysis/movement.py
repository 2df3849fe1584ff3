"""How far each layer group moved in fine-tuning: in weights and in features.

Two views of the same question. :func:`drift_by_group` measures the weights
(``||w - w0|| / ||w0||`` per group, :func:`ftkit.analysis.drift.weight_drift`);
:func:`movement_by_group` adds what the layers compute (linear CKA between the
pretrained and the fine-tuned network's features on the same images,
:mod:`ftkit.analysis.cka`). Low layers usually move least: their general
features were already right (Yosinski et al. 2014; Zeiler & Fergus 2014 saw
lower layers converge within a few epochs).

>>> start = weights_copy(model); fit(model, train, epochs=3)         # doctest: +SKIP
>>> movement_by_group(pretrained, model, val, reference=start)       # doctest: +SKIP
"""
from __future__ import annotations

import math

import pandas as pd
import torch
from torch import nn
from torch.utils.data import Dataset

from ftkit.analysis.cka import cka_by_group
from ftkit.analysis.drift import weight_drift
from ftkit.models.groups import layer_groups

__all__ = ["drift_by_group", "movement_by_group"]


def drift_by_group(model: nn.Module, reference: dict[str, torch.Tensor], *, include_head: bool = False) -> pd.DataFrame:
    """Relative weight drift of each layer group of ``model`` from ``reference``
    (:func:`ftkit.analysis.drift.weights_copy` taken before training).

    A group whose tensors changed shape (a replaced head) or are missing from
    ``reference`` gets NaN.

    Returns:
        ``group, depth, params, drift``.
    """
    rows = []
    for depth, g in enumerate(layer_groups(model)):
        if g.name == "head" and not include_head:
            continue
        named = g.named_parameters(model)
        ref = {n: reference[n] for n, p in named if n in reference and reference[n].shape == p.shape}
        drift = weight_drift(model, ref) if ref and len(ref) == len(named) else math.nan
        rows.append({"group": g.name, "depth": depth, "params": sum(p.numel() for _, p in named), "drift": drift})
    return pd.DataFrame(rows)


def movement_by_group(pretrained: nn.Module, finetuned: nn.Module, data: Dataset, *,
                      spatial: bool = False) -> pd.DataFrame:
    """Per body group: weight drift of ``finetuned`` from ``pretrained`` and the CKA of their features.

    Returns:
        ``group, layer, depth, params, drift, cka``.
    """
    reference = {n: p.detach().to("cpu", copy=True) for n, p in pretrained.named_parameters()}
    drift = drift_by_group(finetuned, reference)
    cka = cka_by_group(pretrained, finetuned, data, spatial=spatial)
    return cka.merge(drift, on=["group", "depth"])[["group", "layer", "depth", "params", "drift", "cka"]]
