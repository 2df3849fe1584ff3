"""Probes by depth: how well each depth's features separate the target classes.

A linear probe (Alain & Bengio 2016) is a logistic regression trained on a
layer's frozen, globally average-pooled features. Run at every layer group it
draws the curve from generic to specific features (Yosinski et al. 2014): low
layers (edges, colours) separate few classes; the best depth depends on how
far the data are from ImageNet -- on data unlike ImageNet's photos a middle
depth can beat the last one, so "higher is better" is a measurement, not a rule.

Features go through :func:`ftkit.analysis.features.extract_features`, so a
second call on the same model and data costs no forward pass.

>>> probe_by_depth(model, train, val)          # doctest: +SKIP
"""
from __future__ import annotations

from typing import Any, Sequence

import pandas as pd
from torch import nn
from torch.utils.data import Dataset

from ftkit.analysis.depth import depth_layers, pick_depths
from ftkit.analysis.features import DEFAULT_BATCH_SIZE, extract_features, fit_feature_classifier

__all__ = ["probe_by_depth", "best_depth"]


def probe_by_depth(model: nn.Module, train: Dataset, val: Dataset, *, groups: Sequence[str] | None = None,
                   kind: str = "logistic", batch_size: int = DEFAULT_BATCH_SIZE, device: str = "auto",
                   **classifier_kw: Any) -> pd.DataFrame:
    """Train one probe per layer group on ``train`` features and score it on ``val``.

    Args:
        model: the (frozen) network; its weights and modes are left as they are.
        train, val: labelled data sets.
        groups: the group names to probe (default: every group but the head).
        kind: the classifier of :func:`ftkit.analysis.features.fit_feature_classifier`.
        batch_size, device: for the feature extraction.
        **classifier_kw: passed to the classifier (e.g. ``C=``, ``max_iter=``).

    Returns:
        One row per group, input to output: ``group, layer, depth, dim,
        train_acc, val_acc``.
    """
    layers = depth_layers(model)
    if groups is not None:
        layers = pick_depths(layers, groups)
    rows = []
    for d in layers:
        tr = extract_features(model, train, d.layer, batch_size=batch_size, device=device)
        va = extract_features(model, val, d.layer, batch_size=batch_size, device=device)
        clf = fit_feature_classifier(tr, kind, **classifier_kw)
        rows.append({"group": d.group, "layer": d.layer, "depth": d.depth, "dim": tr.X.shape[1],
                     "train_acc": float(clf.score(*tr.xy)), "val_acc": float(clf.score(*va.xy))})
    return pd.DataFrame(rows)


def best_depth(table: pd.DataFrame) -> dict:
    """The best row of a :func:`probe_by_depth` table and how it compares with the first and last."""
    best = table.loc[table.val_acc.idxmax()]
    return {"group": best.group, "depth": int(best.depth), "val_acc": float(best.val_acc),
            "first_acc": float(table.val_acc.iloc[0]), "last_acc": float(table.val_acc.iloc[-1]),
            "last_is_best": bool(best.depth == table.depth.iloc[-1])}
