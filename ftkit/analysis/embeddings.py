"""2-D maps of a layer's features: do images of one class sit together?

t-SNE (van der Maaten & Hinton 2008, scikit-learn's implementation) places
every image in the plane so that images with similar features stay close. At
a low depth the classes mix (edges and colours are shared by all classes); at
a high depth they form islands. A number says the same: the accuracy of a
5-nearest-neighbour vote in the 2-D map (leave one out).

>>> emb = embed_by_depth(model, data, ["stem", "features.18"])     # doctest: +SKIP
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from torch import nn
from torch.utils.data import Dataset

from ftkit.analysis.depth import depth_layers, pick_depths
from ftkit.analysis.features import DEFAULT_BATCH_SIZE, extract_features

__all__ = ["Embedding", "embed_2d", "embed_by_depth", "knn_accuracy"]


@dataclass
class Embedding:
    """``xy`` ``(N, 2)`` coordinates, ``y`` labels, ``group`` the depth's
    name and ``knn_acc`` the 5-NN leave-one-out accuracy in the plane."""

    group: str
    xy: np.ndarray
    y: np.ndarray
    knn_acc: float


def knn_accuracy(xy: np.ndarray, y: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a ``k``-nearest-neighbour majority vote."""
    from sklearn.neighbors import KNeighborsClassifier

    if len(xy) <= k:
        raise ValueError(f"need more than k={k} points, got {len(xy)}")
    knn = KNeighborsClassifier(n_neighbors=k + 1).fit(xy, y)
    idx = knn.kneighbors(xy, return_distance=False)[:, 1:]             # drop each point itself
    votes = np.asarray(y)[idx]
    pred = np.array([np.bincount(v).argmax() for v in votes])
    return float((pred == np.asarray(y)).mean())


def embed_2d(X: np.ndarray, *, seed: int = 0, perplexity: float = 30.0) -> np.ndarray:
    """t-SNE of standardised features to ``(N, 2)`` (PCA init, so runs are reproducible)."""
    from sklearn.manifold import TSNE
    from sklearn.preprocessing import StandardScaler

    X = np.asarray(X, dtype=np.float32)
    if len(X) < 5:
        raise ValueError(f"t-SNE needs at least 5 points, got {len(X)}")
    Z = StandardScaler().fit_transform(X)
    perplexity = min(perplexity, (len(X) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(Z)


def embed_by_depth(model: nn.Module, data: Dataset, groups: Sequence[str] | None = None, *,
                   seed: int = 0, batch_size: int = DEFAULT_BATCH_SIZE) -> list[Embedding]:
    """t-SNE maps of the pooled features at the chosen groups (default: the first and the last body group)."""
    layers = depth_layers(model)
    chosen = pick_depths(layers, groups) if groups is not None else [layers[0], layers[-1]]
    out = []
    for d in chosen:
        f = extract_features(model, data, d.layer, batch_size=batch_size)
        xy = embed_2d(f.X, seed=seed)
        out.append(Embedding(d.group, xy, f.y, knn_accuracy(xy, f.y)))
    return out
