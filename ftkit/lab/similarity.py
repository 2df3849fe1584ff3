"""How close is a data set to what a pretrained backbone learned? One measured number.

The course sorts target data into "similar" and "dissimilar" to ImageNet by eye.
:func:`measure_similarity` measures it instead:

    similarity = (linear-probe accuracy on the backbone's pretrained features)
               - (linear-probe accuracy on the raw pixels of the same images)

Both probes are logistic regressions (``ftkit.analysis.features.fit_feature_classifier``)
on the same ``n_per_class`` training images, scored on the same held-out images.
The number is in accuracy points: what the ImageNet features add to what the
pixels alone already give. Near 0 (or below): the pretrained features carry
nothing a linear classifier could not read off the pixels ("dissimilar");
large: they carry what the task needs ("similar"). It costs one forward pass
over a few hundred images: seconds on a CPU.

Why not random-init features as the reference? We tried: a random
MobileNetV2's pooled features (BN statistics recomputed) probe near chance on
every catalogue data set (0.14-0.25 at 20 images per class), so the difference
then measures how easy the task is, not how close it is to ImageNet (digits came
out "more similar" than photo crops).

>>> s = measure_similarity("mobilenet_v2", "photo_crops")   # doctest: +SKIP
>>> s.score                                                 # doctest: +SKIP
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import torch

from ftkit.analysis.features import extract_features, fit_feature_classifier
from ftkit.data.catalogue import list_datasets, load_dataset
from ftkit.models.zoo import load_backbone

__all__ = ["MEANING", "SimilarityResult", "measure_similarity", "similarity_table", "catalogue_level"]

MEANING = ("similarity = held-out accuracy of a logistic regression on the pretrained backbone's features minus "
           "that of the same classifier on the raw pixels of the same images; in accuracy points, "
           "0 = the ImageNet features add nothing to the pixels")

# The catalogue's words, in order (ftkit.data.list_datasets()'s "similarity" column starts with one).
_LEVELS = {"low": 0, "low-medium": 1, "medium": 2, "medium-high": 3, "high": 4}


@dataclass
class SimilarityResult:
    """What :func:`measure_similarity` measured.

    Attributes:
        dataset: the catalogue name or folder path.
        backbone: the backbone's name.
        pretrained_acc: held-out accuracy of the probe on pretrained features.
        pixel_acc: the same on the raw pixels.
        score: ``pretrained_acc - pixel_acc`` (see :data:`MEANING`).
        n_per_class, val_per_class, image_size, seed: the settings.
        meaning: :data:`MEANING`.
    """

    dataset: str
    backbone: str
    pretrained_acc: float
    pixel_acc: float
    score: float
    n_per_class: int | None
    val_per_class: int | None
    image_size: int
    seed: int
    meaning: str = MEANING

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _probe_acc(model: torch.nn.Module, train, val) -> float:
    clf = fit_feature_classifier(extract_features(model, train, device="cpu", cache=False), "logistic")
    return float(clf.score(*extract_features(model, val, device="cpu", cache=False).xy))


def _pixels(data, side: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """The images as flat vectors, ``side x side`` (area-averaged), and their labels."""
    xs = torch.stack([data[i][0] for i in range(len(data))])                       # (N, 3, S, S)
    xs = torch.nn.functional.adaptive_avg_pool2d(xs, min(side, xs.shape[-1]))       # (N, 3, side, side)
    return xs.flatten(1).numpy(), np.asarray(data.targets)


def measure_similarity(backbone: str, dataset: str | os.PathLike, *, n_per_class: int | None = 20,
                       val_per_class: int | None = 20, image_size: int = 64, seed: int = 0) -> SimilarityResult:
    """Measure how much a backbone's pretrained features help on ``dataset`` (see :data:`MEANING`).

    Args:
        backbone: a name known to ``ftkit.models.zoo.load_backbone``.
        dataset: a catalogue name or an image-folder path.
        n_per_class: training images per class for the probes (None: all).
        val_per_class: held-out (test split) images per class (None: all).
        image_size: side of the square images.
        seed: which images are used.

    Raises:
        ValueError: unknown data set, or more images per class than it has (from ``load_dataset``).
    """
    pre = load_backbone(backbone, pretrained=True)
    kw = dict(image_size=image_size, mean=pre.mean, std=pre.std, seed=seed)
    train = load_dataset(dataset, "train", n_per_class=n_per_class, **kw)
    val = load_dataset(dataset, "test", n_per_class=val_per_class, **kw)
    if len(set(np.asarray(train.targets).tolist())) < 2:
        raise ValueError(f"{dataset!r} has fewer than two classes: a similarity needs a classification task")
    acc_pre = _probe_acc(pre.model, train, val)
    acc_pix = float(fit_feature_classifier(_pixels(train), "logistic").score(*_pixels(val)))
    return SimilarityResult(dataset=os.fspath(dataset), backbone=backbone, pretrained_acc=acc_pre,
                            pixel_acc=acc_pix, score=acc_pre - acc_pix, n_per_class=n_per_class,
                            val_per_class=val_per_class, image_size=image_size, seed=seed)


def catalogue_level(dataset: str) -> str | None:
    """The catalogue's similarity word for ``dataset`` ("low", "medium", "high"...), None when not catalogued."""
    table = list_datasets().set_index("name")
    if dataset not in table.index:
        return None
    word = str(table.loc[dataset, "similarity"]).split(":")[0].strip()
    return word if word in _LEVELS else None


def similarity_table(backbone: str, datasets: Sequence[str] | None = None, *, seeds: Sequence[int] = (0,),
                     **kw) -> pd.DataFrame:
    """:func:`measure_similarity` for several catalogue data sets, beside the catalogue's label.

    Returns:
        One row per data set, sorted by ``score`` (highest first): dataset,
        catalogue (the label's first word), pretrained_acc, pixel_acc, score,
        score_std (over ``seeds``), and ``catalogue_agrees``: whether the
        catalogue's order of this data set against every other one is the
        measured order (pairs with equal labels are not compared).
    """
    if datasets is None:
        cat = list_datasets()
        datasets = cat.loc[cat["available_offline"], "name"].tolist()
    if not datasets:
        raise ValueError("similarity_table() needs at least one data set")
    rows = []
    for name in datasets:
        results = [measure_similarity(backbone, name, seed=s, **kw) for s in seeds]
        rows.append({"dataset": name, "catalogue": catalogue_level(name),
                     "pretrained_acc": float(np.mean([r.pretrained_acc for r in results])),
                     "pixel_acc": float(np.mean([r.pixel_acc for r in results])),
                     "score": float(np.mean([r.score for r in results])),
                     "score_std": float(np.std([r.score for r in results], ddof=1)) if len(results) > 1 else 0.0})
    df = pd.DataFrame(rows).sort_values("score", ascending=False, ignore_index=True)
    df["catalogue_agrees"] = [_agrees(df, i) for i in range(len(df))]
    return df


def _agrees(df: pd.DataFrame, i: int) -> bool | None:
    """Does row i's catalogue label order it against every other row as the score does?"""
    level = _LEVELS.get(df.loc[i, "catalogue"]) if df.loc[i, "catalogue"] else None
    if level is None:
        return None
    for j in range(len(df)):
        other = _LEVELS.get(df.loc[j, "catalogue"]) if df.loc[j, "catalogue"] else None
        if j == i or other is None or other == level:
            continue
        if (level > other) != (df.loc[i, "score"] > df.loc[j, "score"]):
            return False
    return True
