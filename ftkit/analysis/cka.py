"""Linear CKA: how similar two sets of features of the same images are.

Centered Kernel Alignment (Kornblith, Norouzi, Lee & Hinton, ICML 2019) with a
linear kernel compares two representations ``X (n, p)`` and ``Y (n, q)`` of
the same ``n`` inputs; it ignores rotations and isotropic scaling of either,
so it can compare a layer before and after fine-tuning although every weight
moved. 1 = the same geometry, 0 = unrelated.

>>> linear_cka(X, X @ random_rotation)           # doctest: +SKIP
1.0
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from torch import nn
from torch.utils.data import DataLoader, Dataset

from ftkit.analysis.activations import capture_outputs
from ftkit.analysis.depth import depth_layers
from ftkit.analysis.features import DEFAULT_BATCH_SIZE, extract_features

__all__ = ["linear_cka", "cka_by_group"]


def linear_cka(X: np.ndarray, Y: np.ndarray) -> float:
    """``||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)`` with column-centred X and Y.

    Computed through the ``n x n`` Gram matrices, so wide features (a flattened
    map) cost ``n^2`` memory, not ``p^2``.

    Raises:
        ValueError: different numbers of rows, fewer than 2 rows, or a constant representation.
    """
    X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
    Y = np.asarray(Y, dtype=np.float64).reshape(len(Y), -1)
    if len(X) != len(Y) or len(X) < 2:
        raise ValueError(f"need the same >= 2 inputs in both, got {len(X)} and {len(Y)} rows")
    X = X - X.mean(0)
    Y = Y - Y.mean(0)
    K, L = X @ X.T, Y @ Y.T                          # (n, n) Gram matrices
    xx, yy = np.sqrt((K * K).sum()), np.sqrt((L * L).sum())
    if xx == 0 or yy == 0:
        raise ValueError("a representation is constant over the inputs: CKA is undefined")
    return float((K * L).sum() / (xx * yy))


def _maps(model: nn.Module, data: Dataset, layer: str, batch_size: int) -> np.ndarray:
    device = next(model.parameters()).device
    out = [capture_outputs(model, x.to(device), [layer])[layer].flatten(1).numpy()
           for x, _ in DataLoader(data, batch_size=batch_size, shuffle=False)]
    return np.concatenate(out)


def cka_by_group(model_a: nn.Module, model_b: nn.Module, data: Dataset, *, spatial: bool = False,
                 batch_size: int = DEFAULT_BATCH_SIZE) -> pd.DataFrame:
    """Linear CKA between two networks of the same architecture, group by group, on ``data``.

    Args:
        model_a, model_b: e.g. the pretrained and the fine-tuned network (heads may differ).
        data: the images both see (a few hundred are enough).
        spatial: False: globally pooled features (through the feature cache);
            True: the whole flattened maps (where in the image matters too).

    Returns:
        ``group, layer, depth, cka`` per body group, input to output.
    """
    da, db = depth_layers(model_a), depth_layers(model_b)
    if [(d.group, d.layer) for d in da] != [(d.group, d.layer) for d in db]:
        raise ValueError("the two models have different layer groups: CKA by group needs one architecture")
    rows = []
    for d in da:
        if spatial:
            xa, xb = _maps(model_a, data, d.layer, batch_size), _maps(model_b, data, d.layer, batch_size)
        else:
            xa = extract_features(model_a, data, d.layer, batch_size=batch_size).X
            xb = extract_features(model_b, data, d.layer, batch_size=batch_size).X
        rows.append({"group": d.group, "layer": d.layer, "depth": d.depth, "cka": linear_cka(xa, xb)})
    return pd.DataFrame(rows)
